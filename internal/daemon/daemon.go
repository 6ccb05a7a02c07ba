// Package daemon is mountwatchd's long-running loop: it re-reads the mount
// table when the kernel says it changed (and at least every Interval), runs
// each kind of check on its own schedule, merges the latest results into one
// current report, logs each problem when it appears, changes severity or
// clears, and publishes an immutable export.State for metrics and health.
//
// Checks are scheduled by check.Check.Kind: TableChecks run in the loop on
// every read of the table; ProbeChecks every ProbeInterval and ScanChecks
// every ScanInterval, each kind in a goroutine of its own over the latest
// table, at most one run of a kind at a time. Registering a check is all it
// takes to have it scheduled, merged, exported and logged.
//
// Nothing here waits on a mount: reading the table does not touch the
// mounts, and a probe or scan run that takes long delays only its own kind.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/mountwatchd/mountwatchd/internal/check"
	"github.com/mountwatchd/mountwatchd/internal/export"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

// Defaults for Config.
const (
	DefaultInterval      = time.Minute
	DefaultProbeInterval = 30 * time.Second
	DefaultScanInterval  = 15 * time.Minute
	// DefaultMinReread coalesces a burst of mount changes (a pod starting
	// makes dozens) into few reads.
	DefaultMinReread   = 100 * time.Millisecond
	DefaultReadTimeout = 5 * time.Second
	maxHeartbeat       = 15 * time.Second
)

// Config configures a Daemon.
type Config struct {
	Host   mounts.Host
	Checks []check.Check
	// Interval is the longest time between two reads of the mount table,
	// whether or not the kernel reported a change.
	Interval      time.Duration
	ProbeInterval time.Duration
	ScanInterval  time.Duration
	// MinReread is the shortest time between two reads after a change.
	MinReread time.Duration
	// ReadTimeout bounds how long the loop waits for one read of the mount
	// table. Reading the table touches no mount, but classifying it reads
	// kubelet's files, which a hung filesystem under the kubelet root could
	// block; the loop then goes on, and no new read starts until the
	// blocked one returns.
	ReadTimeout time.Duration
	// StartGrace is how long Healthy waits for the first successful read of
	// the mount table before it reports unhealthy (default 2*ReadTimeout).
	StartGrace time.Duration
	Log        *zap.Logger
	// Notify sends a systemd notification (READY=1, STATUS=..., WATCHDOG=1);
	// nil sends nothing.
	Notify func(state string) error
	// Watchdog is the systemd watchdog timeout (WATCHDOG_USEC); 0: none.
	// The daemon pets it every Watchdog/2 while the loop makes progress.
	Watchdog time.Duration
}

// Daemon runs the loop. Its State and Healthy methods are safe to call from
// any goroutine at any time and never wait for the loop.
type Daemon struct {
	cfg       Config
	heartbeat time.Duration
	lanes     []*lane // by kind, only kinds with checks

	state      atomic.Pointer[export.State]
	lastBeat   atomic.Int64 // unix nanoseconds of the last loop iteration
	iterations atomic.Uint64
	started    time.Time
	// readErr is the error of the latest read of the mount table, nil when
	// it succeeded; tableOK is set once a read succeeded and cleared by a
	// failed one.
	readErr atomic.Pointer[string]
	tableOK atomic.Bool

	// owned by the loop
	tracker *check.Tracker
	snap    *mounts.Snapshot
	snapSeq uint64 // how many tables have been read successfully, snap's number
	// since is, for each mount of snap, the number of the first table of
	// the unbroken run of tables it is in. The kernel reuses mount ids, so
	// a mount unmounted and made again at the same place has the same id
	// and mount point: only this tells a probe result about the old mount
	// from one about the new.
	since      map[mountKey]uint64
	stats      map[check.ID]*export.CheckState
	reads      uint64
	readErrs   uint64
	events     uint64
	lastErr    string
	lastParse  string
	checkMsg   map[check.ID]string // the last error or skip reason logged per check
	ready      bool
	lastStatus string
	lastRead   time.Time       // start of the last read of the table
	readCost   time.Duration   // how long it took
	blocked    chan readResult // a read that outlived ReadTimeout, until it returns
	read       func(mounts.Host) (*mounts.Snapshot, error)
}

type readResult struct {
	snap *mounts.Snapshot
	err  error
}

