package main

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// BenchmarkOnceAtScale runs `--once --output json --scan.rate=0` in this
// process on a real kubelet-shaped table (default 10,000 mounts: pods with
// two emptyDir bind mounts each, five FUSE connections, five overlays), so
// that `go test -cpuprofile` sees every check:
//
//	go test -run '^$' -bench OnceAtScale -benchtime 5x -cpuprofile cpu.out ./cmd/mountwatchd
//	go tool pprof -top cpu.out
//
// MOUNTWATCHD_BENCH_MOUNTS sets the table size. The baseline is reading
// the same table (`floor-ns/op`), the cost no checker can avoid;
// `cpu-ns/op` is the CPU time of a run (user and system, probe helpers
// included): with the checks run at once, what bounds its wall time on
// few cores. The side-by-side figures with findmnt and node_exporter are
// bench/'s.
func BenchmarkOnceAtScale(b *testing.B) {
	testenv.RequireRoot(b)
	testenv.RequireCommand(b, "bindfs", "bindfs")
	want := 10000
	if v, err := strconv.Atoi(os.Getenv("MOUNTWATCHD_BENCH_MOUNTS")); err == nil && v > 0 {
		want = v
	}
	n := testenv.NewScaleNode(b, filepath.Join(b.TempDir(), "node"))
	n.AddFUSE(b, 5, 4)
	n.AddOverlays(b, 5)
	if left := want - testenv.MountCount(b); left > 0 {
		n.AddPods(b, left/2, 2)
	}
	args := []string{"--once", "--output", "json", "--scan.rate=0", "--path.kubelet", n.Kubelet,
		"--path.pod-logs", n.PodLogs, "--path.containerd-snapshots", n.Snapshots}
	var floor, cpu int64
	for b.Loop() {
		var out strings.Builder
		before := cpuNanos(b)
		if code := run(args, &out, io.Discard); code != exitOK {
			b.Fatalf("--once exited %d on a healthy table:\n%s", code, out.String())
		}
		b.StopTimer()
		cpu += cpuNanos(b) - before
		floor += readTableNanos(b)
		b.StartTimer()
	}
	b.ReportMetric(float64(testenv.MountCount(b)), "mounts")
	b.ReportMetric(float64(floor)/float64(b.N), "floor-ns/op")
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
}

// cpuNanos is the CPU time (user and system) this process and its reaped
// children (probe helpers) have used.
func cpuNanos(b *testing.B) int64 {
	var self, kids syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &self); err != nil {
		b.Fatal(err)
	}
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids); err != nil {
		b.Fatal(err)
	}
	tv := func(t syscall.Timeval) int64 { return t.Nano() }
	return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
}

// readTableNanos is how long one read of our mount table takes (the
// fastest of three).
func readTableNanos(b *testing.B) int64 {
	best := int64(-1)
	for range 3 {
		start := time.Now()
		if _, err := os.ReadFile("/proc/self/mountinfo"); err != nil {
			b.Fatal(err)
		}
		if d := time.Since(start).Nanoseconds(); best < 0 || d < best {
			best = d
		}
	}
	return best
}
