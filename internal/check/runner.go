package check

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe"
	"github.com/mountwatchd/mountwatchd/internal/walk"
)

// Runner runs checks over snapshots so that one failing or panicking check
// never stops the others: one after another, or all at once (Concurrent).
// It gives each check the Env its Decl.Needs asks for: the inspected root,
// opened once per run, and the run's probe round, made once per run by
// Prober.
type Runner struct {
	Checks []Check
	// Prober makes the probe round of a run with NeedsProbes checks and
	// has the latest results for UsesProbes checks; nil when no check
	// needs one.
	Prober *probe.Prober
	// Concurrent runs every check of a run in its own goroutine, for
	// --once: a run then takes about as long as its longest check, or its
	// checks' CPU time spread over the cores, not the sum of their times
	// (most of a check's time is system calls, and a probe round waits on
	// a helper process). The report is the same, in the same order. The
	// daemon runs its checks one after another: its runs are spread over
	// minutes and it should take one core at most.
	Concurrent bool
}

// Run runs every check over s and returns the report. Findings have no
// FirstSeen: a Tracker stamps them (the daemon's, across runs; --once's,
// with the snapshot's time).
func (r *Runner) Run(ctx context.Context, s *mounts.Snapshot) *finding.Report {
	rep := &finding.Report{Snapshot: s}
	x := &run{Runner: r, s: s}
	defer x.close()
	results := make([]finding.Result, len(r.Checks))
	outcomes := make([]Outcome, len(r.Checks))
	if r.Concurrent {
		var wg sync.WaitGroup
		for i, c := range r.Checks {
			wg.Go(func() { results[i], outcomes[i] = x.execute(ctx, c) })
		}
		wg.Wait()
	} else {
		for i, c := range r.Checks {
			results[i], outcomes[i] = x.execute(ctx, c)
		}
	}
	for i, res := range results {
		out := outcomes[i]
		rep.Checks = append(rep.Checks, res)
		rep.Findings = append(rep.Findings, out.Findings...)
		if out.Scan != nil {
			if rep.Scan == nil {
				rep.Scan = &walk.Stats{Complete: true}
			}
			rep.Scan.Add(*out.Scan)
		}
		if out.Table != nil {
			rep.Table = out.Table
		}
		if out.Tasks != nil { // the probing checks of a run share one scan
			rep.Tasks = out.Tasks
		}
	}
	rep.Probe = x.probeStats
	SortFindings(rep.Findings)
	return rep
}

// run is one Runner.Run: the root and the probe round its checks share,
// each made by the first check that asks for it (mu: checks may run at
// once).
type run struct {
	*Runner
	s *mounts.Snapshot

	rootOnce   sync.Once
	root       *mounts.Root
	rootErr    error
	mu         sync.Mutex // guards round and probeStats
	round      *probe.Round
	probeStats *probe.Stats
}

const needsLiveSystem = NeedsLive | NeedsRoot | NeedsProbes

// execute runs one check with the Env it needs and judges its Outcome.
func (x *run) execute(ctx context.Context, c Check) (finding.Result, Outcome) {
	d := c.Decl()
	res := finding.Result{Check: d.ID}
	if d.Needs&needsLiveSystem != 0 && !x.s.Live {
		res.Status, res.Reason = finding.StatusSkipped, "needs the live system; the mount table is a captured file"
		return res, Outcome{}
	}
	env := &Env{Snapshot: x.s}
	if d.Needs&(NeedsRoot|UsesRoot) != 0 && x.s.Live {
		root, err := x.openRoot()
		if err != nil && d.Needs&NeedsRoot != 0 {
			res.Status, res.Error = finding.StatusError, err.Error()
			return res, Outcome{Err: err}
		}
		env.Root = root
	}
	start := time.Now()
	var out Outcome
	env.Probes, out.Err = x.probes(ctx, d.Needs)
	if out.Err == nil {
		out = runCheck(ctx, c, env)
	}
	res.Duration = time.Since(start)
	res.Findings = len(out.Findings)
	judge(&res, out)
	return res, out
}

// openRoot opens the inspected root once per run.
func (x *run) openRoot() (*mounts.Root, error) {
	x.rootOnce.Do(func() { x.root, x.rootErr = x.s.Host.OpenRoot() })
	return x.root, x.rootErr
}

// probes is Env.Probes for a check with these needs. The round is made
// once, by the first check of the run that needs it or uses it while a
// check of the run needs it; a check that only uses probe results gets the
// prober's latest otherwise.
func (x *run) probes(ctx context.Context, needs Needs) (*probe.Round, error) {
	switch {
	case needs&NeedsProbes != 0 && x.Prober == nil:
		return nil, errors.New("no prober to probe with")
	case needs&NeedsProbes != 0:
		return x.makeRound(ctx), nil
	case needs&UsesProbes == 0 || !x.s.Live || x.Prober == nil:
		return nil, nil
	case x.roundComing():
		return x.makeRound(ctx), nil
	}
	return x.Prober.Latest(), nil
}

// makeRound is the run's probe round, made on the first call; concurrent
// callers wait for it.
func (x *run) makeRound(ctx context.Context) *probe.Round {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.round == nil {
		x.round = x.Prober.Round(ctx, x.s)
		st := x.Prober.Stats()
		x.probeStats = &st
	}
	return x.round
}

// roundComing reports whether a check of this run will make a probe round.
func (x *run) roundComing() bool {
	for _, c := range x.Checks {
		if c.Decl().Needs&NeedsProbes != 0 {
			_, err := x.openRoot()
			return err == nil
		}
	}
	return false
}

func (x *run) close() {
	if x.root != nil {
		x.root.Close()
	}
}

func runCheck(ctx context.Context, c Check, env *Env) (out Outcome) {
	defer func() {
		if p := recover(); p != nil {
			out = Outcome{Err: fmt.Errorf("check %s panicked: %v", c.Decl().ID, p)}
		}
	}()
	return c.Run(ctx, env)
}

// judge sets the status, reason and error of res from out.
func judge(res *finding.Result, out Outcome) {
	reason, cause, skipped := "", "", false
	if out.Err != nil {
		reason, cause, skipped = skipReason(out.Err)
	}
	switch {
	case skipped && len(out.Findings) == 0:
		res.Status, res.Reason, res.Cause = finding.StatusSkipped, reason, cause
	case skipped: // found something with what it could see
		res.Status, res.Reason = finding.StatusProblems, reason
	case out.Err != nil:
		res.Status, res.Error = finding.StatusError, out.Err.Error()
	case len(out.Findings) > 0:
		res.Status = finding.StatusProblems
	default:
		res.Status = finding.StatusOK
	}
	if len(out.Notes) > 0 {
		notes := out.Notes
		if res.Reason != "" { // a skip reason stays first
			notes = append([]string{res.Reason}, notes...)
		}
		res.Reason = strings.Join(notes, "; ")
	}
}

// SortFindings orders findings most severe first, then by check, mount point
// and path, so reports and golden files are stable.
func SortFindings(fs []finding.Finding) {
	slices.SortStableFunc(fs, func(a, b finding.Finding) int {
		return cmp.Or(
			cmp.Compare(b.Severity.Rank(), a.Severity.Rank()),
			cmp.Compare(a.Check, b.Check),
			cmp.Compare(a.MountPoint, b.MountPoint),
			cmp.Compare(a.Path, b.Path),
			cmp.Compare(a.MountID, b.MountID),
		)
	})
}