// errReadBlocked is returned while an earlier read of the table is still
// blocked: at most one read is ever in flight.
var errReadBlocked = errors.New("an earlier read of the mount table is still blocked")

// lane is one kind of check with its schedule.
type lane struct {
	kind     check.Kind
	checks   []check.Check
	interval time.Duration // 0 for table checks: every read
	running  atomic.Int64  // unix nanoseconds the current run started; 0 when idle
	last     *check.Report // owned by the loop
	lastSeq  uint64        // number of the table last checked
	lastEnd  time.Time
}

type laneResult struct {
	lane *lane
	rep  *check.Report
	seq  uint64 // number of the table the run checked
	end  time.Time
}

// New returns a daemon; Run starts it.
func New(cfg Config) *Daemon {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = DefaultProbeInterval
	}
	if cfg.ScanInterval <= 0 {
		cfg.ScanInterval = DefaultScanInterval
	}
	if cfg.MinReread <= 0 {
		cfg.MinReread = DefaultMinReread
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.StartGrace <= 0 {
		cfg.StartGrace = 2 * cfg.ReadTimeout
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	d := &Daemon{cfg: cfg, tracker: check.NewTracker(), stats: map[check.ID]*export.CheckState{}, read: mounts.ReadSnapshot,
		started: time.Now()}
	// The loop wakes at least this often, so health and the watchdog see
	// it alive; an idle wake-up does nothing else.
	d.heartbeat = min(cfg.Interval, maxHeartbeat)
	if cfg.Watchdog > 0 {
		d.heartbeat = min(d.heartbeat, cfg.Watchdog/4)
	}
	for _, k := range []check.Kind{check.TableCheck, check.ProbeCheck, check.ScanCheck} {
		l := &lane{kind: k}
		switch k {
		case check.ProbeCheck:
			l.interval = cfg.ProbeInterval
		case check.ScanCheck:
			l.interval = cfg.ScanInterval
		}
		for _, c := range cfg.Checks {
			if c.Kind() == k {
				l.checks = append(l.checks, c)
			}
		}
		if len(l.checks) > 0 {
			d.lanes = append(d.lanes, l)
		}
	}
	var states []export.CheckState
	for _, c := range cfg.Checks {
		d.stats[c.ID()] = &export.CheckState{ID: c.ID(), Kind: c.Kind()}
		states = append(states, *d.stats[c.ID()])
	}
	d.state.Store(&export.State{Checks: states})
	d.beat()
	return d
}

// State is the latest published state; never nil.
func (d *Daemon) State() *export.State { return d.state.Load() }

func (d *Daemon) beat() {
	d.lastBeat.Store(time.Now().UnixNano())
	d.iterations.Add(1)
}

// Healthy reports whether the daemon is doing its job: the loop iterated
// within three heartbeats, the latest read of the mount table succeeded (and
// one has succeeded within StartGrace of the start), and no probe or scan
// run has been going for more than twice its interval (plus a minute). It
// says why not. A daemon that cannot read the table it watches reports 0
// problems because it sees no mounts, not because they are healthy.
func (d *Daemon) Healthy(now time.Time) (bool, string) {
	last := time.Unix(0, d.lastBeat.Load())
	if age := now.Sub(last); age > 3*d.heartbeat+time.Second {
		return false, "the loop has not iterated for " + age.Round(time.Millisecond).String()
	}
	if e := d.readErr.Load(); e != nil {
		return false, "the mount table cannot be read: " + *e
	}
	if !d.tableOK.Load() {
		if age := now.Sub(d.started); age > d.cfg.StartGrace {
			return false, "no read of the mount table has succeeded in " + age.Round(time.Second).String() + " since start"
		}
	}
	for _, l := range d.lanes {
		if start := l.running.Load(); start != 0 {
			if age := now.Sub(time.Unix(0, start)); age > 2*l.interval+time.Minute {
				return false, "a " + l.kind.String() + " run has been going for " + age.Round(time.Second).String()
			}
		}
	}
	return true, "ok"
}

// Run runs the loop until ctx is done. It returns nil on a clean stop.
func (d *Daemon) Run(ctx context.Context) error {
	log := d.cfg.Log
	results := make(chan laneResult)
	tw := &tableWatch{path: d.cfg.Host.MountinfoPath(), log: log}
	defer tw.close()

	readTimer := time.NewTimer(d.cfg.Interval)
	defer readTimer.Stop()
	var probeC, scanC <-chan time.Time
	for _, l := range d.lanes {
		if l.kind == check.TableCheck {
			continue
		}
		t := time.NewTicker(l.interval)
		defer t.Stop()
		if l.kind == check.ProbeCheck {
			probeC = t.C
		} else {
			scanC = t.C
		}
	}
	hb := time.NewTicker(d.heartbeat)
	defer hb.Stop()
	if d.cfg.Watchdog > 0 && d.cfg.Notify != nil {
		go d.petWatchdog(ctx)
	}

	read := func() {
		tw.open() // before the read: a change after it is reported
		if err := d.readTable(ctx); err != nil {
			tw.close() // the namespace may be gone; reopen with the next read
		}
		readTimer.Reset(d.cfg.Interval)
		for _, l := range d.lanes {
			if l.kind != check.TableCheck && l.last == nil && l.running.Load() == 0 && d.snap != nil {
				d.startLane(ctx, l, results) // first run as soon as there is a table
			}
		}
	}
	read()
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping")
			return nil
		case <-tw.changed:
			d.events++
			readTimer.Reset(d.rereadDelay(time.Now()))
		case <-tw.ended:
			tw.lost()
		case <-readTimer.C:
			read()
		case <-probeC:
			d.startLane(ctx, d.laneOf(check.ProbeCheck), results)
		case <-scanC:
			d.startLane(ctx, d.laneOf(check.ScanCheck), results)
		case r := <-results:
			r.lane.running.Store(0)
			d.laneDone(r)
			d.publish()
		case <-hb.C:
		}
		d.beat()
	}
}

