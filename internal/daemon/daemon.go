// Package daemon is mountwatchd's long-running loop: it re-reads the mount
// table when the kernel says it changed (and at least every Interval), runs
// each kind of check on its own schedule, merges the latest results into one
// current report, and publishes it: an immutable export.State for metrics and
// health, a journal entry when a problem appears, changes severity or
// clears, and sd_notify READY, STATUS and WATCHDOG.
//
// The loop's jobs live in their own files: reading the table with a
// deadline (read.go), the schedule of each kind of check (schedule.go), the
// state the loop keeps and merges (store.go), and the publishing of that
// state (publish.go). Registering a check is all it takes to have it
// scheduled by its Kind, merged, exported and logged.
//
// Nothing here waits on a mount: reading the table does not touch the
// mounts, and a probe or scan run that takes long delays only its own kind.
//
// It is not the checks (package check) nor the exporters (package export),
// and --once does not use it: cmd/mountwatchd runs check.Runner once for
// that. The HTTP server, logger and sd_notify socket are wired in
// cmd/mountwatchd and reach it through Config.
package daemon

import (
	"context"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/mountwatchd/mountwatchd/internal/check"
	"github.com/mountwatchd/mountwatchd/internal/export"
	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/layout"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe"
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
	// Prober makes the probe rounds of the checks that need them
	// (check.Runner.Prober); nil when none does.
	Prober *probe.Prober
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
	// Publish, if set, is handed every State the daemon publishes (the
	// first by New), in order, right after it becomes the one State
	// returns: export.Exposition.Publish, which serves /metrics from it.
	// It must not block.
	Publish func(*export.State)
	// AfterProbe, if set, is handed each probe run's report, in the run's
	// goroutine, before the loop merges it: the opt-in remediation
	// (remedy.Remedy.Run), which may add to it. Its ctx ends when the
	// daemon stops, not with the run (whose round may have used up the
	// probe interval); it must return within a probe timeout or so.
	AfterProbe func(ctx context.Context, rep *finding.Report)
}

func (cfg Config) withDefaults() Config {
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
	return cfg
}

// Daemon runs the loop. Its State and Healthy methods are safe to call from
// any goroutine at any time and never wait for the loop; everything else is
// owned by the loop.
type Daemon struct {
	cfg   Config
	lanes []*lane // by kind, only kinds with checks

	// read from any goroutine
	state  atomic.Pointer[export.State]
	health health

	// owned by the loop
	table *tableReader
	store store
	pub   publisher
}

// New returns a daemon; Run starts it.
func New(cfg Config) *Daemon {
	cfg = cfg.withDefaults()
	if cfg.Host.Processes == nil { // what the node's processes said, for this daemon's life
		cfg.Host.Processes = layout.NewProcessCache()
	}
	d := &Daemon{cfg: cfg, lanes: newLanes(cfg)}
	d.table = newTableReader(cfg.Host, cfg.ReadTimeout, cfg.MinReread)
	d.health.start(cfg)
	d.pub = newPublisher(cfg)
	d.setState(&export.State{Checks: d.pub.checkStates()})
	d.health.beat()
	return d
}

// Healthy reports whether the daemon is doing its job: the loop iterated
// within three heartbeats, the latest read of the mount table succeeded (and
// one has succeeded within StartGrace of the start), and no probe or scan
// run has been going for more than twice its interval (plus a minute). It
// says why not. A daemon that cannot read the table it watches reports 0
// problems because it sees no mounts, not because they are healthy.
func (d *Daemon) Healthy(now time.Time) (bool, string) {
	if ok, why := d.health.check(now); !ok {
		return false, why
	}
	for _, l := range d.lanes {
		if why := l.overdue(now); why != "" {
			return false, why
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
	ticks := newLaneTimer(d.lanes, time.Now())
	defer ticks.stop()
	hb := time.NewTicker(d.health.heartbeat)
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
			if l.interval > 0 && l.last == nil {
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
			d.table.events++
			readTimer.Reset(d.table.rereadDelay(time.Now()))
		case <-tw.ended:
			tw.lost()
		case <-readTimer.C:
			read()
		case now := <-ticks.C():
			for _, l := range ticks.due(now) {
				d.startLane(ctx, l, results)
			}
		case r := <-results:
			d.laneDone(r)
			d.publish()
		case <-hb.C:
		}
		d.health.beat()
	}
}

// readTable reads the mount table, runs the table checks over it and
// publishes the merged report.
func (d *Daemon) readTable(ctx context.Context) error {
	snap, err := d.table.readSnapshot(ctx, d.cfg.Log)
	d.health.tableRead(err)
	if err != nil {
		d.publish()
		return err
	}
	d.table.r.LogParseErrors(snap, d.cfg.Log)
	d.table.logLayout(snap, d.cfg.Log)
	d.store.setSnapshot(snap)
	for _, l := range d.lanes {
		if l.interval == 0 {
			rep := l.run(ctx, snap, d.cfg.Prober)
			d.laneDone(laneResult{lane: l, rep: rep, seq: d.store.seq, end: time.Now()})
		}
	}
	d.publish()
	return nil
}

// startLane runs a timed lane over the latest table in a goroutine of its
// own, unless one is still running.
func (d *Daemon) startLane(ctx context.Context, l *lane, results chan<- laneResult) {
	if d.store.snap == nil || !l.running.CompareAndSwap(0, time.Now().UnixNano()) {
		return
	}
	snap, seq, prober := d.store.snap, d.store.seq, d.cfg.Prober
	go func() {
		rctx, cancel := context.WithTimeout(ctx, l.interval)
		defer cancel()
		rep := l.run(rctx, snap, prober)
		if l.kind == finding.ProbeCheck && d.cfg.AfterProbe != nil {
			d.cfg.AfterProbe(ctx, rep) // not the run's deadline, which the round may have used up
		}
		select {
		case results <- laneResult{lane: l, rep: rep, seq: seq, end: time.Now()}:
		case <-ctx.Done():
		}
	}()
}

// laneDone records a finished run of a lane. The lane keeps the run's
// results, not the table it ran over: merge takes the current table from
// the store, and a scan lane's report (every 15 minutes) would otherwise
// keep a table read since then alive, its whole parse, beside the current
// one.
func (d *Daemon) laneDone(r laneResult) {
	r.lane.running.Store(0)
	r.rep.Snapshot = nil
	r.lane.last, r.lane.lastSeq, r.lane.lastEnd = r.rep, r.seq, r.end
	d.pub.recordRun(r.rep, r.end)
}

// setState publishes st: the one place a State is published.
func (d *Daemon) setState(st *export.State) {
	d.state.Store(st)
	if d.cfg.Publish != nil {
		d.cfg.Publish(st)
	}
}

// publish merges, stamps, logs the changes and stores a new State.
func (d *Daemon) publish() {
	prev := d.state.Load()
	st := &export.State{Report: prev.Report, TableReads: d.table.reads, TableReadErrors: d.table.readErrs,
		TableEvents: d.table.events, TableReadOK: d.health.tableOK.Load()}
	if d.store.snap != nil {
		st.Report = d.store.merge(d.lanes, d.cfg.Checks)
		d.pub.stamp(st.Report)
	}
	complete, oldest := lanesComplete(d.lanes)
	if complete && len(d.lanes) > 0 {
		st.LastComplete = oldest
	}
	st.Checks = d.pub.checkStates()
	d.setState(st)
	d.pub.notify(st, complete || len(d.lanes) == 0, complete, d.table.readErr.last)
}
