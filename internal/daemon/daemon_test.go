package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mountwatchd/mountwatchd/internal/check"
	"github.com/mountwatchd/mountwatchd/internal/export"
	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

const (
	healthyTable = "22 1 259:1 / / rw - ext4 /dev/vda rw\n" +
		"30 22 0:40 / /mnt/ok rw - tmpfs tmpfs rw\n"
	brokenTable = healthyTable +
		"31 22 0:41 /gone//deleted /mnt/broken rw - fuse.ceph-fuse ceph-fuse rw\n"
)

// fakeProcfs is a procfs whose self/mountinfo the test rewrites. A regular
// file never signals POLLPRI, so only --interval re-reads it: the tests of
// the change event are in cmd/mountwatchd, on the real kernel.
func fakeProcfs(t *testing.T, table string) (mounts.Host, func(string)) {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(dir+"/self", 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(table string) {
		tmp := dir + "/self/mountinfo.tmp"
		if err := os.WriteFile(tmp, []byte(table), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, dir+"/self/mountinfo"); err != nil {
			t.Fatal(err)
		}
	}
	write(table)
	return mounts.Host{Procfs: dir, KubeletRoot: filepath.Join(dir, "kubelet")}, write
}

// fakeCheck is a check of any kind whose runs the test controls.
type fakeCheck struct {
	id    finding.ID
	kind  finding.Kind
	mu    sync.Mutex
	runs  int
	find  func(s *mounts.Snapshot) []finding.Finding
	block chan struct{} // when set, Run waits for it (or ctx)
	stats *probe.Stats
	err   error // returned by Run
}

func (c *fakeCheck) Decl() check.Decl {
	d := check.Decl{ID: c.id, Kind: c.kind}
	if c.kind != finding.TableCheck {
		d.Needs = check.NeedsLive | check.NeedsRoot
	}
	return d
}

func (c *fakeCheck) Run(ctx context.Context, env *check.Env) check.Outcome {
	c.mu.Lock()
	c.runs++
	block := c.block
	c.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return check.Outcome{Err: ctx.Err()}
		}
	}
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	if c.find == nil {
		return check.Outcome{Err: err}
	}
	return check.Outcome{Findings: c.find(env.Snapshot), Err: err}
}

func (c *fakeCheck) setErr(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
}

func (c *fakeCheck) Runs() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runs
}

// findOn reports a finding of check id on every mount of fstype.
func findOn(id finding.ID, fstype string, sev finding.Severity) func(*mounts.Snapshot) []finding.Finding {
	return func(s *mounts.Snapshot) []finding.Finding {
		var out []finding.Finding
		for _, m := range s.Mounts {
			if m.FSType == fstype {
				out = append(out, finding.Finding{Check: id, Severity: sev, MountID: m.ID, MountPoint: m.Mountpoint, FSType: m.FSType,
					Source: m.Source, Details: map[string]string{"errno": "ENOTCONN"}})
			}
		}
		return out
	}
}

func start(t *testing.T, cfg Config) (*Daemon, context.CancelFunc) {
	t.Helper()
	d := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of cancel")
		}
	})
	return d, cancel
}

func count(st *export.State, id finding.ID) int {
	n := 0
	if st.Report != nil {
		for _, f := range st.Report.Findings {
			if f.Check == id {
				n++
			}
		}
	}
	return n
}

// Every kind of check is scheduled by its Kind and merged into one report:
// table checks on each read, probe and scan checks on their intervals.
func TestLoopSchedulesByKindAndMerges(t *testing.T) {
	host, _ := fakeProcfs(t, brokenTable)
	stale := &fakeCheck{id: check.StaleMount, kind: finding.ProbeCheck, find: findOn(check.StaleMount, "tmpfs", finding.Critical),
		stats: &probe.Stats{Connections: 2}}
	scan := &fakeCheck{id: check.OpaquePropagation, kind: finding.ScanCheck, find: findOn(check.OpaquePropagation, "ext4", finding.Warning)}
	d, _ := start(t, Config{Host: host, Checks: []check.Check{check.DeletedRootCheck{}, stale, scan},
		Interval: 20 * time.Millisecond, ProbeInterval: 50 * time.Millisecond, ScanInterval: time.Hour})

	testenv.WaitUntil(t, 10*time.Second, "every kind reported", func() bool {
		st := d.State()
		return count(st, check.DeletedRoot) == 1 && count(st, check.StaleMount) == 1 && count(st, check.OpaquePropagation) == 1
	})
	testenv.WaitUntil(t, 10*time.Second, "several table reads and probe runs", func() bool { return d.State().TableReads >= 5 && stale.Runs() >= 3 })
	if n := scan.Runs(); n != 1 {
		t.Errorf("scan ran %d times with a 1h interval, want once (at start)", n)
	}
	st := d.State()
	if st.LastComplete.IsZero() {
		t.Error("LastComplete not set after every check ran")
	}
	if got := len(st.Report.Checks); got != 3 || st.Report.Checks[0].Check != check.DeletedRoot || st.Report.Checks[2].Check != check.OpaquePropagation {
		t.Errorf("merged checks not in catalogue order: %+v", st.Report.Checks)
	}
	for _, c := range st.Checks {
		if c.Runs == 0 || c.LastRun.IsZero() {
			t.Errorf("check %s has no run recorded: %+v", c.ID, c)
		}
	}
}