func (d *Daemon) laneOf(k check.Kind) *lane {
	for _, l := range d.lanes {
		if l.kind == k {
			return l
		}
	}
	return nil
}

// readTable reads the mount table, runs the table checks over it and
// publishes the merged report.
func (d *Daemon) readTable(ctx context.Context) error {
	log := d.cfg.Log
	d.reads++
	d.lastRead = time.Now()
	snap, err := d.readSnapshot(ctx)
	d.readCost = time.Since(d.lastRead)
	if err != nil {
		d.readErrs++
		msg := err.Error()
		d.readErr.Store(&msg)
		d.tableOK.Store(false)
		if msg != d.lastErr {
			log.Error("cannot read the mount table; keeping the last results", zap.Error(err))
			d.lastErr = msg
		}
		d.publish()
		return err
	}
	d.readErr.Store(nil)
	d.tableOK.Store(true)
	if d.lastErr != "" {
		log.Info("mount table readable again", zap.String("table", snap.Path))
		d.lastErr = ""
	}
	d.logParseErrors(snap)
	d.setSnapshot(snap)
	if l := d.laneOf(check.TableCheck); l != nil {
		rep := (&check.Runner{Checks: l.checks}).Run(ctx, snap)
		d.laneDone(laneResult{lane: l, rep: rep, seq: d.snapSeq, end: time.Now()})
	}
	d.publish()
	return nil
}

// rereadDelay is how long to wait before re-reading the table after a change
// event: at least MinReread after the last read started, and long enough that
// re-reading takes at most a tenth of the time, so a storm of mount changes
// (pods starting on a node with 20,000 mounts) costs a bounded share of a
// CPU while each change is still seen within about ten reads' time.
func (d *Daemon) rereadDelay(now time.Time) time.Duration {
	gap := max(d.cfg.MinReread, 10*d.readCost)
	return max(d.lastRead.Add(gap).Sub(now), 0)
}

// readSnapshot reads the table in a goroutine and waits at most
// ReadTimeout for it. A read that takes longer is left to finish on its own
// (its result is dropped: it is stale by then) and no other read starts
// until it has.
func (d *Daemon) readSnapshot(ctx context.Context) (*mounts.Snapshot, error) {
	if d.blocked != nil {
		select {
		case <-d.blocked:
			d.blocked = nil
		default:
			return nil, errReadBlocked
		}
	}
	ch := make(chan readResult, 1)
	host, read := d.cfg.Host, d.read
	go func() {
		s, err := read(host)
		ch <- readResult{s, err}
	}()
	t := time.NewTimer(d.cfg.ReadTimeout)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.snap, r.err
	case <-t.C:
		d.blocked = ch
		return nil, fmt.Errorf("reading the mount table took more than %s (a hung filesystem under the kubelet root or pod log directory?)", d.cfg.ReadTimeout)
	case <-ctx.Done():
		d.blocked = ch
		return nil, ctx.Err()
	}
}

