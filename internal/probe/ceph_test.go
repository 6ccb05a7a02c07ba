package probe

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// cephCluster is a real Ceph cluster on loopback, one of each daemon
// (monitor, OSD on memstore, MDS), every file in a temporary directory:
// ../shared/TESTING.md's recipe, lean enough to start in seconds.
type cephCluster struct {
	t    *testing.T
	dir  string
	conf string
	mds  *exec.Cmd
}

func (c *cephCluster) ceph(args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ceph", append([]string{"-c", c.conf, "--connect-timeout", "30"}, args...)...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("ceph %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// daemon starts a Ceph daemon in the foreground and stops it when the
// test ends (resumed first, in case the test stopped it).
func (c *cephCluster) daemon(name string, args ...string) *exec.Cmd {
	c.t.Helper()
	cmd := exec.Command(name, append([]string{"-f", "-c", c.conf}, args...)...)
	log, err := os.Create(filepath.Join(c.dir, name+".out"))
	if err != nil {
		c.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		log.Close()
	})
	return cmd
}

func startCeph(t *testing.T) *cephCluster {
	t.Helper()
	for _, cmd := range []string{"ceph-mon", "ceph-osd", "ceph-mds"} {
		testenv.RequireCommand(t, cmd, cmd)
	}
	testenv.RequireCommand(t, "ceph", "ceph-common")
	testenv.RequireCommand(t, "monmaptool", "ceph-base")
	dir := t.TempDir()
	c := &cephCluster{t: t, dir: dir, conf: filepath.Join(dir, "ceph.conf")}
	addr := testenv.FreeLoopbackAddr(t)
	fsid := strings.TrimSpace(readFile(t, "/proc/sys/kernel/random/uuid"))
	conf := fmt.Sprintf(`[global]
fsid = %s
mon host = %s
auth cluster required = none
auth service required = none
auth client required = none
keyring = /dev/null
osd objectstore = memstore
memstore device bytes = 268435456
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
ms bind ipv6 = false
run dir = %[3]s/run
log file = %[3]s/log/$name.log
admin socket = %[3]s/run/$name.asok
mon data = %[3]s/$name
osd data = %[3]s/$name
mds data = %[3]s/$name
`, fsid, addr, dir)
	if err := os.WriteFile(c.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"run", "log", "mon.a", "osd.0", "mds.a"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_, port, _ := net.SplitHostPort(addr)
	testenv.Run(t, "monmaptool", "--create", "--add", "a", "127.0.0.1:"+port, "--fsid", fsid, filepath.Join(dir, "monmap"))
	testenv.Run(t, "ceph-mon", "-c", c.conf, "--mkfs", "-i", "a", "--monmap", filepath.Join(dir, "monmap"))
	c.daemon("ceph-mon", "-i", "a")
	uuid := strings.TrimSpace(readFile(t, "/proc/sys/kernel/random/uuid"))
	id := c.ceph("osd", "create", uuid)
	testenv.Run(t, "ceph-osd", "-c", c.conf, "-i", id, "--mkfs", "--osd-uuid", uuid)
	c.daemon("ceph-osd", "-i", id)
	c.ceph("osd", "pool", "create", "cephfs_data", "8")
	c.ceph("osd", "pool", "create", "cephfs_meta", "8")
	c.ceph("fs", "new", "cephfs", "cephfs_meta", "cephfs_data")
	c.mds = c.daemon("ceph-mds", "-i", "a")
	testenv.WaitUntil(t, time.Minute, "an active MDS", func() bool {
		return strings.Contains(c.ceph("mds", "stat"), "up:active")
	})
	return c
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Real ceph-fuse with its MDS frozen after the mount was used: statfs and
// stat of the root are answered from the monitor and ceph-fuse's caches,
// so a probe of them alone says healthy; the deep request (the root's
// first getdents64) reaches the MDS and is hung.
func TestCephFuseFrozenMDSFoundByTheDeepRequest(t *testing.T) {
	testenv.RequireRoot(t)
	cephFuse := testenv.RequireCommand(t, "ceph-fuse", "ceph-fuse")
	c := startCeph(t)
	mnt := filepath.Join(c.dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	fuse := exec.Command(cephFuse, "-f", "-c", c.conf, mnt)
	log, _ := os.Create(filepath.Join(c.dir, "ceph-fuse.out"))
	fuse.Stdout, fuse.Stderr = log, log
	if err := fuse.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.mds.Process.Signal(syscall.SIGCONT) // before anything waits on the mount
		_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
		_ = fuse.Process.Kill()
		_ = fuse.Wait()
	})
	testenv.WaitMounted(t, mnt)

	// Use the mount, as a pod does: the caches are warm.
	if err := os.MkdirAll(mnt+"/volumes/a", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mnt+"/volumes/a/f", []byte("data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadDir(mnt); err != nil {
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

	if err := c.mds.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if res := shallow.Round(context.Background(), s).Results[id]; res.State != OK {
		t.Fatalf("statfs and stat with the MDS frozen: %+v; want answered (from caches), or this test proves nothing", res)
	}
	if res := deep.Round(context.Background(), s).Results[id]; res.State != Hung {
		t.Errorf("the deep request with the MDS frozen: %+v, want hung", res)
	}
}