// A probe run that never returns holds up neither the table checks nor the
// state; health turns bad only once the run is overdue.
func TestBlockedProbeDoesNotBlockLoop(t *testing.T) {
	host, write := fakeProcfs(t, healthyTable)
	block := make(chan struct{})
	defer close(block)
	hung := &fakeCheck{id: check.HungMount, kind: finding.ProbeCheck, block: block}
	d, _ := start(t, Config{Host: host, Checks: []check.Check{check.DeletedRootCheck{}, hung},
		Interval: 20 * time.Millisecond, ProbeInterval: time.Hour})

	testenv.WaitUntil(t, 10*time.Second, "the probe run to start", func() bool { return hung.Runs() == 1 })
	write(brokenTable)
	testenv.WaitUntil(t, 10*time.Second, "the deleted root found while the probe is blocked", func() bool { return count(d.State(), check.DeletedRoot) == 1 })
	if ok, why := d.Healthy(time.Now()); !ok {
		t.Errorf("unhealthy while a probe run is within its interval: %s", why)
	}
	if ok, _ := d.Healthy(time.Now().Add(3 * time.Hour)); ok {
		t.Error("healthy although the probe run is hours overdue")
	}
	if !d.State().LastComplete.IsZero() {
		t.Error("LastComplete set although the probe check never finished")
	}
}

// A problem is logged once when it appears, once when its severity changes
// and once when it clears, however often the table is read in between.
func TestChangesLoggedOnce(t *testing.T) {
	host, write := fakeProcfs(t, healthyTable)
	core, logs := observer.New(zapcore.DebugLevel)
	sev := finding.Warning
	var mu sync.Mutex
	fc := &fakeCheck{id: check.StaleMount, kind: finding.TableCheck, find: func(s *mounts.Snapshot) []finding.Finding {
		mu.Lock()
		defer mu.Unlock()
		return findOn(check.StaleMount, "fuse.ceph-fuse", sev)(s)
	}}
	d, _ := start(t, Config{Host: host, Checks: []check.Check{fc}, Interval: 5 * time.Millisecond, Log: zap.New(core)})

	reads := func() uint64 { return d.State().TableReads }
	write(brokenTable)
	testenv.WaitUntil(t, 10*time.Second, "the problem", func() bool { return count(d.State(), check.StaleMount) == 1 })
	r := reads()
	testenv.WaitUntil(t, 10*time.Second, "10 more reads", func() bool { return reads() >= r+10 })
	mu.Lock()
	sev = finding.Critical
	mu.Unlock()
	testenv.WaitUntil(t, 10*time.Second, "the severity change", func() bool {
		st := d.State()
		return count(st, check.StaleMount) == 1 && st.Report.Findings[0].Severity == finding.Critical
	})
	r = reads()
	testenv.WaitUntil(t, 10*time.Second, "10 more reads", func() bool { return reads() >= r+10 })
	write(healthyTable)
	testenv.WaitUntil(t, 10*time.Second, "the problem to clear", func() bool { return count(d.State(), check.StaleMount) == 0 })
	r = reads()
	testenv.WaitUntil(t, 10*time.Second, "10 more reads", func() bool { return reads() >= r+10 })

	var events []string
	for _, e := range logs.FilterField(zap.String("check", "stale_mount")).All() {
		m := e.ContextMap()
		events = append(events, m["event"].(string))
		if m["message_id"] != export.MessageIDs[check.StaleMount] || m["mount_point"] != "/mnt/broken" || m["errno"] != "ENOTCONN" {
			t.Errorf("entry lacks fields: %v", m)
		}
		want := map[string]int64{"appeared": 4, "changed": 2, "cleared": 5}[m["event"].(string)]
		if m["priority"] != want {
			t.Errorf("%s: priority %v, want %d", m["event"], m["priority"], want)
		}
	}
	if strings.Join(events, ",") != "appeared,changed,cleared" {
		t.Errorf("logged %v, want appeared, changed, cleared once each", events)
	}
}