// logParseErrors logs unparsable lines when they differ from the last read's,
// not on every read.
func (d *Daemon) logParseErrors(s *mounts.Snapshot) {
	var key string
	for _, pe := range s.ParseErrors {
		key += pe.Text + "\n"
	}
	if key == d.lastParse {
		return
	}
	d.lastParse = key
	for _, pe := range s.ParseErrors {
		d.cfg.Log.Warn("mount table line not parsed", zap.String("table", s.Path), zap.Int("line", pe.Line), zap.String("error", pe.Err))
	}
	if more := s.ParseErrorTotal() - len(s.ParseErrors); more > 0 {
		d.cfg.Log.Warn("more mount table lines not parsed", zap.String("table", s.Path), zap.Int("more", more))
	}
}

// startLane runs a probe or scan lane over the latest table in a goroutine
// of its own, unless one is still running.
func (d *Daemon) startLane(ctx context.Context, l *lane, results chan<- laneResult) {
	if l == nil || d.snap == nil || !l.running.CompareAndSwap(0, time.Now().UnixNano()) {
		return
	}
	snap, seq := d.snap, d.snapSeq
	go func() {
		rctx, cancel := context.WithTimeout(ctx, l.interval)
		defer cancel()
		rep := (&check.Runner{Checks: l.checks}).Run(rctx, snap)
		select {
		case results <- laneResult{lane: l, rep: rep, seq: seq, end: time.Now()}:
		case <-ctx.Done():
		}
	}()
}

func (d *Daemon) laneDone(r laneResult) {
	r.lane.last, r.lane.lastSeq, r.lane.lastEnd = r.rep, r.seq, r.end
	for _, c := range r.rep.Checks {
		st := d.stats[c.Check]
		if st == nil || (c.Status == check.StatusSkipped && c.Cause == "") {
			continue // skipped for a captured table: not a run
		}
		st.Runs++
		if c.Status == check.StatusError {
			st.Errors++
		}
		d.logCheckState(c)
		st.Duration, st.LastRun, st.Status = c.Duration, r.end, c.Status
	}
}

// logCheckState logs a check that failed or was skipped (check_success 0)
// once per distinct reason, not on every run (a probe run is every 30s),
// and once when it works again.
func (d *Daemon) logCheckState(c check.Result) {
	log := d.cfg.Log.With(zap.String("check", string(c.Check)))
	var msg string
	switch c.Status {
	case check.StatusError:
		msg = "error: " + c.Error
	case check.StatusSkipped:
		msg = "skipped: " + c.Reason
	default:
		if c.Reason != "" { // what a check that ran left out on purpose (check.Noter)
			msg = "note: " + c.Reason
		}
	}
	if d.checkMsg == nil {
		d.checkMsg = map[check.ID]string{}
	}
	prev := d.checkMsg[c.Check]
	if msg == prev {
		return
	}
	d.checkMsg[c.Check] = msg
	switch {
	case c.Status == check.StatusError:
		log.Error("check failed", zap.String("error", c.Error))
	case c.Status == check.StatusSkipped:
		log.Warn("check skipped: it cannot see what it needs", zap.String("reason", c.Reason))
	case c.Reason != "":
		log.Info("check leaves part of the system out", zap.String("reason", c.Reason))
	case strings.HasPrefix(prev, "error: ") || strings.HasPrefix(prev, "skipped: "):
		log.Info("check runs again", zap.String("previously", prev))
	}
}

// setSnapshot makes s the current table and numbers it.
func (d *Daemon) setSnapshot(s *mounts.Snapshot) {
	d.snapSeq++
	since := make(map[mountKey]uint64, len(s.Mounts))
	for _, m := range s.Mounts {
		k := mountKey{m.ID, m.Mountpoint}
		if n, ok := d.since[k]; ok {
			since[k] = n
		} else {
			since[k] = d.snapSeq
		}
	}
	d.snap, d.since = s, since
}

