package probe

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

func mountAt(t *testing.T, s *mounts.Snapshot, mp string) *mounts.Mount {
	t.Helper()
	ms := s.ByMountpoint(mp)
	if len(ms) == 0 {
		t.Fatalf("%s is not in the mount table", mp)
	}
	return ms[len(ms)-1]
}

// The volume's directory of a ceph-fuse -r mount (ceph-csi's staging mount,
// kubelet's view of a CephFS volume) removed through a second CephFS
// client: the mount table does not change (no //deleted: the root of a FUSE
// superblock is never unlinked in this node's dentry cache), but the
// probe's own stat of the root shows a directory with link count 0. The
// probe says so, for the mount and a bind mount of it, and not before the
// removal; nor for the other client's healthy mount of the whole CephFS.
func TestCephFuseRootRemovedByAnotherClient(t *testing.T) {
	c := testenv.StartCeph(t)
	admin := filepath.Join(c.Dir, "admin")
	c.Mount(admin, "")
	vol := filepath.Join(admin, "volumes", "csi", "dash")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, "home.json"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	staging := filepath.Join(c.Dir, "globalmount")
	c.Mount(staging, "/volumes/csi/dash")
	pod := filepath.Join(c.Dir, "pod-volume")
	if err := os.Mkdir(pod, 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Bind(t, staging, pod)
	if _, err := os.ReadDir(pod); err != nil { // the pod uses its volume
		t.Fatal(err)
	}

	for _, fs := range map[string]FS{"sysfs": SysFS{}, "helper": NewHelperFS(HelperConfig{})} {
		p := NewProber(Config{Timeout: 10 * time.Second}, fs)
		s := liveTable(t)
		r := p.Round(context.Background(), s)
		for _, mp := range []string{admin, staging, pod} {
			if res := r.Results[mountAt(t, s, mp).ID]; res.State != OK || res.RootDeleted {
				t.Fatalf("before the removal, %s: %+v; want answered, root not deleted", mp, res)
			}
		}
	}

	if err := os.RemoveAll(vol); err != nil { // through the other client
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(staging, &st); err != nil {
		t.Fatal(err)
	}
	t.Logf("stat of the removed volume's mount root: mode %o nlink %d", st.Mode, st.Nlink)

	for name, fs := range map[string]FS{"sysfs": SysFS{}, "helper": NewHelperFS(HelperConfig{})} {
		p := NewProber(Config{Timeout: 10 * time.Second}, fs)
		s := liveTable(t)
		if m := mountAt(t, s, staging); m.Root != "/" {
			t.Fatalf("the staging mount's root field is %q: the table shows the removal, this test proves nothing", m.Root)
		}
		var r *Round
		testenv.WaitUntil(t, 20*time.Second, name+": the probe to find the volume's root deleted", func() bool {
			r = p.Round(context.Background(), s)
			return r.Results[mountAt(t, s, staging).ID].RootDeleted
		})
		for _, mp := range []string{staging, pod} {
			res := r.Results[mountAt(t, s, mp).ID]
			if res.State != OK || !res.RootDeleted || res.RootEvidence == "" {
				t.Errorf("%s: %s: %+v; want answered, root deleted with its evidence", name, mp, res)
			}
			t.Logf("%s: %s: %s", name, mp, res.RootEvidence)
		}
		if res := r.Results[mountAt(t, s, admin).ID]; res.State != OK || res.RootDeleted {
			t.Errorf("%s: the other client's mount of the whole CephFS: %+v; want answered, not deleted", name, res)
		}
	}
}

// sshfs whose remote directory is removed on the server: sshfs asks the
// SFTP server for the path on every statfs and stat, which answers ENOENT;
// the probe says the root is deleted, and not before.
func TestSSHFSRemoteRootRemoved(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "export", "data")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(dir, "mnt")
	testenv.NewSSHFS(t, src, mnt)
	if _, err := os.ReadDir(mnt); err != nil {
		t.Fatal(err)
	}
	p := NewProber(Config{Timeout: 10 * time.Second}, NewHelperFS(HelperConfig{}))
	s := liveTable(t)
	id := mountAt(t, s, mnt).ID
	if res := p.Round(context.Background(), s).Results[id]; res.State != OK || res.RootDeleted {
		t.Fatalf("healthy sshfs: %+v", res)
	}
	if err := os.RemoveAll(src); err != nil { // on the server's side
		t.Fatal(err)
	}
	var st unix.Stat_t
	err := unix.Stat(mnt, &st)
	t.Logf("stat of the sshfs root after the removal: %v mode %o nlink %d", err, st.Mode, st.Nlink)
	var res Result
	testenv.WaitUntil(t, 20*time.Second, "the probe to find the remote root deleted", func() bool {
		res = p.Round(context.Background(), liveTable(t)).Results[id]
		return res.RootDeleted
	})
	if res.State != OK || res.RootEvidence == "" {
		t.Errorf("sshfs with its remote root removed: %+v; want answered, root deleted with its evidence", res)
	}
	t.Logf("%+v", res)
}