// Probe findings about a mount that has since been unmounted are dropped
// from the merged report at the next table read, not at the next probe.
func TestFindingsOfGoneMountsDropped(t *testing.T) {
	host, write := fakeProcfs(t, brokenTable)
	stale := &fakeCheck{id: check.StaleMount, kind: finding.ProbeCheck, find: findOn(check.StaleMount, "fuse.ceph-fuse", finding.Critical)}
	d, _ := start(t, Config{Host: host, Checks: []check.Check{stale}, Interval: 10 * time.Millisecond, ProbeInterval: time.Hour})
	testenv.WaitUntil(t, 10*time.Second, "the stale mount", func() bool { return count(d.State(), check.StaleMount) == 1 })
	write(healthyTable)
	testenv.WaitUntil(t, 10*time.Second, "the finding to go with its mount", func() bool { return count(d.State(), check.StaleMount) == 0 })
	if stale.Runs() != 1 {
		t.Errorf("probe ran %d times, want 1", stale.Runs())
	}
}

// The kernel reuses mount ids: a mount unmounted and made again at the same
// place comes back with the same id and mount point. A probe finding about
// the old mount must not stick to the new one, which no probe has seen yet
// (found by TestDaemonProbeChaos: a healed ceph-fuse volume reported stale
// again for a probe interval).
func TestFindingsOfRemadeMountsDropped(t *testing.T) {
	host, write := fakeProcfs(t, brokenTable)
	stale := &fakeCheck{id: check.StaleMount, kind: finding.ProbeCheck, find: findOn(check.StaleMount, "fuse.ceph-fuse", finding.Critical)}
	d, _ := start(t, Config{Host: host, Checks: []check.Check{stale}, Interval: 10 * time.Millisecond, ProbeInterval: time.Hour})
	testenv.WaitUntil(t, 10*time.Second, "the stale mount", func() bool { return count(d.State(), check.StaleMount) == 1 })
	write(healthyTable)
	testenv.WaitUntil(t, 10*time.Second, "the finding to go with its mount", func() bool { return count(d.State(), check.StaleMount) == 0 })
	reads := d.State().TableReads
	write(brokenTable) // the same mount id and mount point again
	testenv.WaitUntil(t, 10*time.Second, "two more reads of the table", func() bool { return d.State().TableReads >= reads+2 })
	if n := count(d.State(), check.StaleMount); n != 0 {
		t.Errorf("%d stale findings on a mount made again after the probe: the old mount's result stuck to the new one", n)
	}
	if stale.Runs() != 1 {
		t.Errorf("probe ran %d times, want 1", stale.Runs())
	}
}

