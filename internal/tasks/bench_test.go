package tasks_test

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/tasks"
)

// threadsEnv makes the test binary a process of that many OS threads, each
// asleep in a system call, until its stdin closes: a busy node's tasks.
const threadsEnv = "MOUNTWATCHD_BENCH_THREADS"

// sleepThreads is the child's body.
func sleepThreads(n int) {
	var ready sync.WaitGroup
	for range n {
		ready.Add(1)
		go func() {
			runtime.LockOSThread()
			ready.Done()
			ts := unix.NsecToTimespec(int64(time.Hour))
			for {
				_ = unix.Nanosleep(&ts, nil)
			}
		}()
	}
	ready.Wait()
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

func startThreads(b *testing.B, n int) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), threadsEnv+"="+strconv.Itoa(n))
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { in.Close(); _ = cmd.Wait() })
	buf := make([]byte, 6)
	if _, err := io.ReadFull(out, buf); err != nil {
		b.Fatalf("thread process: %v", err)
	}
}

// fakeFusectl is a fusectl directory with one connection whose waiting
// count is n: with requests waiting, the scan reads the wait channel of
// every sleeping task too (one may be waiting in S in request_wait_answer).
func fakeFusectl(b *testing.B, n int) string {
	dir := b.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "99"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "99", "waiting"), []byte(strconv.Itoa(n)+"\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	return dir
}

// statWalk is the baseline: what any reader of the node's tasks pays, as
// ps does, reading every task's stat once.
func statWalk(b *testing.B) int {
	n := 0
	pids, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range pids {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		tids, err := os.ReadDir(filepath.Join("/proc", p.Name(), "task"))
		if err != nil {
			continue
		}
		for _, t := range tids {
			if _, err := os.ReadFile(filepath.Join("/proc", p.Name(), "task", t.Name(), "stat")); err == nil {
				n++
			}
		}
	}
	return n
}

// BenchmarkTaskScan measures one scan of this machine's tasks, with 2000
// extra sleeping threads, beside the baseline of reading every task's stat
// once (ps's floor), in the same run:
//   - idle_skipped: no FUSE request waiting, no network filesystem: nothing
//     can be stuck, no task is read (a healthy FUSE-only node);
//   - nfs_mounted: every task's stat, the wait channel of tasks in D;
//   - fuse_waiting: a FUSE request in flight, so the wait channel of every
//     sleeping task too (a waiter sleeps in S in request_wait_answer).
func BenchmarkTaskScan(b *testing.B) {
	startThreads(b, 2000)
	snap := func(b *testing.B, network bool) *mounts.Snapshot {
		lines := "22 1 0:21 / / rw - tmpfs tmpfs rw\n"
		if network {
			lines += "300 22 0:77 / /mnt/nfs rw - nfs4 10.0.0.5:/export rw,vers=4.2\n"
		}
		f := filepath.Join(b.TempDir(), "mountinfo")
		if err := os.WriteFile(f, []byte(lines), 0o644); err != nil {
			b.Fatal(err)
		}
		s, err := mounts.ReadCapturedTable(f, mounts.Host{KubeletRoot: mounts.DefaultKubeletRoot})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	var tasksSeen int
	b.Run("baseline_stat_walk", func(b *testing.B) {
		for b.Loop() {
			tasksSeen = statWalk(b)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(tasksSeen), "ns/task")
		b.ReportMetric(float64(tasksSeen), "tasks")
	})
	for _, tc := range []struct {
		name     string
		waiting  int
		network  bool
		examined bool
	}{{"idle_skipped", 0, false, false}, {"nfs_mounted", 0, true, true}, {"fuse_waiting", 1, false, true}} {
		b.Run(tc.name, func(b *testing.B) {
			sc := tasks.NewScanner(tasks.Config{Fusectl: fakeFusectl(b, tc.waiting)})
			s := snap(b, tc.network)
			var r *tasks.Report
			for b.Loop() {
				r = sc.Scan(s)
			}
			if r.Err != nil || (r.Examined > 0) != tc.examined {
				b.Fatalf("examined %d, err %v", r.Examined, r.Err)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(max(tasksSeen, 1)), "ns/task")
			b.ReportMetric(float64(r.Examined), "tasks")
		})
	}
}
