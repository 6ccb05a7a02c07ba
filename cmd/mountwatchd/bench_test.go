package main

import (
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// BenchmarkDetectionLatency measures, on the real daemon and real FUSE
// servers (bindfs) with an unchanged mount table, how long a breakage takes
// to reach /metrics and a recovery to clear from it, beside the probe
// interval and timeout it runs with (the baseline: a breakage is due within
// one interval, a hang within one interval plus the timeout). Each figure is
// the median of the samples taken in one op; /metrics is polled every 10 ms.
func BenchmarkDetectionLatency(b *testing.B) {
	testenv.RequireRoot(b)
	const interval, timeout = time.Second, time.Second
	const samples = 5
	dir := b.TempDir()
	kubelet := filepath.Join(dir, "kubelet")
	dead := newFuseConn(b, ownShell, dir, kubelet, "dead", 1)
	hung := newFuseConn(b, ownShell, dir, kubelet, "hung", 1)
	d := startDaemon(b, nil, "--interval=1h", "--probe.interval="+interval.String(), "--probe.timeout="+timeout.String(),
		"--path.kubelet", kubelet, "--path.pod-logs", dir+"/logs", "--log.target=stderr")
	has := func(check, mp string) bool { return problems(d.metrics())[check+" "+mp] }
	until := func(what string, cond func() bool) time.Duration {
		start := time.Now()
		for !cond() {
			if time.Since(start) > 30*time.Second {
				b.Fatalf("%s: not within 30s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
		return time.Since(start)
	}
	median := func(ds []time.Duration) float64 {
		slices.Sort(ds)
		return float64(ds[len(ds)/2].Milliseconds())
	}
	pod := func(c *fuseConn) string { return c.pods[0] }

	var death, hang, resume []time.Duration
	for b.Loop() {
		death, hang, resume = death[:0], hang[:0], resume[:0]
		for range samples {
			// Let the probe schedule run at a random phase to the breakage.
			time.Sleep(interval + time.Duration(rand.Int64N(int64(interval))))
			dead.kill(b)
			death = append(death, until("death", func() bool { return has("stale_mount", pod(dead)) }))
			dead.remount(b)
			until("heal", func() bool { return !has("stale_mount", pod(dead)) })

			time.Sleep(interval + time.Duration(rand.Int64N(int64(interval))))
			hung.signal(b, syscall.SIGSTOP)
			hang = append(hang, until("hang", func() bool { return has("hung_mount", pod(hung)) }))
			hung.signal(b, syscall.SIGCONT)
			resume = append(resume, until("resume", func() bool { return !has("hung_mount", pod(hung)) }))
		}
	}
	b.ReportMetric(float64(interval.Milliseconds()), "probe-interval-ms")
	b.ReportMetric(float64(timeout.Milliseconds()), "probe-timeout-ms")
	b.ReportMetric(median(death), "death-to-stale-ms")
	b.ReportMetric(median(hang), "stop-to-hung-ms")
	b.ReportMetric(median(resume), "resume-to-clear-ms")
	if strings.Contains(d.stderr.String(), "panic") {
		b.Fatalf("daemon panicked:\n%s", d.stderr)
	}
}
