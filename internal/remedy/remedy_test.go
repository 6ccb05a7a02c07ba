package remedy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/check"
	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// These tests run the remediation over real probe rounds of real sshfs
// mounts whose sshd session is frozen (the server read each request and
// waits), in the test binary's private mount namespace.

const fusectlDir = "/sys/fs/fuse/connections"

// frozen mounts an sshfs under dir and freezes its server.
func frozen(t *testing.T, dir string) (*testenv.SSHFS, string) {
	t.Helper()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(dir, "mnt")
	s := testenv.NewSSHFS(t, src, mnt)
	var sfs unix.Statfs_t
	if err := unix.Statfs(fusectlDir, &sfs); err != nil || sfs.Type != fusectlMagic {
		testenv.Mount(t, "none", fusectlDir, "fusectl", 0, "")
	}
	return s, mnt
}

func connOf(t *testing.T, mnt string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(mnt, &st); err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(int(unix.Major(st.Dev))) + ":" + strconv.Itoa(int(unix.Minor(st.Dev)))
}

// rig is a prober and a remediation of its rounds, as the daemon has them.
type rig struct {
	t      *testing.T
	prober *probe.Prober
	rem    *Remedy
	logs   *observer.ObservedLogs
	cfg    Config
}

func newRig(t *testing.T, cfg Config) *rig {
	prober := probe.NewProber(probe.Config{Timeout: 100 * time.Millisecond, FSTypes: []string{"fuse.sshfs"}}, probe.SysFS{})
	return (&rig{t: t, prober: prober, cfg: cfg}).restart()
}

// restart is a new Remedy (a restarted daemon) over the same prober and
// state directory.
func (g *rig) restart() *rig {
	core, logs := observer.New(zap.InfoLevel)
	g.rem, g.logs = New(g.cfg, mounts.Host{}, g.prober, probe.SysFS{}, zap.New(core)), logs
	return g
}

// run is one probe run of the checks and the remediation after it.
func (g *rig) run() *finding.Report {
	g.t.Helper()
	snap, err := mounts.RereadSnapshot(mounts.Host{}, nil)
	if err != nil {
		g.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep := (&check.Runner{Checks: []check.Check{check.HungMountCheck{}, check.StaleMountCheck{}}, Prober: g.prober}).Run(ctx, snap)
	g.rem.Run(ctx, rep)
	return rep
}

// entries are the audit entries on conn.
func (g *rig) entries(conn string) []observer.LoggedEntry {
	var out []observer.LoggedEntry
	for _, e := range g.logs.All() {
		if e.ContextMap()["connection"] == conn && e.ContextMap()["message_id"] == MessageID {
			out = append(out, e)
		}
	}
	return out
}

func (g *rig) count(result, fstype string) float64 {
	return testutil.ToFloat64(g.rem.Actions.WithLabelValues(ActionAbort, result, fstype))
}

func findingOf(rep *finding.Report, id finding.ID, mnt string) *finding.Finding {
	for i := range rep.Findings {
		if rep.Findings[i].Check == id && rep.Findings[i].MountPoint == mnt {
			return &rep.Findings[i]
		}
	}
	return nil
}

// hungPast runs until mnt's connection has been hung past the threshold:
// one run sees it hung, the next, after the threshold, decides.
func (g *rig) hungPast(mnt string) *finding.Report {
	g.t.Helper()
	if f := findingOf(g.run(), "hung_mount", mnt); f == nil {
		g.t.Fatalf("%s is not reported hung", mnt)
	}
	time.Sleep(g.cfg.HungFor + 100*time.Millisecond)
	return g.run()
}

func baseConfig(t *testing.T, mode Mode) Config {
	return Config{Mode: mode, FSTypes: DefaultFSTypes, HungFor: 300 * time.Millisecond, ApplyHungFor: true,
		Interval: time.Hour, MaxPerHour: 3, StateDir: t.TempDir(), Fusectl: fusectlDir}
}

// stuckReader is a task of ours that waits on mnt: a lookup the frozen
// server took.
func stuckReader(t *testing.T, s *testenv.SSHFS, mnt string) *os.Process {
	t.Helper()
	cmd := exec.Command("cat", filepath.Join(mnt, "a", "never-seen"))
	out := &testenv.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := cmd.Process
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		s.Resume()
		_ = p.Kill()
		<-done
	})
	testenv.WaitUntil(t, 10*time.Second, "the reader to wait on the server", func() bool {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(p.Pid) + "/wchan")
		if cmd.ProcessState != nil {
			t.Fatalf("the reader exited: %s", out)
		}
		return string(b) == "request_wait_answer"
	})
	return p
}

func waitsOnServer(pid int) bool {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/wchan")
	return string(b) == "request_wait_answer"
}

