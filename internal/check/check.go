package check

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe"
	"github.com/mountwatchd/mountwatchd/internal/walk"
)

// Kind says what a check needs and so how often the daemon runs it.
type Kind int

// Kinds of checks.
const (
	// TableCheck is a pure function of the mount table: cheap, run on every
	// change of the table, and the only kind run on a captured file.
	TableCheck Kind = iota
	// ProbeCheck makes syscalls on mounts (stat, statfs) that can block:
	// run on the probe interval, through a prober that never blocks its
	// caller.
	ProbeCheck
	// ScanCheck walks trees inside mounts under a budget: run on the scan
	// interval, the slowest.
	ScanCheck
)

func (k Kind) String() string {
	switch k {
	case TableCheck:
		return "table"
	case ProbeCheck:
		return "probe"
	case ScanCheck:
		return "scan"
	}
	return "unknown"
}

// Check finds one kind of problem in a snapshot.
type Check interface {
	ID() ID
	// Kind says whether the check needs the live system and how often the
	// daemon runs it. Only TableChecks run on a captured mount table.
	Kind() Kind
	// Run returns the problems found. An error means the check could not
	// finish; the findings returned with it are still reported.
	Run(ctx context.Context, s *mounts.Snapshot) ([]Finding, error)
}

// Status of a check or of a whole report.
type Status string

// Statuses, in the order the exit codes of --once use them.
const (
	StatusOK       Status = "ok"       // checked, no problems
	StatusProblems Status = "problems" // checked, problems found
	StatusError    Status = "error"    // could not check (fully)
	StatusSkipped  Status = "skipped"  // not run, Reason says why
)

// Result is how one check went.
type Result struct {
	Check    ID            `json:"check"`
	Status   Status        `json:"status"`
	Findings int           `json:"findings"`
	Duration time.Duration `json:"-"` // as duration_seconds in JSON
	Error    string        `json:"error,omitempty"`
	Reason   string        `json:"reason,omitempty"`
}

// MarshalJSON writes Duration as duration_seconds.
func (c Result) MarshalJSON() ([]byte, error) {
	type plain Result
	return json.Marshal(struct {
		plain
		Seconds float64 `json:"duration_seconds"`
	}{plain(c), c.Duration.Seconds()})
}

// Report is the outcome of running the checks over one snapshot.
type Report struct {
	Snapshot *mounts.Snapshot
	Findings []Finding
	Checks   []Result
	// Probe is the state of the live prober after the run; nil when no
	// probing check ran.
	Probe *probe.Stats
	// Scan is the progress of the tree scans; nil when no scan ran.
	Scan *walk.Stats
}

// ProbeStatser is implemented by probing checks (StaleMountCheck,
// HungMountCheck): the state of their prober. The Runner puts it in
// Report.Probe.
type ProbeStatser interface {
	ProbeStats() probe.Stats
}

// ScanStatser is implemented by scanning checks (OpaquePropagationCheck,
// StrayOverlayXattrCheck): Stats is their progress since the check value was
// made. The Runner sums it into Report.Scan.
type ScanStatser interface {
	Stats() walk.Stats
}

// Status is StatusProblems when anything was found, StatusError when nothing
// was found but some check or some line of the table could not be checked,
// and StatusOK otherwise.
func (r *Report) Status() Status {
	if len(r.Findings) > 0 {
		return StatusProblems
	}
	if len(r.Snapshot.ParseErrors) > 0 {
		return StatusError
	}
	for _, c := range r.Checks {
		if c.Status == StatusError {
			return StatusError
		}
	}
	return StatusOK
}

// Runner runs checks over snapshots and remembers when each problem was
// first seen.
type Runner struct {
	Checks  []Check
	Tracker *Tracker
}

// Run runs every check over s. A check that fails or panics is reported as
// an error and does not stop the others.
func (r *Runner) Run(ctx context.Context, s *mounts.Snapshot) *Report {
	rep := &Report{Snapshot: s}
	ctx = probe.WithRun(ctx) // this run's probing checks share one round, and only they
	for _, c := range r.Checks {
		res := Result{Check: c.ID()}
		if c.Kind() != TableCheck && !s.Live {
			res.Status = StatusSkipped
			res.Reason = "needs the live system; the mount table is a captured file"
			rep.Checks = append(rep.Checks, res)
			continue
		}
		start := time.Now()
		found, err := runCheck(ctx, c, s)
		res.Duration = time.Since(start)
		res.Findings = len(found)
		switch {
		case err != nil:
			res.Status, res.Error = StatusError, err.Error()
		case len(found) > 0:
			res.Status = StatusProblems
		default:
			res.Status = StatusOK
		}
		rep.Checks = append(rep.Checks, res)
		rep.Findings = append(rep.Findings, found...)
		if ss, ok := c.(ScanStatser); ok {
			if rep.Scan == nil {
				rep.Scan = &walk.Stats{Complete: true}
			}
			rep.Scan.Add(ss.Stats())
		}
		if ps, ok := c.(ProbeStatser); ok && rep.Probe == nil { // the checks share one prober
			st := ps.ProbeStats()
			rep.Probe = &st
		}
	}
	SortFindings(rep.Findings)
	if r.Tracker != nil {
		r.Tracker.Stamp(s.Taken, rep.Findings)
	} else {
		for i := range rep.Findings {
			rep.Findings[i].FirstSeen = s.Taken
		}
	}
	return rep
}

func runCheck(ctx context.Context, c Check, s *mounts.Snapshot) (found []Finding, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("check %s panicked: %v", c.ID(), p)
		}
	}()
	return c.Run(ctx, s)
}

// SortFindings orders findings most severe first, then by check, mount point
// and path, so reports and golden files are stable.
func SortFindings(fs []Finding) {
	slices.SortStableFunc(fs, func(a, b Finding) int {
		return cmp.Or(
			cmp.Compare(b.Severity.Rank(), a.Severity.Rank()),
			cmp.Compare(a.Check, b.Check),
			cmp.Compare(a.MountPoint, b.MountPoint),
			cmp.Compare(a.Path, b.Path),
			cmp.Compare(a.MountID, b.MountID),
		)
	})
}
