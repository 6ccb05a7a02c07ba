package daemon

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/check"
	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe"
)

// schedule is how the daemon runs one kind of check.
type schedule struct {
	kind finding.Kind
	// every is the interval of a timed kind, run in a goroutine of its own
	// over the latest table, at most one run at a time; nil: run on every
	// read of the table, in the loop.
	every func(Config) time.Duration
}

// schedules are every kind's schedule, in the order lanes are started and
// merged: the one place the daemon tells the kinds apart.
var schedules = []schedule{
	{kind: finding.TableCheck},
	{kind: finding.ProbeCheck, every: func(c Config) time.Duration { return c.ProbeInterval }},
	{kind: finding.ScanCheck, every: func(c Config) time.Duration { return c.ScanInterval }},
}

// lane is one kind of check with its schedule.
type lane struct {
	kind     finding.Kind
	checks   []check.Check
	interval time.Duration // 0 for a kind run on every read
	running  atomic.Int64  // unix nanoseconds the current run started; 0 when idle

	// owned by the loop
	due     time.Time       // the next tick of a timed lane
	last    *finding.Report // the last run's report
	lastSeq uint64          // number of the table last checked
	lastEnd time.Time
}

type laneResult struct {
	lane *lane
	rep  *finding.Report
	seq  uint64 // number of the table the run checked
	end  time.Time
}

// newLanes makes a lane of each schedule that has checks.
func newLanes(cfg Config) []*lane {
	var lanes []*lane
	for _, s := range schedules {
		l := &lane{kind: s.kind}
		if s.every != nil {
			l.interval = s.every(cfg)
		}
		for _, c := range cfg.Checks {
			if c.Decl().Kind == s.kind {
				l.checks = append(l.checks, c)
			}
		}
		if len(l.checks) > 0 {
			lanes = append(lanes, l)
		}
	}
	return lanes
}

// run runs the lane's checks over snap.
func (l *lane) run(ctx context.Context, snap *mounts.Snapshot, prober *probe.Prober) *finding.Report {
	return (&check.Runner{Checks: l.checks, Prober: prober}).Run(ctx, snap)
}

// overdue says why the lane is unhealthy: a run going for more than twice
// its interval (plus a minute); "" when it is not.
func (l *lane) overdue(now time.Time) string {
	if start := l.running.Load(); start != 0 {
		if age := now.Sub(time.Unix(0, start)); age > 2*l.interval+time.Minute {
			return "a " + l.kind.String() + " run has been going for " + age.Round(time.Second).String()
		}
	}
	return ""
}

// lanesComplete reports whether every lane has a result, and when the
// oldest of those ended.
func lanesComplete(lanes []*lane) (bool, time.Time) {
	var oldest time.Time
	for _, l := range lanes {
		if l.last == nil {
			return false, time.Time{}
		}
		if oldest.IsZero() || l.lastEnd.Before(oldest) {
			oldest = l.lastEnd
		}
	}
	return true, oldest
}

// laneTimer is the loop's one timer for the timed lanes: each lane ticks
// every interval from the start, and ticks missed while the loop was busy
// are dropped, as a time.Ticker's are.
type laneTimer struct {
	t     *time.Timer
	lanes []*lane // the timed ones
}

func newLaneTimer(lanes []*lane, now time.Time) *laneTimer {
	lt := &laneTimer{t: time.NewTimer(time.Hour)}
	lt.t.Stop()
	for _, l := range lanes {
		if l.interval > 0 {
			l.due = now.Add(l.interval)
			lt.lanes = append(lt.lanes, l)
		}
	}
	lt.reset(now)
	return lt
}

// C fires when a lane is due.
func (lt *laneTimer) C() <-chan time.Time { return lt.t.C }

// due returns the lanes due at now and sets the timer for the next tick.
func (lt *laneTimer) due(now time.Time) []*lane {
	var out []*lane
	for _, l := range lt.lanes {
		if now.Before(l.due) {
			continue
		}
		out = append(out, l)
		for !l.due.After(now) {
			l.due = l.due.Add(l.interval)
		}
	}
	lt.reset(now)
	return out
}

func (lt *laneTimer) reset(now time.Time) {
	var next time.Time
	for _, l := range lt.lanes {
		if next.IsZero() || l.due.Before(next) {
			next = l.due
		}
	}
	if !next.IsZero() {
		lt.t.Reset(next.Sub(now))
	}
}

func (lt *laneTimer) stop() { lt.t.Stop() }