// Dry-run says exactly what would be done, once, and changes nothing: the
// task stays stuck, the connection hung; a restarted daemon (the same
// state directory) does not say it again.
func TestDryRunChangesNothing(t *testing.T) {
	testenv.RequireRoot(t)
	s, mnt := frozen(t, t.TempDir())
	conn := connOf(t, mnt)
	s.Stall()
	reader := stuckReader(t, s, mnt)
	g := newRig(t, baseConfig(t, DryRun))
	rep := g.hungPast(mnt)
	es := g.entries(conn)
	if len(es) != 1 || es[0].ContextMap()["result"] != WouldAbort {
		t.Fatalf("dry-run entries %v, want one would_abort", es)
	}
	reason, _ := es[0].ContextMap()["reason"].(string)
	if !strings.Contains(reason, "1 written to "+fusectlDir+"/") || !strings.Contains(reason, "hung for") {
		t.Errorf("the dry-run entry does not say what would be done and why: %q", reason)
	}
	if f := findingOf(rep, "hung_mount", mnt); f == nil || f.Details["would_abort_at"] == "" {
		t.Errorf("hung finding %+v lacks would_abort_at", f)
	}
	if len(rep.Remediation) != 1 || rep.Remediation[0].Result != WouldAbort {
		t.Errorf("report's remediation %+v, want one would_abort", rep.Remediation)
	}
	for range 3 {
		g.run()
	}
	g.restart()
	rep = g.run()
	if f := findingOf(rep, "hung_mount", mnt); f == nil {
		t.Error("after dry-run, the connection is no longer hung: something changed")
	}
	if !waitsOnServer(reader.Pid) {
		t.Error("after dry-run, the stuck task no longer waits: something changed")
	}
	if n := len(g.entries(conn)); n != 0 {
		t.Errorf("a restarted remediation said its dry-run decision %d more times, want none (the record)", n)
	}
	if c := g.count(WouldAbort, "fuse.sshfs"); c != 0 {
		t.Errorf("restarted: would_abort counted %v, want 0", c)
	}
}

// A healthy but slow server: it answers each request after a delay
// shorter than the threshold (its session frozen, then resumed), over and
// over. It is reported hung while a probe waits, and never aborted.
func TestSlowServerNeverAborted(t *testing.T) {
	testenv.RequireRoot(t)
	s, mnt := frozen(t, t.TempDir())
	cfg := baseConfig(t, On)
	cfg.HungFor = 2 * time.Second
	g := newRig(t, cfg)
	hung := 0
	for range 4 {
		s.Stall()
		for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			if findingOf(g.run(), "hung_mount", mnt) != nil {
				hung++
			}
		}
		s.Resume()
		for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			g.run()
		}
	}
	if hung == 0 {
		t.Fatal("the slow server was never seen hung: the test proves nothing")
	}
	if n := g.logs.Len(); n != 0 {
		t.Errorf("remediation decided %d times about a server that answers within the threshold: %v", n, g.logs.All())
	}
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil {
		t.Errorf("the slow server's mount: %v, want it healthy", err)
	}
}

// Two hung connections and a rate limit of one: the longest hung is
// aborted, the other held back with a warning finding, and stays hung; a
// restarted daemon holds it back too (the record) and repeats nothing.
func TestRateLimitHoldsTheSecondBack(t *testing.T) {
	testenv.RequireRoot(t)
	s1, mnt1 := frozen(t, t.TempDir())
	s2, mnt2 := frozen(t, t.TempDir())
	s1.Stall()
	r1 := stuckReader(t, s1, mnt1)
	time.Sleep(50 * time.Millisecond)
	s2.Stall()
	r2 := stuckReader(t, s2, mnt2)
	cfg := baseConfig(t, On)
	cfg.MaxPerHour = 1
	g := newRig(t, cfg)
	if findingOf(g.run(), "hung_mount", mnt1) == nil {
		t.Fatal("not hung")
	}
	time.Sleep(cfg.HungFor + 100*time.Millisecond)
	rep := g.run()
	var results []string
	for _, a := range rep.Remediation {
		results = append(results, a.MountPoint+" "+a.Result)
	}
	if len(rep.Remediation) != 2 || rep.Remediation[0].Result != Aborted || rep.Remediation[1].Result != HeldBack {
		t.Fatalf("decisions %v, want the first aborted and the second held back", results)
	}
	aborted, held := mnt1, mnt2
	if rep.Remediation[0].MountPoint != mnt1 {
		aborted, held = mnt2, mnt1
	}
	if f := findingOf(rep, HeldID, held); f == nil || f.Severity != finding.Warning || !strings.Contains(f.Message, "held back") {
		t.Errorf("no remediation_held warning on %s: %+v", held, f)
	}
	if f := findingOf(rep, "hung_mount", aborted); f == nil || f.Details["aborted_at"] == "" {
		t.Errorf("the aborted connection's hung finding lacks aborted_at: %+v", f)
	}
	testenv.WaitUntil(t, 10*time.Second, "the aborted connection's task to leave", func() bool {
		pid := r1.Pid
		if aborted == mnt2 {
			pid = r2.Pid
		}
		return !waitsOnServer(pid)
	})
	rep = g.run()
	if f := findingOf(rep, "stale_mount", aborted); f == nil || f.Details["aborted_at"] == "" {
		t.Errorf("after the abort, %s is not stale with aborted_at: %+v", aborted, f)
	}
	if findingOf(rep, "hung_mount", held) == nil || findingOf(rep, HeldID, held) == nil {
		t.Errorf("the held-back connection is no longer hung and held back")
	}
	g.restart()
	rep = g.run()
	if findingOf(rep, HeldID, held) == nil || g.count(Aborted, "fuse.sshfs") != 0 {
		t.Errorf("restarted: held-back finding %v, aborts %v; want held back by the record and nothing aborted",
			findingOf(rep, HeldID, held), g.count(Aborted, "fuse.sshfs"))
	}
}