// merge builds the current report: the latest table with the latest findings
// of every kind of check. Findings of probe and scan runs over an older table
// are kept only while their mount has been in every table read since: one
// that went away is no longer broken, and a new mount that reuses its id and
// mount point has not been checked yet.
func (d *Daemon) merge() *check.Report {
	rep := &check.Report{Snapshot: d.snap}
	byID := map[check.ID]check.Result{}
	for _, l := range d.lanes {
		if l.last == nil {
			continue
		}
		for _, c := range l.last.Checks {
			byID[c.Check] = c
		}
		if l.last.Probe != nil {
			p := *l.last.Probe
			rep.Probe = &p
		}
		if l.last.Scan != nil {
			s := *l.last.Scan
			rep.Scan = &s
		}
		if l.last.Tasks != nil {
			rep.Tasks = l.last.Tasks // immutable once made
		}
		for _, f := range l.last.Findings {
			if l.lastSeq != d.snapSeq {
				if n, ok := d.since[mountKey{f.MountID, f.MountPoint}]; !ok || n > l.lastSeq {
					continue // gone, or gone and made again: not the mount that was checked
				}
			}
			rep.Findings = append(rep.Findings, f)
		}
	}
	for _, c := range d.cfg.Checks {
		if r, ok := byID[c.ID()]; ok {
			rep.Checks = append(rep.Checks, r)
		}
	}
	check.SortFindings(rep.Findings)
	return rep
}

type mountKey struct {
	id int
	mp string
}

// publish merges, stamps, logs the changes and stores a new State.
func (d *Daemon) publish() {
	prev := d.state.Load()
	st := &export.State{Report: prev.Report, TableReads: d.reads, TableReadErrors: d.readErrs, TableEvents: d.events,
		TableReadOK: d.tableOK.Load()}
	if d.snap != nil {
		rep := d.merge()
		d.tracker.Stamp(time.Now(), rep.Findings)
		for _, c := range d.tracker.Changes() {
			export.LogChange(d.cfg.Log, c)
		}
		st.Report = rep
	}
	complete := true
	var oldest time.Time
	for _, l := range d.lanes {
		if l.last == nil {
			complete = false
			break
		}
		if oldest.IsZero() || l.lastEnd.Before(oldest) {
			oldest = l.lastEnd
		}
	}
	if complete && len(d.lanes) > 0 {
		st.LastComplete = oldest
	}
	for _, c := range d.cfg.Checks {
		st.Checks = append(st.Checks, *d.stats[c.ID()])
	}
	d.state.Store(st)
	d.notify(st, complete)
}

// notify sends READY=1 once every check has a result, and STATUS= when the
// summary changes.
func (d *Daemon) notify(st *export.State, complete bool) {
	if d.cfg.Notify == nil {
		return
	}
	var status string
	switch {
	case st.Report != nil && (complete || len(d.lanes) == 0):
		status = export.Summary(st.Report)
		if d.lastErr != "" {
			status = export.Truncate("mount table unreadable, last results: "+status, export.SummaryMax)
		}
	case d.lastErr != "":
		status = export.ErrorSummary(errors.New(d.lastErr))
	default:
		status = "starting: first checks running"
	}
	msg := ""
	if !d.ready && complete {
		d.ready = true
		msg = "READY=1\n"
	}
	if status != d.lastStatus || msg != "" {
		d.lastStatus = status
		if err := d.cfg.Notify(msg + "STATUS=" + status); err != nil {
			d.cfg.Log.Warn("systemd notify failed", zap.Error(err))
		}
	}
}

// petWatchdog sends WATCHDOG=1 every Watchdog/2, but only when the loop
// iterated since the last pet and is healthy: a stuck loop is restarted.
func (d *Daemon) petWatchdog(ctx context.Context) {
	t := time.NewTicker(d.cfg.Watchdog / 2)
	defer t.Stop()
	seen := d.iterations.Load()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			it := d.iterations.Load()
			ok, why := d.Healthy(now)
			if it == seen || !ok {
				d.cfg.Log.Warn("not petting the systemd watchdog: the loop makes no progress", zap.String("reason", why))
				continue
			}
			seen = it
			if err := d.cfg.Notify("WATCHDOG=1"); err != nil {
				d.cfg.Log.Warn("systemd watchdog notify failed", zap.Error(err))
			}
		}
	}
}

// Checks lists the registered checks' ids in catalogue order.
func (d *Daemon) Checks() []check.ID {
	var ids []check.ID
	for _, c := range d.cfg.Checks {
		ids = append(ids, c.ID())
	}
	return slices.Clip(ids)
}
