package check

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// deletedRootRun runs deleted_root with a prober on the live table of h.
func deletedRootRun(t *testing.T, h mounts.Host) []finding.Finding {
	t.Helper()
	p := probe.NewProber(probe.Config{Timeout: 10 * time.Second}, probe.SysFS{})
	rep := (&Runner{Prober: p, Checks: []Check{DeletedRootCheck{}, HungMountCheck{}}}).Run(context.Background(), liveSnapshot(t, h))
	var out []finding.Finding
	for _, f := range rep.Findings {
		if f.Check == DeletedRoot {
			out = append(out, f)
		}
	}
	return out
}

// The seed's operation on its own stack: a CephFS volume staged by
// ceph-fuse -r <rootPath> (as ceph-csi's FUSE mounter does), published to a
// pod (monitoring/grafana-0) as a bind mount with a subPath of it, and its
// directory removed through a second CephFS client. Nothing in the mount
// table changes; deleted_root reports the staging mount, the pod volume and
// the subPath, critically, naming the pod, the volume and the driver, and
// saying the pod sees an empty volume whose writes will be lost. Nothing
// is reported before, nor on the other client's healthy mount.
func TestLiveCephVolumeRootRemovedByAnotherClient(t *testing.T) {
	c := testenv.StartCeph(t)
	admin := filepath.Join(c.Dir, "admin")
	c.Mount(admin, "")
	vol := filepath.Join(admin, "volumes", "csi", "dash")
	mkdirs(t, filepath.Join(vol, "dashboards"))
	if err := os.WriteFile(filepath.Join(vol, "home.json"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	kubelet := filepath.Join(c.Dir, "kubelet")
	uid := testenv.NewPodUID(t)
	h := mounts.Host{KubeletRoot: kubelet, PodLogDir: filepath.Join(c.Dir, "log", "pods")}
	mkdirs(t, filepath.Join(h.PodLogDir, "monitoring_grafana-0_"+uid))
	staging := filepath.Join(kubelet, "plugins", "kubernetes.io", "csi", "cephfs.csi.ceph.com",
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "globalmount")
	c.Mount(staging, "/volumes/csi/dash")
	podVol := testenv.KubeletPodVolume(t, kubelet, uid, "dash-pv", "cephfs.csi.ceph.com", "dash")
	testenv.Bind(t, staging, podVol)
	subPath := filepath.Join(kubelet, "pods", uid, "volume-subpaths", "data", "grafana", "0")
	mkdirs(t, subPath)
	testenv.Bind(t, filepath.Join(podVol, "dashboards"), subPath)
	if _, err := os.ReadDir(podVol); err != nil {
		t.Fatal(err)
	}

	if found := deletedRootRun(t, h); len(found) != 0 {
		t.Fatalf("deleted_root on healthy ceph-fuse mounts: %+v", found)
	}

	if err := os.RemoveAll(vol); err != nil { // through the other client
		t.Fatal(err)
	}
	var got map[string]finding.Finding
	testenv.WaitUntil(t, 20*time.Second, "deleted_root on the staging mount, the pod volume and the subPath", func() bool {
		got = byMountpoint(deletedRootRun(t, h))
		return len(got) == 3
	})
	s := liveSnapshot(t, h)
	for _, mp := range []string{staging, podVol, subPath} {
		f, ok := got[mp]
		if !ok {
			t.Fatalf("no deleted_root on %s: %v", mp, got)
		}
		if f.Severity != finding.Critical || f.CSIDriver != "cephfs.csi.ceph.com" {
			t.Errorf("%s: severity %s driver %q; want critical, cephfs.csi.ceph.com", mp, f.Severity, f.CSIDriver)
		}
		if mp == subPath {
			// The subPath's directory inside the volume: this node's
			// client was told of its removal, and its dentry deleted, so
			// the table shows it (//deleted) as for a removal through
			// this node.
			continue
		}
		if m := s.ByMountpoint(mp); len(m) == 0 || m[0].Root != "/" {
			t.Fatalf("%s's root field shows the removal (%v): this test proves nothing", mp, m)
		}
		if f.Details["deleted_on"] != "server" || f.Details["evidence"] == "" {
			t.Errorf("%s: details %v; want deleted on the server with evidence", mp, f.Details)
		}
		for _, want := range []string{"deleted on the server", "empty", "lost", "Fix:"} {
			if !strings.Contains(f.Message, want) {
				t.Errorf("%s: message lacks %q: %s", mp, want, f.Message)
			}
		}
	}
	pv := got[podVol]
	if pv.PodUID != uid || pv.PodNamespace != "monitoring" || pv.PodName != "grafana-0" || pv.Volume != "dash-pv" {
		t.Errorf("pod volume finding names pod %s/%s (%s) volume %s", pv.PodNamespace, pv.PodName, pv.PodUID, pv.Volume)
	}
	if !strings.Contains(pv.Message, "monitoring/grafana-0") || !strings.Contains(pv.Message, "dash-pv") {
		t.Errorf("pod volume message does not name the pod and volume: %s", pv.Message)
	}
	if sp := got[subPath]; sp.Kind != mounts.SubPath || sp.Volume != "data" || sp.Container != "grafana" {
		t.Errorf("subPath finding: %+v", sp.Kube)
	}
	t.Logf("pod volume: %s", pv.Message)
	t.Logf("subPath (root %s): %s", got[subPath].Root, got[subPath].Message)
	if _, ok := got[admin]; ok {
		t.Errorf("deleted_root on the other client's healthy mount: %+v", got[admin])
	}
}

// nlinkZeroNode is the root of a FUSE server that never fills in the link
// count (go-fuse leaves it 0 unless Getattr sets it), with one directory.
type nlinkZeroNode struct{ fs.Inode }

var _ fs.NodeOnAdder = (*nlinkZeroNode)(nil)

func (n *nlinkZeroNode) OnAdd(ctx context.Context) {
	n.AddChild("sub", n.NewPersistentInode(ctx, &fs.Inode{}, fs.StableAttr{Mode: syscall.S_IFDIR}), true)
}

// Healthy FUSE mounts of every kind the suite runs give no deleted_root:
// bindfs, sshfs, the ceph-fuse stand-in, the stalling test server while it
// answers, and a server that says link count 0 for every directory while
// its root lists names, and a bind mount of its subdirectory (not listed:
// one deep request per connection). (Real ceph-fuse: TestLiveCephVolumeRootRemovedByAnotherClient,
// before the removal.) The link counts they report are logged.
func TestLiveHealthyFUSERootsNoDeletedRoot(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	mkdirs(t, filepath.Join(src, "sub"), filepath.Join(src, "empty"))
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	mps := map[string]string{}
	mps["bindfs"] = filepath.Join(dir, "bindfs")
	testenv.Bindfs(t, src, mps["bindfs"])
	mps["bindfs, empty root"] = filepath.Join(dir, "bindfs-empty")
	testenv.Bindfs(t, filepath.Join(src, "empty"), mps["bindfs, empty root"])
	mps["sshfs"] = filepath.Join(dir, "sshfs")
	testenv.NewSSHFS(t, src, mps["sshfs"])
	mps["sshfs, empty root"] = filepath.Join(dir, "sshfs-empty")
	testenv.NewSSHFS(t, filepath.Join(src, "empty"), mps["sshfs, empty root"])
	mps["ceph-fuse stand-in"] = filepath.Join(dir, "fake")
	testenv.FakeCephFuse(t, src, mps["ceph-fuse stand-in"])
	mps["stalling server, answering"] = filepath.Join(dir, "stall")
	testenv.NewStallFUSE(t, mps["stalling server, answering"], "ceph-fuse", "ceph-fuse")
	mps["link count 0 server"] = filepath.Join(dir, "nlink0")
	mkdirs(t, mps["link count 0 server"])
	server, err := fs.Mount(mps["link count 0 server"], &nlinkZeroNode{}, &fs.Options{MountOptions: fuse.MountOptions{
		FsName: "nlink0", Name: "nlink0", DirectMount: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Unmount() })
	mps["link count 0 server, bind of a subdirectory"] = filepath.Join(dir, "nlink0-sub")
	mkdirs(t, mps["link count 0 server, bind of a subdirectory"])
	testenv.Bind(t, filepath.Join(mps["link count 0 server"], "sub"), mps["link count 0 server, bind of a subdirectory"])

	for name, mp := range mps {
		var st unix.Stat_t
		if err := unix.Stat(mp, &st); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Logf("%s: root mode %o, link count %d", name, st.Mode, st.Nlink)
	}
	if found := deletedRootRun(t, mounts.Host{}); len(found) != 0 {
		t.Errorf("deleted_root on healthy mounts: %+v", found)
	}
}

// sshfs whose remote directory is removed on the server: sshfs answers
// the root's stat from its cache (link count 1) but asks the SFTP server
// for statfs and listings, which answer ENOENT: deleted_root, critical.
func TestLiveSSHFSRemoteRootRemoved(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "export")
	mkdirs(t, filepath.Join(src, "sub"))
	mnt := filepath.Join(dir, "mnt")
	testenv.NewSSHFS(t, src, mnt)
	if found := deletedRootRun(t, mounts.Host{}); len(found) != 0 {
		t.Fatalf("deleted_root on a healthy sshfs: %+v", found)
	}
	if err := os.RemoveAll(src); err != nil {
		t.Fatal(err)
	}
	var f finding.Finding
	testenv.WaitUntil(t, 20*time.Second, "deleted_root on the sshfs mount", func() bool {
		var ok bool
		f, ok = byMountpoint(deletedRootRun(t, mounts.Host{}))[mnt]
		return ok
	})
	if f.Severity != finding.Critical || f.Details["deleted_on"] != "server" || !strings.Contains(f.Message, "ENOENT") {
		t.Errorf("finding %+v; want critical, deleted on the server, the server's ENOENT said", f)
	}
}
