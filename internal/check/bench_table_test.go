package check

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// BenchmarkTableLane is the table-check lane of one read of the mount table
// on make bench's node-scale tables (testenv.ScaleNode, 10,000 and 50,000
// real mounts): read and classify the table, then run the table checks.
// "today" is the lane before mount_leak (deleted_root, shadowed_mount);
// "with" adds mount_leak with its state carried from read to read, as in
// the daemon. The two are timed interleaved, medians of 7 rounds, read and
// checks together (the lane's cost) and the checks alone. Each table must
// give mount_leak and unmounted_volume no finding.
func BenchmarkTableLane(b *testing.B) {
	testenv.RequireRoot(b)
	testenv.RequireCommand(b, "bindfs", "bindfs")
	for _, size := range []int{10000, 50000} {
		b.Run(fmt.Sprintf("mounts=%d", size), func(b *testing.B) {
			n := testenv.NewScaleNode(b, filepath.Join(b.TempDir(), "node"))
			n.AddFUSE(b, 5, 4)
			n.AddOverlays(b, 5)
			n.AddPods(b, (size-testenv.MountCount(b))/2, 2)
			h := mounts.Host{KubeletRoot: n.Kubelet, PodLogDir: n.PodLogs}
			s := snapshotFor(b, h)
			leak := &MountLeakCheck{}
			for _, c := range []Check{leak, leak, leak, &UnmountedVolumeCheck{Grace: time.Nanosecond, Once: true}} {
				if found, err := runOne(c, s); err != nil || len(found) != 0 {
					b.Fatalf("%s on %d mounts: %v %+v", c.Decl().ID, len(s.Mounts), err, found)
				}
			}
			today := []Check{DeletedRootCheck{}, ShadowedMountCheck{}}
			with := append(slices.Clip(today), leak)
			ctx := context.Background()
			iters := max(1, 200000/size)
			lane := func(checks []Check, read bool) time.Duration {
				r := &Runner{Checks: checks}
				start := time.Now()
				for range iters {
					snap := s
					if read {
						snap = snapshotFor(b, h)
					}
					r.Run(ctx, snap)
				}
				return time.Since(start) / time.Duration(iters)
			}
			var laneToday, laneWith, checksToday, checksWith []time.Duration
			for b.Loop() {
				for range 7 {
					laneToday = append(laneToday, lane(today, true))
					laneWith = append(laneWith, lane(with, true))
					checksToday = append(checksToday, lane(today, false))
					checksWith = append(checksWith, lane(with, false))
				}
			}
			med := func(d []time.Duration) float64 {
				slices.Sort(d)
				return float64(d[len(d)/2])
			}
			b.ReportMetric(float64(len(s.Mounts)), "mounts")
			b.ReportMetric(med(laneToday)/1e6, "lane-today-ms")
			b.ReportMetric(med(laneWith)/1e6, "lane-with-mount_leak-ms")
			b.ReportMetric(med(laneWith)/med(laneToday), "lane-ratio")
			b.ReportMetric(med(checksToday)/1e6, "checks-today-ms")
			b.ReportMetric(med(checksWith)/1e6, "checks-with-mount_leak-ms")
		})
	}
}
