package check

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// BenchmarkTableLane is the table-check lane of one read of the mount table
// on make bench's node-scale tables (testenv.ScaleNode, 10,000 and 50,000
// real mounts): read and classify the table, then run the table checks.
// "today" is the lane before mount_leak (deleted_root, shadowed_mount);
// "with-mount_leak" adds it, with its state carried from read to read as
// in the daemon; the checks-only pairs leave the read out. Each table must
// give mount_leak no finding.
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
			today := []Check{DeletedRootCheck{}, ShadowedMountCheck{}}
			leak := &MountLeakCheck{}
			with := append(today[:len(today):len(today)], leak)
			s := snapshotFor(b, h)
			for range 3 {
				if found, err := runOne(leak, s); err != nil || len(found) != 0 {
					b.Fatalf("mount_leak on %d mounts: %v %+v", len(s.Mounts), err, found)
				}
			}
			ctx := context.Background()
			lane := func(checks []Check, read bool) func(b *testing.B) {
				return func(b *testing.B) {
					r := &Runner{Checks: checks}
					for b.Loop() {
						snap := s
						if read {
							snap = snapshotFor(b, h)
						}
						r.Run(ctx, snap)
					}
					b.ReportMetric(float64(len(s.Mounts)), "mounts")
				}
			}
			b.Run("read+checks/today", lane(today, true))
			b.Run("read+checks/with-mount_leak", lane(with, true))
			b.Run("checks/today", lane(today, false))
			b.Run("checks/with-mount_leak", lane(with, false))
		})
	}
}
