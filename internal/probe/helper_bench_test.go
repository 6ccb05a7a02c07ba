package probe

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// stalledBenchNode is 50 healthy connections (tmpfs mounts, listed as FUSE
// so that they are probed) and 50 stalled ones (the ceph-fuse stand-in
// taking each request and blocking in its handler), as a snapshot.
func stalledBenchNode(b *testing.B) *mounts.Snapshot {
	b.Helper()
	testenv.RequireRoot(b)
	dir := b.TempDir()
	var lines []string
	add := func(id int, mp string) {
		var st unix.Stat_t
		if err := unix.Stat(mp, &st); err != nil {
			b.Fatal(err)
		}
		lines = append(lines, fmt.Sprintf("%d 1 %d:%d / %s rw - fuse.ceph-fuse ceph-fuse rw", id,
			unix.Major(st.Dev), unix.Minor(st.Dev), mp))
	}
	for i := range 50 {
		mp := filepath.Join(dir, fmt.Sprintf("ok%d", i))
		if err := os.Mkdir(mp, 0o755); err != nil {
			b.Fatal(err)
		}
		testenv.Tmpfs(b, mp)
		add(100+i, mp)
	}
	var servers []*os.Process
	for i := range 50 {
		mp := filepath.Join(dir, fmt.Sprintf("stalled%d", i))
		if err := os.MkdirAll(mp+"-src", 0o755); err != nil {
			b.Fatal(err)
		}
		servers = append(servers, testenv.FakeCephFuse(b, mp+"-src", mp))
		add(200+i, mp)
	}
	for _, p := range servers {
		if err := p.Signal(syscall.SIGUSR1); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() {
		for _, p := range servers {
			_ = p.Signal(syscall.SIGUSR2)
		}
	})
	ms, _, _, err := mounts.ParseMountTableLimit(strings.NewReader(strings.Join(lines, "\n")), 0)
	if err != nil {
		b.Fatal(err)
	}
	return mounts.IndexSnapshot(&mounts.Snapshot{Live: true, Mounts: ms, Taken: time.Now()})
}

// procCost is the CPU time (ticks), RSS (kB) and threads of processes.
type procCost struct {
	ticks      uint64
	rssKB      int
	threads, n int
}

func costOf(pids []int) procCost {
	var c procCost
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 20 {
			continue
		}
		ut, _ := strconv.ParseUint(f[11], 10, 64)
		st, _ := strconv.ParseUint(f[12], 10, 64)
		th, _ := strconv.Atoi(f[17])
		rss, _ := strconv.Atoi(f[21])
		c.ticks += ut + st
		c.threads += th
		c.rssKB += rss * os.Getpagesize() / 1024
		c.n++
	}
	return c
}

// BenchmarkProberStalled50 is one probe run (Round) over 50 healthy and 50
// stalled connections, after the first run left the stalled ones stuck:
// the prober in helper processes beside the in-process one it replaced
// (SysFS on the prober's own threads, the baseline). It reports CPU per
// run of the caller and its helpers together, and their RSS, threads and
// helper processes at the end.
func BenchmarkProberStalled50(b *testing.B) {
	s := stalledBenchNode(b)
	const ticksPerMs = 0.1 // USER_HZ 100
	run := func(b *testing.B, fs FS) {
		hfs, helpers := fs.(*HelperFS)
		p := NewProber(Config{Timeout: 500 * time.Millisecond, MaxBlocked: 128}, fs)
		p.Round(context.Background(), s) // the stalled connections get stuck
		pids := func() []int {
			if helpers {
				return append([]int{os.Getpid()}, helperPIDs(hfs)...)
			}
			return []int{os.Getpid()}
		}
		before := costOf(pids())
		for b.Loop() {
			r := p.Round(context.Background(), s)
			if r.Results[100].State != OK || r.Results[200].State != Hung {
				var dump []string
				for _, pid := range pids()[1:] {
					tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
					for _, t := range tasks {
						w, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/wchan", pid, t.Name()))
						dump = append(dump, fmt.Sprintf("%d/%s:%s", pid, t.Name(), w))
					}
				}
				b.Fatalf("healthy %+v, stalled %+v; helper threads %v", r.Results[100], r.Results[200], dump)
			}
		}
		after := costOf(pids())
		b.ReportMetric(float64(after.ticks-before.ticks)/ticksPerMs/float64(b.N), "cpu-ms/run")
		b.ReportMetric(float64(after.rssKB)/1024, "RSS-MB")
		b.ReportMetric(float64(after.threads), "threads")
		b.ReportMetric(float64(after.n-1), "helpers")
	}
	b.Run("helpers", func(b *testing.B) { run(b, NewHelperFS(HelperConfig{})) })
	b.Run("in-process-baseline", func(b *testing.B) { run(b, SysFS{}) })
}

// helperPIDs are the PIDs of f's helpers that have not exited.
func helperPIDs(f *HelperFS) []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int
	for h := range f.live {
		out = append(out, h.pid)
	}
	return out
}
