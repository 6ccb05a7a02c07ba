package check

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// standIn is a node with one stand-in pod: its kubelet directory, its log
// directory (namespace shop, name web-0) and its cgroups with a process.
type standIn struct {
	dir, kubelet, uid string
	host              mounts.Host
	pod               *testenv.PodCgroup
}

func newStandIn(t *testing.T, driver, qos string) *standIn {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "bindfs", "bindfs")
	dir := t.TempDir()
	testenv.Tmpfs(t, dir)
	n := &standIn{dir: dir, kubelet: dir + "/kubelet", uid: fmt.Sprintf("5eed0000-%04x-4000-8000-00000000%04x", os.Getpid()&0xffff, time.Now().Nanosecond()&0xffff)}
	n.host = mounts.Host{KubeletRoot: n.kubelet, PodLogDir: dir + "/logs"}
	if err := os.MkdirAll(filepath.Join(dir, "logs", "shop_web-0_"+n.uid), 0o755); err != nil {
		t.Fatal(err)
	}
	n.pod = testenv.StartPodCgroup(t, testenv.PodHierarchies(t), driver, qos, n.uid)
	return n
}

// volume makes the pod's CSI volume directory and mounts a bindfs FUSE
// filesystem (fuse.ceph-fuse) on it; it returns the mount path.
func (n *standIn) volume(t *testing.T, name string) string {
	t.Helper()
	mp := testenv.KubeletPodVolume(t, n.kubelet, n.uid, name, "cephfs.csi.ceph.com", "0001-0011-"+name)
	backing := filepath.Join(n.dir, "backing", name)
	if err := os.MkdirAll(backing, 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Bindfs(t, backing, mp, "subtype=ceph-fuse")
	return mp
}

// hostFor is the Host of a node laid out under dir as newStandIn lays it.
func (n *standIn) hostFor(dir string) mounts.Host {
	return mounts.Host{KubeletRoot: n.kubelet, PodLogDir: dir + "/logs"}
}

func unmountedOf(fs []finding.Finding) []finding.Finding {
	var out []finding.Finding
	for _, f := range fs {
		if f.Check == UnmountedVolume {
			out = append(out, f)
		}
	}
	return out
}

func (n *standIn) run(t *testing.T, c *UnmountedVolumeCheck) []finding.Finding {
	t.Helper()
	found, err := runOne(c, snapshotFor(t, n.host))
	if err != nil {
		t.Fatal(err)
	}
	return unmountedOf(found)
}

// F8: a running pod's FUSE volume is unmounted and the pod writes into the
// plain directory. Nothing within the grace period; then one finding naming
// the pod, its namespace, the volume, the driver, since when and the file
// written; none once the pod's process is gone, nor once its cgroup is. For
// each cgroup driver.
func TestUnmountedVolumeRunningPod(t *testing.T) {
	for _, driver := range []string{"systemd", "cgroupfs"} {
		t.Run(driver, func(t *testing.T) {
			n := newStandIn(t, driver, "burstable")
			mp := n.volume(t, "pvc-data")
			const grace = 300 * time.Millisecond
			c := &UnmountedVolumeCheck{Grace: grace}
			if f := n.run(t, c); len(f) != 0 {
				t.Fatalf("mounted: %+v", f)
			}
			if err := syscall.Unmount(mp, 0); err != nil {
				t.Fatal(err)
			}
			unmounted := time.Now()
			n.pod.WriteFile(mp + "/written-while-unmounted.txt")
			if f := n.run(t, c); len(f) != 0 {
				t.Fatalf("within the grace period: %+v", f)
			}
			time.Sleep(grace)
			f := n.run(t, c)
			if len(f) != 1 {
				t.Fatalf("after the grace period: %d findings, want 1: %+v", len(f), f)
			}
			got := f[0]
			since, err := time.Parse(time.RFC3339, got.Details["unmounted_since"])
			if got.Path != mp || got.Directory != mp || got.PodUID != n.uid || got.PodNamespace != "shop" || got.PodName != "web-0" ||
				got.Volume != "pvc-data" || got.CSIDriver != "cephfs.csi.ceph.com" || got.Severity != finding.Critical ||
				got.Details["files"] != "1" || got.Details["bytes"] != fmt.Sprint(len("written-by-the-pod\n")) ||
				err != nil || since.After(unmounted.Add(time.Second)) || !strings.Contains(got.Message, "1 file ") ||
				!strings.Contains(got.Details["pod_state"], "running") {
				t.Fatalf("finding: %+v", got)
			}
			if got.MountPoint != n.dir || got.FSType != "tmpfs" {
				t.Errorf("the writes land on the tmpfs at %s: finding on %s (%s)", n.dir, got.MountPoint, got.FSType)
			}
			if f := n.run(t, c); len(f) != 1 {
				t.Fatalf("next run: %+v", f)
			}
			n.pod.Stop()
			if f := n.run(t, c); len(f) != 0 {
				t.Fatalf("the pod's process gone (cgroup left, kubelet tearing down): %+v", f)
			}
			n.pod.Remove()
			if f := n.run(t, c); len(f) != 0 {
				t.Fatalf("the pod's cgroup gone: %+v", f)
			}
		})
	}
}

// Kubelet's own set-up and tear-down, done as kubelet does them (volume
// directory with vol_data.json, FUSE mount, unmount, directory removed),
// many times over while the pod runs and with the check run between every
// two steps: never a finding, with a grace period far shorter than the
// whole sequence.
func TestUnmountedVolumeKubeletCycle(t *testing.T) {
	n := newStandIn(t, "systemd", "besteffort")
	c := &UnmountedVolumeCheck{Grace: 200 * time.Millisecond}
	start := time.Now()
	check := func(step string, i int) {
		t.Helper()
		if f := n.run(t, c); len(f) != 0 {
			t.Fatalf("cycle %d, %s: %+v", i, step, f)
		}
	}
	backing := filepath.Join(n.dir, "backing")
	if err := os.MkdirAll(backing, 0o755); err != nil {
		t.Fatal(err)
	}
	const cycles = 40
	for i := range cycles {
		mp := testenv.KubeletPodVolume(t, n.kubelet, n.uid, "pvc-cycle", "cephfs.csi.ceph.com", "h")
		check("directory made", i)
		p := testenv.Bindfs(t, backing, mp, "subtype=ceph-fuse")
		check("mounted", i)
		if err := syscall.Unmount(mp, 0); err != nil {
			t.Fatal(err)
		}
		_, _ = p.Wait()
		check("unmounted", i)
		if err := os.RemoveAll(filepath.Dir(mp)); err != nil {
			t.Fatal(err)
		}
		check("directory removed", i)
	}
	if took := time.Since(start); took < 2*c.Grace {
		t.Fatalf("the %d cycles took %s: not much longer than the grace period, which proves nothing", cycles, took)
	}
	// The same sequence with no grace at all is seen: the check does look
	// at the directory between kubelet's steps, and only the grace period
	// keeps them from being findings.
	c = &UnmountedVolumeCheck{Grace: time.Nanosecond}
	mp := testenv.KubeletPodVolume(t, n.kubelet, n.uid, "pvc-cycle", "cephfs.csi.ceph.com", "h")
	n.run(t, c)
	if f := n.run(t, c); len(f) != 1 || f[0].Path != mp {
		t.Fatalf("with no grace period, the set-up's unmounted directory: %+v", f)
	}
}

// A CSI staging directory (globalmount) that is no mount point while a pod
// volume bound from it is mounted: found after the grace period, naming
// the driver, the volume handle and the pod volumes bound from it.
func TestUnmountedVolumeStaging(t *testing.T) {
	n := newStandIn(t, "cgroupfs", "guaranteed")
	const handle = "0001-0011-staged"
	sum := fmt.Sprintf("%x", sha256.Sum256([]byte(handle)))
	stage := filepath.Join(n.kubelet, "plugins/kubernetes.io/csi/cephfs.csi.ceph.com", sum, "globalmount")
	if err := os.MkdirAll(stage, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Dir(stage)+"/vol_data.json", []byte(`{"driverName":"cephfs.csi.ceph.com","volumeHandle":"`+handle+`","specVolID":"pvc-staged"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	backing := filepath.Join(n.dir, "backing")
	if err := os.MkdirAll(backing, 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Bindfs(t, backing, stage, "subtype=ceph-fuse")
	pv := testenv.KubeletPodVolume(t, n.kubelet, n.uid, "pvc-staged", "cephfs.csi.ceph.com", handle)
	testenv.Bind(t, stage, pv)
	c := &UnmountedVolumeCheck{Grace: 200 * time.Millisecond}
	if f := n.run(t, c); len(f) != 0 {
		t.Fatalf("staged and published: %+v", f)
	}
	// A FUSE restart lazily unmounts the staging mount; the pod's bind
	// mount keeps the old connection.
	if err := syscall.Unmount(stage, syscall.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if f := n.run(t, c); len(f) != 0 {
		t.Fatalf("within the grace period: %+v", f)
	}
	time.Sleep(c.Grace)
	f := n.run(t, c)
	if len(f) != 1 || f[0].Path != stage || f[0].Kind != mounts.CSIStaging || f[0].CSIDriver != "cephfs.csi.ceph.com" ||
		f[0].VolumeHandle != handle || f[0].Volume != "pvc-staged" || f[0].Details["bound_pod_volumes"] != "1" {
		t.Fatalf("staging unmounted: %+v", f)
	}
	// Once the pod volume is unpublished too, it is kubelet's state
	// between unstage and the directory's removal: nothing.
	if err := syscall.Unmount(pv, syscall.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if f := n.run(t, c); len(f) != 0 {
		t.Fatalf("nothing bound from it: %+v", f)
	}
}

// --once has one look: a plain directory of a running pod is reported when
// the directory was created more than the grace period ago (not when it was
// just made, as kubelet's set-up does), saying that since when it has been
// unmounted is not known. An in-tree persistent plugin's directory counts
// too. What was written is counted without following a symlink or crossing
// into a mount inside.
func TestUnmountedVolumeOnce(t *testing.T) {
	n := newStandIn(t, "systemd", "burstable")
	nfs := filepath.Join(n.kubelet, "pods", n.uid, "volumes/kubernetes.io~nfs/share")
	if err := os.MkdirAll(nfs+"/sub", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(nfs+"/sub/data", make([]byte, 3000), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", nfs+"/etc-link"); err != nil {
		t.Fatal(err)
	}
	inner := nfs + "/inner"
	if err := os.Mkdir(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Tmpfs(t, inner)
	for i := range 5 {
		if err := os.WriteFile(fmt.Sprintf("%s/not-counted-%d", inner, i), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const grace = 300 * time.Millisecond
	once := func() []finding.Finding { return n.run(t, &UnmountedVolumeCheck{Grace: grace, Once: true}) }
	if f := once(); len(f) != 0 {
		t.Fatalf("a directory made just now: %+v", f)
	}
	time.Sleep(grace)
	f := once()
	if len(f) != 1 || f[0].Path != nfs || f[0].VolumePlugin != "kubernetes.io~nfs" || f[0].Volume != "share" ||
		f[0].Details["directory_since"] == "" || f[0].Details["unmounted_since"] != "" || !strings.Contains(f[0].Message, "One look cannot tell") {
		t.Fatalf("--once: %+v", f)
	}
	// sub/data and the symlink, not /etc's files nor the tmpfs's; sub and
	// not inner (another mount).
	if d := f[0].Details; d["files"] != "2" || d["directories"] != "1" || d["bytes"] != "3000" || d["count_complete"] != "false" {
		t.Fatalf("counted %v", d)
	}
}

// A FUSE server that hangs on a pod volume's mount does not stall the
// check: a mounted volume is never touched (the table says it is a mount),
// and a plain directory under a mount that may hang is left out with a
// note.
func TestUnmountedVolumeHungNeighbour(t *testing.T) {
	n := newStandIn(t, "systemd", "burstable")
	mp := testenv.KubeletPodVolume(t, n.kubelet, n.uid, "pvc-hung", "cephfs.csi.ceph.com", "h")
	backing := filepath.Join(n.dir, "backing")
	if err := os.MkdirAll(backing, 0o755); err != nil {
		t.Fatal(err)
	}
	srv := testenv.FakeCephFuse(t, backing, mp)
	if err := srv.Signal(syscall.SIGUSR1); err != nil { // stop answering
		t.Fatal(err)
	}
	c := &UnmountedVolumeCheck{Grace: time.Millisecond}
	done := make(chan []finding.Finding, 1)
	go func() {
		found, _ := runOne(c, snapshotFor(t, n.host))
		done <- found
	}()
	select {
	case f := <-done:
		if len(unmountedOf(f)) != 0 {
			t.Fatalf("hung but mounted: %+v", f)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the check blocked on a hung FUSE mount")
	}
}

// Two kubelet roots in the table and nothing to decide between them (no
// --path.kubelet, no kubelet process): the stand-in pod's volume directory
// under the second root, a plain directory, is found and named, as the
// walk covers every root the table shows (issue 30 item 2).
func TestUnmountedVolumeTwoKubeletRoots(t *testing.T) {
	n := newStandIn(t, "systemd", "burstable")
	second := filepath.Join(n.dir, "k0s", "kubelet")
	other := "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
	for _, d := range []string{
		filepath.Join(n.kubelet, "pods", n.uid, "volumes/kubernetes.io~projected/kube-api-access-1"),
		filepath.Join(second, "pods", other, "volumes/kubernetes.io~projected/kube-api-access-2"),
	} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		testenv.Tmpfs(t, d)
	}
	nfs := filepath.Join(second, "pods", n.uid, "volumes/kubernetes.io~nfs/share")
	if err := os.MkdirAll(nfs, 0o755); err != nil {
		t.Fatal(err)
	}
	h := mounts.Host{PodLogDir: n.dir + "/logs"}
	s := snapshotFor(t, h)
	if s.Layout.Kubelet.Path == n.kubelet || s.Layout.Kubelet.Path == second || len(s.Layout.Kubelet.Candidates) < 2 {
		t.Fatalf("the table should leave the root undecided: %+v", s.Layout.Kubelet)
	}
	const grace = 300 * time.Millisecond
	time.Sleep(grace)
	found, err := runOne(&UnmountedVolumeCheck{Grace: grace, Once: true}, snapshotFor(t, h))
	if err != nil {
		t.Fatal(err)
	}
	f := unmountedOf(found)
	if len(f) != 1 || f[0].Path != nfs || f[0].Directory != nfs || f[0].PodUID != n.uid || f[0].PodName != "web-0" || f[0].Volume != "share" {
		t.Fatalf("findings %+v (roots %q)", f, s.KubeletRoots())
	}
}
