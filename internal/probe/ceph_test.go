package probe

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// Real ceph-fuse with its MDS frozen after the mount was used: statfs and
// stat of the root are answered from the monitor and ceph-fuse's caches,
// so a probe of them alone says healthy; the deep request (the root's
// first getdents64) reaches the MDS and is hung.
func TestCephFuseFrozenMDSFoundByTheDeepRequest(t *testing.T) {
	testenv.RequireRoot(t)
	c := testenv.StartCeph(t)
	mnt := filepath.Join(c.Dir, "mnt")
	c.Mount(mnt, "")

	// Use the mount, as a pod does: the caches are warm.
	if err := os.MkdirAll(mnt+"/volumes/a", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mnt+"/volumes/a/f", []byte("data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Not the root's listing: once ceph-fuse holds that listing complete
	// with its caps, it may answer the deep request from its cache while
	// the MDS is frozen (CI saw it, about one run in five), and the test
	// would prove nothing. A pod that lists the root keeps it answered
	// that way until the caps go; the field's hang is the listing that
	// must ask the MDS.
	if _, err := os.ReadDir(mnt + "/volumes/a"); err != nil {
		t.Fatal(err)
	}
	var id int
	s := liveTable(t)
	for _, m := range s.Mounts {
		if m.Mountpoint == mnt {
			id = m.ID
			if m.FSType != "fuse.ceph-fuse" {
				t.Fatalf("ceph-fuse mounted %s", m.FSType)
			}
		}
	}
	deep := NewProber(Config{Timeout: time.Second}, NewHelperFS(HelperConfig{}))
	shallow := NewProber(Config{Timeout: time.Second, ShallowFSTypes: []string{"fuse.ceph-fuse"}}, NewHelperFS(HelperConfig{}))
	for name, p := range map[string]*Prober{"deep": deep, "shallow": shallow} {
		if res := p.Round(context.Background(), s).Results[id]; res.State != OK {
			t.Fatalf("%s probe of the healthy ceph-fuse: %+v", name, res)
		}
	}

	if err := c.MDS.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if res := shallow.Round(context.Background(), s).Results[id]; res.State != OK {
		t.Fatalf("statfs and stat with the MDS frozen: %+v; want answered (from caches), or this test proves nothing", res)
	}
	if res := deep.Round(context.Background(), s).Results[id]; res.State != Hung {
		t.Errorf("the deep request with the MDS frozen: %+v, want hung", res)
	}
}