// Refused: a type not in the allow list; and a connection that recovered
// right before acting (the fresh probe answered).
func TestRefused(t *testing.T) {
	testenv.RequireRoot(t)
	t.Run("fstype not allowed", func(t *testing.T) {
		s, mnt := frozen(t, t.TempDir())
		conn := connOf(t, mnt)
		s.Stall()
		cfg := baseConfig(t, On)
		cfg.FSTypes = []string{"fuse.ceph-fuse"}
		g := newRig(t, cfg)
		g.hungPast(mnt)
		es := g.entries(conn)
		if len(es) != 1 || es[0].ContextMap()["result"] != Refused || !strings.Contains(es[0].ContextMap()["reason"].(string), "not in --remediation.fstypes") {
			t.Fatalf("entries %v, want one refusal naming the allow list", es)
		}
		if findingOf(g.run(), "hung_mount", mnt) == nil {
			t.Error("the refused connection is no longer hung")
		}
	})
	t.Run("recovered just before acting", func(t *testing.T) {
		s, mnt := frozen(t, t.TempDir())
		conn := connOf(t, mnt)
		s.Stall()
		g := newRig(t, baseConfig(t, On))
		g.rem.beforeFresh = func(string) { s.Resume() }
		g.hungPast(mnt)
		es := g.entries(conn)
		if len(es) != 1 || es[0].ContextMap()["result"] != Refused || !strings.Contains(es[0].ContextMap()["reason"].(string), "recovered") {
			t.Fatalf("entries %v, want one refusal: the fresh probe answered", es)
		}
		var st unix.Statfs_t
		if err := unix.Statfs(mnt, &st); err != nil {
			t.Errorf("the recovered mount: %v, want it healthy (not aborted)", err)
		}
	})
	// Dry-run sends no fresh probe: the probe blocked since the
	// connection hung must still be blocked right before deciding.
	t.Run("recovered just before deciding in dry-run", func(t *testing.T) {
		s, mnt := frozen(t, t.TempDir())
		conn := connOf(t, mnt)
		s.Stall()
		g := newRig(t, baseConfig(t, DryRun))
		g.rem.beforeRecheck = func(string) {
			s.Resume()
			testenv.WaitUntil(t, 10*time.Second, "the blocked probe to return", func() bool {
				_, blocked := g.prober.Blocked(conn)
				return !blocked
			})
		}
		g.hungPast(mnt)
		es := g.entries(conn)
		if len(es) != 1 || es[0].ContextMap()["result"] != Refused || !strings.Contains(es[0].ContextMap()["reason"].(string), "has returned") {
			t.Fatalf("entries %v, want one refusal: the blocked probe returned", es)
		}
	})
}

// Without write access to fusectl (mounted read-only where the inspected
// namespace sees it), remediation says it cannot act and why, with a
// warning finding; detection goes on.
func TestCannotActWithoutWriteAccess(t *testing.T) {
	testenv.RequireRoot(t)
	s, mnt := frozen(t, t.TempDir())
	conn := connOf(t, mnt)
	s.Stall()
	ro := filepath.Join(t.TempDir(), "fusectl-ro")
	if err := os.Mkdir(ro, 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Mount(t, "none", ro, "fusectl", unix.MS_RDONLY, "")
	cfg := baseConfig(t, On)
	cfg.Fusectl = ro
	g := newRig(t, cfg)
	rep := g.hungPast(mnt)
	es := g.entries(conn)
	if len(es) != 1 || es[0].ContextMap()["result"] != CannotAct || !strings.Contains(es[0].ContextMap()["reason"].(string), "read-only") {
		t.Fatalf("entries %v, want one cannot_act saying fusectl is read-only", es)
	}
	if f := findingOf(rep, HeldID, mnt); f == nil || !strings.Contains(f.Message, "cannot act") {
		t.Errorf("no warning that remediation cannot act: %+v", f)
	}
	if findingOf(rep, "hung_mount", mnt) == nil {
		t.Error("detection stopped: no hung finding")
	}
}
