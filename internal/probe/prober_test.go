package probe

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe/probetest"
)

func TestProberOneProbePerDeadConnection(t *testing.T) {
	fs := probetest.NewFS()
	s := probetest.Table(t, fs,
		"1 1 8:1 / / rw - ext4 /dev/sda rw",
		probetest.FuseLine(10, 40, "/", "/mnt/cephfs"),
		probetest.FuseLine(11, 40, "/volumes/a", "/pods/a"),
		probetest.FuseLine(12, 40, "/volumes/b", "/pods/b"))
	fs.Errs["/mnt/cephfs"] = fmt.Errorf("statfs: %w", syscall.ENOTCONN)

	p := NewProber(Config{Timeout: time.Second}, fs)
	r := p.Round(context.Background(), s)
	for _, id := range []int{10, 11, 12} {
		if res := r.Results[id]; res.State != Failed || res.Errno != syscall.ENOTCONN {
			t.Errorf("mount %d: %+v", id, res)
		}
	}
	if _, ok := r.Results[1]; ok {
		t.Error("ext4 was probed")
	}
	if n := fs.Count("/mnt/cephfs") + fs.Count("/pods/a") + fs.Count("/pods/b"); n != 1 || r.Stats.Probes != 1 {
		t.Errorf("%d probes (stats %d), want 1 for one dead connection", n, r.Stats.Probes)
	}
}

// The prober never waits past its deadline, never sends a second probe to
// a connection whose first is blocked, and probes it again once it returns.
func TestProberHungConnection(t *testing.T) {
	fs := probetest.NewFS()
	s := probetest.Table(t, fs, probetest.FuseLine(10, 40, "/", "/mnt/hung"), probetest.FuseLine(11, 40, "/v", "/pods/v"), probetest.FuseLine(20, 41, "/", "/mnt/ok"))
	release := make(chan struct{})
	fs.Block["/mnt/hung"] = release
	p := NewProber(Config{Timeout: 250 * time.Millisecond}, fs)

	done := make(chan *Round)
	go func() { done <- p.Round(context.Background(), s) }()
	var r *Round
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Round blocked on a hung connection")
	}
	if r.Results[10].State != Hung || r.Results[11].State != Hung || r.Results[20].State != OK {
		t.Fatalf("results %+v", r.Results)
	}
	if st := p.Stats(); st.Blocked != 1 || st.Timeouts != 1 {
		t.Errorf("stats %+v, want 1 blocked, 1 timeout", st)
	}

	// More rounds while it is blocked: no new probe of that connection.
	for i := range 3 {
		s2 := probetest.Table(t, fs, probetest.FuseLine(10, 40, "/", "/mnt/hung"), probetest.FuseLine(11, 40, "/v", "/pods/v"), probetest.FuseLine(20, 41, "/", "/mnt/ok"))
		r := p.Round(context.Background(), s2)
		if r.Results[10].State != Hung || !r.Results[10].Since.Equal(r.Results[11].Since) {
			t.Errorf("round %d: %+v", i, r.Results[10])
		}
	}
	if n := fs.Count("/mnt/hung"); n != 1 {
		t.Errorf("hung connection probed %d times, want 1", n)
	}

	close(release) // the server answers again
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().Blocked != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	s3 := probetest.Table(t, fs, probetest.FuseLine(10, 40, "/", "/mnt/hung"), probetest.FuseLine(20, 41, "/", "/mnt/ok"))
	if r := p.Round(context.Background(), s3); r.Results[10].State != OK {
		t.Errorf("after release: %+v", r.Results[10])
	}
}

func TestProberCapsBlockedProbes(t *testing.T) {
	fs := probetest.NewFS()
	var lines []string
	release := make(chan struct{})
	defer close(release)
	for i := range 5 {
		mp := fmt.Sprintf("/mnt/hung%d", i)
		lines = append(lines, probetest.FuseLine(10+i, 40+i, "/", mp))
		fs.Block[mp] = release
	}
	lines = append(lines, probetest.FuseLine(99, 99, "/", "/mnt/ok"))
	p := NewProber(Config{Timeout: 250 * time.Millisecond, MaxBlocked: 2}, fs)
	for round := range 3 {
		r := p.Round(context.Background(), probetest.Table(t, fs, lines...))
		var hung, notProbed int
		for _, res := range r.Results {
			switch res.State {
			case Hung:
				hung++
			case NotProbed:
				notProbed++
			}
		}
		if st := p.Stats(); st.Blocked > 2 || hung != 2 || notProbed != 4 || st.NotProbed != 4 {
			t.Errorf("round %d: blocked %d, hung %d, not probed %d (stats %+v)", round, st.Blocked, hung, notProbed, st)
		}
	}
	total := 0
	for i := range 5 {
		total += fs.Count(fmt.Sprintf("/mnt/hung%d", i))
	}
	if total != 2 {
		t.Errorf("%d probes started for hung connections, want 2 (the cap)", total)
	}
}

func TestProberCancelled(t *testing.T) {
	fs := probetest.NewFS()
	release := make(chan struct{})
	defer close(release)
	fs.Block["/mnt/slow"] = release
	s := probetest.Table(t, fs, probetest.FuseLine(10, 40, "/", "/mnt/slow"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := NewProber(Config{Timeout: time.Hour}, fs).Round(ctx, s)
	if r.Results[10].State != NotProbed {
		t.Errorf("%+v", r.Results[10])
	}
}

func TestProbeFSTypes(t *testing.T) {
	p := NewProber(Config{FSTypes: []string{"fuse.*", "nfs4"}}, nil)
	for fstype, want := range map[string]bool{"fuse.s3fs": true, "fuse": false, "nfs4": true, "nfs": false, "fusectl": false} {
		m := &mounts.Mount{}
		m.FSType = fstype
		if p.Probes(m) != want {
			t.Errorf("%s: probed %v", fstype, !want)
		}
	}
}

// A root SysFS cannot open is the inspected namespace's failure, never the
// mount's, and its error says why from the root alone: another process's
// root needs CAP_SYS_PTRACE, or the process exited.
func TestSysFSRootError(t *testing.T) {
	_, err := SysFS{}.Probe("/proc/2147483647/root", "/mnt/a")
	if !errors.Is(err, mounts.ErrNamespaceUnreachable) || !strings.Contains(err.Error(), "the process has exited") {
		t.Errorf("another process's missing root: %v", err)
	}
	if _, err := (SysFS{}).Probe("/", "/proc"); err != nil {
		t.Errorf("our own root: %v", err)
	}
}
