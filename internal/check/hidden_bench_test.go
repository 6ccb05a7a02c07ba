package check

import (
	"context"
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

const hiddenBenchVolumes = 500

// hiddenBenchNode is a kubelet root on a tmpfs with 500 pod volumes, each a
// tmpfs mounted over an empty directory, and the same 500 directories
// again unmounted (for the baseline).
func hiddenBenchNode(b *testing.B) (kubelet, plain string) {
	b.Helper()
	testenv.RequireRoot(b)
	dir := b.TempDir()
	testenv.Tmpfs(b, dir)
	kubelet, plain = dir+"/kubelet", dir+"/plain"
	for i := 0; i < hiddenBenchVolumes; i++ {
		vol := fmt.Sprintf("%s/pods/%s/volumes/kubernetes.io~empty-dir/cache", kubelet, testenv.PodUID(i))
		if err := os.MkdirAll(vol, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := unix.Mount("none", vol, "tmpfs", 0, ""); err != nil {
			b.Fatal(err)
		}
		if err := os.MkdirAll(fmt.Sprintf("%s/%d", plain, i), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return kubelet, plain
}

// BenchmarkHiddenEntries is one hidden_entries run over 500 pod volumes:
// per mount an O_PATH open of its parent's mount point, a statx, an
// open_tree clone, an openat2 and a getdents in the clone.
func BenchmarkHiddenEntries(b *testing.B) {
	kubelet, _ := hiddenBenchNode(b)
	s := snapshotFor(b, mounts.Host{KubeletRoot: kubelet})
	c := &HiddenEntriesCheck{}
	for b.Loop() {
		out := c.Run(context.Background(), &Env{Snapshot: s})
		if out.Err != nil || len(out.Findings) != 0 {
			b.Fatalf("%v %v", out.Err, out.Findings)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/hiddenBenchVolumes, "ns/mount")
}

// Baseline: open and getdents the same number of plain directories, the
// floor of listing them without a clone (which is what a mount hides
// from).
func BenchmarkHiddenEntriesBaselineReadDir(b *testing.B) {
	_, plain := hiddenBenchNode(b)
	buf := make([]byte, 8<<10)
	for b.Loop() {
		for i := 0; i < hiddenBenchVolumes; i++ {
			fd, err := unix.Open(fmt.Sprintf("%s/%d", plain, i), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := unix.Getdents(fd, buf); err != nil {
				b.Fatal(err)
			}
			unix.Close(fd)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/hiddenBenchVolumes, "ns/mount")
}
