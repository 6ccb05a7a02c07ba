package check

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"syscall"
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
// checks together (the lane's cost) and the checks alone, in wall time and
// in this process's CPU time (which the machine's other load does not
// inflate). Each table must
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
			// lane returns the wall and CPU time (this process's, every
			// thread: the GC's work counts) of one lane run.
			lane := func(checks []Check, read bool) (wall, cpu time.Duration) {
				r := &Runner{Checks: checks}
				c0, start := cpuTime(b), time.Now()
				for range iters {
					snap := s
					if read {
						snap = snapshotFor(b, h)
					}
					r.Run(ctx, snap)
				}
				n := time.Duration(iters)
				return time.Since(start) / n, (cpuTime(b) - c0) / n
			}
			var m [4][2][]time.Duration // lane today, lane with, checks today, checks with; wall, cpu
			add := func(i int, wall, cpu time.Duration) {
				m[i][0], m[i][1] = append(m[i][0], wall), append(m[i][1], cpu)
			}
			for b.Loop() {
				for range 7 {
					for i, c := range []struct {
						checks []Check
						read   bool
					}{{today, true}, {with, true}, {today, false}, {with, false}} {
						wall, cpu := lane(c.checks, c.read)
						add(i, wall, cpu)
					}
				}
			}
			med := func(d []time.Duration) float64 {
				slices.Sort(d)
				return float64(d[len(d)/2]) / 1e6
			}
			b.ReportMetric(float64(len(s.Mounts)), "mounts")
			b.ReportMetric(med(m[0][0]), "lane-today-ms")
			b.ReportMetric(med(m[1][0]), "lane-with-mount_leak-ms")
			b.ReportMetric(med(m[0][1]), "lane-today-cpu-ms")
			b.ReportMetric(med(m[1][1]), "lane-with-mount_leak-cpu-ms")
			b.ReportMetric(med(m[1][1])/med(m[0][1]), "lane-cpu-ratio")
			b.ReportMetric(med(m[1][0])/med(m[0][0]), "lane-wall-ratio")
			b.ReportMetric(med(m[2][1]), "checks-today-cpu-ms")
			b.ReportMetric(med(m[3][1]), "checks-with-mount_leak-cpu-ms")
		})
	}
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
