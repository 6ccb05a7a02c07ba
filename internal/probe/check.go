package probe

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// Check finds one kind of problem in a snapshot.
type Check interface {
	ID() CheckID
	// Live reports whether the check needs the live system (files,
	// syscalls). Live checks are skipped for a captured mount table.
	Live() bool
	// Run returns the problems found. An error means the check could not
	// finish; the findings returned with it are still reported.
	Run(ctx context.Context, s *Snapshot) ([]Finding, error)
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

// CheckResult is how one check went.
type CheckResult struct {
	Check    CheckID       `json:"check"`
	Status   Status        `json:"status"`
	Findings int           `json:"findings"`
	Duration time.Duration `json:"-"` // as duration_seconds in JSON
	Error    string        `json:"error,omitempty"`
	Reason   string        `json:"reason,omitempty"`
}

// MarshalJSON writes Duration as duration_seconds.
func (c CheckResult) MarshalJSON() ([]byte, error) {
	type plain CheckResult
	return json.Marshal(struct {
		plain
		Seconds float64 `json:"duration_seconds"`
	}{plain(c), c.Duration.Seconds()})
}

// Report is the outcome of running the checks over one snapshot.
type Report struct {
	Snapshot *Snapshot
	Findings []Finding
	Checks   []CheckResult
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
func (r *Runner) Run(ctx context.Context, s *Snapshot) *Report {
	rep := &Report{Snapshot: s}
	for _, c := range r.Checks {
		res := CheckResult{Check: c.ID()}
		if c.Live() && !s.Live {
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

func runCheck(ctx context.Context, c Check, s *Snapshot) (found []Finding, err error) {
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
