package check

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// BenchmarkKubeletVolumeWindow measures how long kubelet's set-up and
// tear-down of a FUSE-backed CSI volume, done as the tests' stand-in does
// them, leave the volume directory without its mount: from the directory
// (with vol_data.json) made to the FUSE mount answering, and from the
// unmount to the directory removed. unmounted_volume's grace period
// (DefaultUnmountedGrace) must be far longer; the real kubelet's longest
// window is one NodePublishVolume call, which it gives 2 minutes. The
// baseline is one run of unmounted_volume over the same node.
func BenchmarkKubeletVolumeWindow(b *testing.B) {
	testenv.RequireRoot(b)
	testenv.RequireCommand(b, "bindfs", "bindfs")
	dir := b.TempDir()
	testenv.Tmpfs(b, dir)
	kubelet := dir + "/kubelet"
	backing := dir + "/backing"
	if err := os.MkdirAll(backing, 0o755); err != nil {
		b.Fatal(err)
	}
	const uid = "be0c0000-0000-4000-8000-000000000001"
	var setup, teardown, checkRun []time.Duration
	for b.Loop() {
		t0 := time.Now()
		mp := testenv.KubeletPodVolume(b, kubelet, uid, "pvc-w", "cephfs.csi.ceph.com", "h")
		p := testenv.Bindfs(b, backing, mp, "subtype=ceph-fuse")
		setup = append(setup, time.Since(t0))
		t1 := time.Now()
		if err := syscall.Unmount(mp, 0); err != nil {
			b.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Dir(mp)); err != nil {
			b.Fatal(err)
		}
		teardown = append(teardown, time.Since(t1))
		_, _ = p.Wait()
		s := snapshotFor(b, (&standIn{kubelet: kubelet}).hostFor(dir))
		t2 := time.Now()
		if _, err := runOne(&UnmountedVolumeCheck{}, s); err != nil {
			b.Fatal(err)
		}
		checkRun = append(checkRun, time.Since(t2))
	}
	med := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2]) / 1e6
	}
	b.ReportMetric(med(setup), "setup-unmounted-ms")
	b.ReportMetric(med(teardown), "teardown-unmounted-ms")
	b.ReportMetric(med(checkRun), "check-run-ms")
	b.ReportMetric(DefaultUnmountedGrace.Seconds()*1000, "grace-ms")
}