// An unchanged table is read again at every --interval, each read counted
// and with its own time, but not parsed again: every snapshot shares the
// first one's mounts, and a probe finding made over the first stays while
// its mount does. A changed table is parsed; no lane keeps a table once its
// run is recorded.
func TestUnchangedTableNotParsedAgain(t *testing.T) {
	host, write := fakeProcfs(t, brokenTable)
	stale := &fakeCheck{id: check.StaleMount, kind: finding.ProbeCheck, find: findOn(check.StaleMount, "fuse.ceph-fuse", finding.Critical)}
	d := New(Config{Host: host, Checks: []check.Check{check.DeletedRootCheck{}, stale},
		Interval: 10 * time.Millisecond, ProbeInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	testenv.WaitUntil(t, 10*time.Second, "the stale mount", func() bool { return count(d.State(), check.StaleMount) == 1 })
	first := d.State()
	testenv.WaitUntil(t, 10*time.Second, "three more reads", func() bool { return d.State().TableReads >= first.TableReads+3 })
	st := d.State()
	if s := st.Report.Snapshot; !s.SameTable(first.Report.Snapshot) || !s.Taken.After(first.Report.Snapshot.Taken) {
		t.Errorf("unchanged table read again: shares the parse %v, taken %v after %v", s.SameTable(first.Report.Snapshot), s.Taken, first.Report.Snapshot.Taken)
	}
	if count(st, check.StaleMount) != 1 || count(st, check.DeletedRoot) != 1 || st.TableReadErrors != 0 {
		t.Errorf("after %d reads of the unchanged table: %d stale, %d deleted-root findings, %d read errors",
			st.TableReads, count(st, check.StaleMount), count(st, check.DeletedRoot), st.TableReadErrors)
	}
	write(healthyTable)
	testenv.WaitUntil(t, 10*time.Second, "the changed table", func() bool { return count(d.State(), check.DeletedRoot) == 0 })
	st = d.State()
	if st.Report.Snapshot.SameTable(first.Report.Snapshot) || len(st.Report.Snapshot.Mounts) != 2 || count(st, check.StaleMount) != 0 {
		t.Errorf("changed table: shares the old parse %v, %d mounts, %d stale findings",
			st.Report.Snapshot.SameTable(first.Report.Snapshot), len(st.Report.Snapshot.Mounts), count(st, check.StaleMount))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, l := range d.lanes { // the loop's, now that it returned
		if l.last != nil && l.last.Snapshot != nil {
			t.Errorf("the %s lane keeps the table of its last run", l.kind)
		}
	}
}

type notes struct {
	mu  sync.Mutex
	got []string
}

func (n *notes) notify(s string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.got = append(n.got, s)
	return nil
}

func (n *notes) all() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.got, "\n")
}

// READY=1 comes once, after every kind of check ran; STATUS= carries the
// summary; WATCHDOG=1 only while the loop iterates.
func TestNotify(t *testing.T) {
	host, _ := fakeProcfs(t, brokenTable)
	n := &notes{}
	block := make(chan struct{})
	probeCheck := &fakeCheck{id: check.StaleMount, kind: finding.ProbeCheck, block: block}
	start(t, Config{Host: host, Checks: []check.Check{check.DeletedRootCheck{}, probeCheck},
		Interval: time.Hour, ProbeInterval: time.Hour, Notify: n.notify, Watchdog: 40 * time.Millisecond})
	testenv.WaitUntil(t, 10*time.Second, "watchdog pets", func() bool { return strings.Count(n.all(), "WATCHDOG=1") >= 3 })
	if strings.Contains(n.all(), "READY=1") {
		t.Errorf("READY before the probe checks ran:\n%s", n.all())
	}
	close(block)
	testenv.WaitUntil(t, 10*time.Second, "READY", func() bool { return strings.Contains(n.all(), "READY=1") })
	if !strings.Contains(n.all(), "STATUS=1 mount problem (1 critical): deleted_root /mnt/broken") {
		t.Errorf("no STATUS with the summary:\n%s", n.all())
	}
	if c := strings.Count(n.all(), "READY=1"); c != 1 {
		t.Errorf("READY sent %d times", c)
	}
}

// The watchdog is not petted when the loop stops iterating.
func TestWatchdogStopsWhenLoopStuck(t *testing.T) {
	host, _ := fakeProcfs(t, healthyTable)
	n := &notes{}
	d := New(Config{Host: host, Checks: []check.Check{check.DeletedRootCheck{}}, Interval: time.Hour, Notify: n.notify,
		Watchdog: 40 * time.Millisecond, Log: zap.NewNop()})
	// No Run: the loop never iterates after New, as if stuck.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.petWatchdog(ctx); close(done) }()
	time.Sleep(200 * time.Millisecond) // several pet periods; a behaviour window, not a timing assertion
	cancel()
	<-done
	if strings.Contains(n.all(), "WATCHDOG=1") {
		t.Errorf("petted the watchdog while the loop did not iterate:\n%s", n.all())
	}
	if ok, _ := d.Healthy(time.Now().Add(time.Minute)); ok {
		t.Error("healthy a minute after the last iteration with a 40ms watchdog")
	}
}

// An unreadable table is counted and logged once, the daemon keeps running,
// and recovers when the table is back.
func TestUnreadableTable(t *testing.T) {
	host, write := fakeProcfs(t, healthyTable)
	core, logs := observer.New(zapcore.DebugLevel)
	d, _ := start(t, Config{Host: host, Checks: []check.Check{check.DeletedRootCheck{}}, Interval: 5 * time.Millisecond, Log: zap.New(core)})
	testenv.WaitUntil(t, 10*time.Second, "a read", func() bool { return d.State().TableReads > 0 })
	if err := os.Remove(host.Procfs + "/self/mountinfo"); err != nil {
		t.Fatal(err)
	}
	testenv.WaitUntil(t, 10*time.Second, "10 failed reads", func() bool { return d.State().TableReadErrors >= 10 })
	if n := logs.FilterMessageSnippet("cannot read the mount table").Len(); n != 1 {
		t.Errorf("read error logged %d times, want once", n)
	}
	write(brokenTable)
	testenv.WaitUntil(t, 10*time.Second, "recovery", func() bool { return count(d.State(), check.DeletedRoot) == 1 })
	if ok, why := d.Healthy(time.Now()); !ok {
		t.Errorf("unhealthy: %s", why)
	}
}

// A read of the table that blocks (a hung filesystem under the kubelet root)
// holds the loop for at most ReadTimeout; no second read starts while it is
// blocked, the last results stay published, and reads resume once it
// returns.
func TestBlockedTableReadDoesNotBlockLoop(t *testing.T) {
	host, _ := fakeProcfs(t, brokenTable)
	d := New(Config{Host: host, Checks: []check.Check{check.DeletedRootCheck{}}, Interval: 20 * time.Millisecond,
		ReadTimeout: 50 * time.Millisecond})
	var mu sync.Mutex
	inFlight, maxInFlight := 0, 0
	release := make(chan struct{})
	var hang bool
	d.table.read = func(h mounts.Host, prev *mounts.Snapshot) (*mounts.Snapshot, error) {
		mu.Lock()
		block := hang
		inFlight++
		maxInFlight = max(maxInFlight, inFlight)
		mu.Unlock()
		defer func() { mu.Lock(); inFlight--; mu.Unlock() }()
		if block {
			<-release
		}
		return mounts.RereadSnapshot(h, prev)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()

	testenv.WaitUntil(t, 10*time.Second, "the problem", func() bool { return count(d.State(), check.DeletedRoot) == 1 })
	mu.Lock()
	hang = true
	mu.Unlock()
	testenv.WaitUntil(t, 10*time.Second, "10 failed reads while one is blocked", func() bool { return d.State().TableReadErrors >= 10 })
	// The loop goes on, but the table cannot be read: unhealthy for that
	// reason, not for a stuck loop.
	if ok, why := d.Healthy(time.Now()); ok || !strings.Contains(why, "mount table cannot be read") {
		t.Errorf("while a read is blocked: healthy=%v %q, want unhealthy because the table cannot be read", ok, why)
	}
	if count(d.State(), check.DeletedRoot) != 1 {
		t.Error("the last results were not kept")
	}
	mu.Lock()
	hang = false
	mu.Unlock()
	close(release)
	ok := func() uint64 { st := d.State(); return st.TableReads - st.TableReadErrors }
	before := ok()
	testenv.WaitUntil(t, 10*time.Second, "reads to succeed again", func() bool { return ok() >= before+3 })
	if ok, why := d.Healthy(time.Now()); !ok {
		t.Errorf("unhealthy once reads succeed again: %s", why)
	}
	mu.Lock()
	defer mu.Unlock()
	if maxInFlight != 1 {
		t.Errorf("%d reads in flight at once, want at most 1", maxInFlight)
	}
}

// After a change the table is re-read at once when reads are cheap, and at
// most a tenth of the time when they are not.
func TestRereadDelay(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := New(Config{MinReread: 100 * time.Millisecond})
	for _, c := range []struct {
		cost, since, want time.Duration
	}{
		{time.Millisecond, 0, 100 * time.Millisecond},
		{time.Millisecond, time.Second, 0},
		{60 * time.Millisecond, 100 * time.Millisecond, 500 * time.Millisecond},
		{60 * time.Millisecond, time.Second, 0},
	} {
		d.table.lastRead, d.table.readCost = t0, c.cost
		if got := d.table.rereadDelay(t0.Add(c.since)); got != c.want {
			t.Errorf("read took %s, %s ago: delay %s, want %s", c.cost, c.since, got, c.want)
		}
	}
}

// A daemon that cannot read its table is not healthy, whatever the loop
// does: /healthz (Healthy) says why, the state says the read failed (the
// mountwatchd_mount_table_read_success gauge), the watchdog is not petted,
// and all of it comes back when the table does. Before this, a --target.pid
// that did not exist answered 200 ok and reported 0 problems.
func TestUnreadableTableIsUnhealthy(t *testing.T) {
	host, write := fakeProcfs(t, healthyTable)
	if err := os.Remove(host.Procfs + "/self/mountinfo"); err != nil {
		t.Fatal(err)
	}
	n := &notes{}
	d, _ := start(t, Config{Host: host, Checks: []check.Check{check.DeletedRootCheck{}}, Interval: 5 * time.Millisecond,
		Notify: n.notify, Watchdog: 40 * time.Millisecond})
	testenv.WaitUntil(t, 10*time.Second, "5 failed reads", func() bool { return d.State().TableReadErrors >= 5 })
	if ok, why := d.Healthy(time.Now()); ok || !strings.Contains(why, "mount table cannot be read") || !strings.Contains(why, "mountinfo") {
		t.Errorf("healthy=%v %q, want unhealthy naming the table", ok, why)
	}
	if d.State().TableReadOK {
		t.Error("state says the table read succeeded")
	}
	time.Sleep(200 * time.Millisecond) // several pet periods: a behaviour window, not a timing assertion
	if strings.Contains(n.all(), "WATCHDOG=1") {
		t.Errorf("petted the watchdog while the table cannot be read:\n%s", n.all())
	}
	write(healthyTable)
	testenv.WaitUntil(t, 10*time.Second, "a successful read", func() bool { return d.State().TableReadOK })
	if ok, why := d.Healthy(time.Now()); !ok {
		t.Errorf("unhealthy after the table came back: %s", why)
	}
	testenv.WaitUntil(t, 10*time.Second, "the watchdog petted again", func() bool { return strings.Contains(n.all(), "WATCHDOG=1") })

	// Before the first read succeeded: healthy during the grace period,
	// not after it, even though no read has failed (one still running).
	d = New(Config{Host: host, Checks: []check.Check{check.DeletedRootCheck{}}, Interval: time.Hour, StartGrace: 10 * time.Second})
	if ok, why := d.Healthy(time.Now()); !ok {
		t.Errorf("unhealthy at start: %s", why)
	}
	if ok, why := d.Healthy(time.Now().Add(20 * time.Second)); ok || !strings.Contains(why, "no read of the mount table has succeeded") {
		t.Errorf("20s after start without a read: healthy=%v %q", ok, why)
	}
}

// A check that cannot run (no CAP_SYS_PTRACE for the node's root) or cannot
// see what it needs (no CAP_SYS_ADMIN) has check_success 0 and its reason
// logged once, not on every probe run; and once when it runs again.
func TestCheckErrorAndSkipLoggedOnce(t *testing.T) {
	host, _ := fakeProcfs(t, healthyTable)
	core, logs := observer.New(zapcore.DebugLevel)
	failing := &fakeCheck{id: check.StaleMount, kind: finding.ProbeCheck,
		err: fmt.Errorf("%w: open /proc/1/root: permission denied; needs CAP_SYS_PTRACE", mounts.ErrNamespaceUnreachable)}
	skipping := &fakeCheck{id: check.StrayOverlayXattr, kind: finding.ScanCheck, err: check.ErrNoTrustedXattrs}
	d, _ := start(t, Config{Host: host, Checks: []check.Check{failing, skipping}, Interval: time.Hour,
		ProbeInterval: 5 * time.Millisecond, ScanInterval: 5 * time.Millisecond, Log: zap.New(core)})
	testenv.WaitUntil(t, 10*time.Second, "10 runs of each", func() bool { return failing.Runs() >= 10 && skipping.Runs() >= 10 })
	if n := logs.FilterMessage("check failed").Len(); n != 1 {
		t.Errorf("check error logged %d times, want once", n)
	}
	if n := logs.FilterMessageSnippet("check skipped").Len(); n != 1 {
		t.Errorf("skip logged %d times, want once", n)
	}
	for _, c := range d.State().Checks {
		if c.Status == finding.StatusOK || c.Status == finding.StatusProblems {
			t.Errorf("%s: status %q, want error or skipped (check_success 0)", c.ID, c.Status)
		}
	}
	failing.setErr(nil)
	testenv.WaitUntil(t, 10*time.Second, "the check to run again", func() bool { return logs.FilterMessage("check runs again").Len() == 1 })
}
