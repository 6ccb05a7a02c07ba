package check

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe"
	"github.com/mountwatchd/mountwatchd/internal/tasks"
	"github.com/mountwatchd/mountwatchd/internal/walk"
	"golang.org/x/sys/unix"
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
	// Cause is a few words of why a live check was skipped, for the
	// summary line ("no CAP_SYS_ADMIN").
	Cause string `json:"cause,omitempty"`
}

// MarshalJSON writes Duration as duration_seconds.
func (c Result) MarshalJSON() ([]byte, error) {
	type plain Result
	return json.Marshal(struct {
		plain
		Seconds float64 `json:"duration_seconds"`
	}{plain(c), c.Duration.Seconds()})
}

// ErrNoTrustedXattrs is reported by the scanning checks when this process
// lacks CAP_SYS_ADMIN: the kernel then hides trusted.* xattrs without an
// error, so a scan for trusted.overlay.* would see nothing and look healthy.
// It is a SkipError: with nothing else wrong and nothing found, the check is
// reported as skipped for this reason, not as failed.
var ErrNoTrustedXattrs error = &SkipError{Cause: "no CAP_SYS_ADMIN",
	Reason: "trusted.overlay.* xattrs are invisible without CAP_SYS_ADMIN; only user.overlay.* were checked"}

// SkipError is returned by a check that could not see what it needs for a
// reason of how it runs, not of the system (no CAP_SYS_ADMIN: trusted.*
// xattrs are invisible). When it is the check's only error and nothing was
// found, the Runner reports the check as skipped with the reason, and the
// report's status follows the checks that ran.
type SkipError struct {
	Reason string // the whole reason, for the report
	Cause  string // a few words, for the summary line ("no CAP_SYS_ADMIN")
}

func (e *SkipError) Error() string { return e.Reason }

// skipReason returns the reason when err is only SkipErrors (one, or
// several joined).
func skipReason(err error) (reason, cause string, ok bool) {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var reasons, causes []string
	for _, e := range errs {
		var se *SkipError
		if !errors.As(e, &se) {
			return "", "", false
		}
		if !slices.Contains(reasons, se.Reason) {
			reasons = append(reasons, se.Reason)
		}
		if se.Cause != "" && !slices.Contains(causes, se.Cause) {
			causes = append(causes, se.Cause)
		}
	}
	return strings.Join(reasons, "; "), strings.Join(causes, ", "), len(reasons) > 0
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
	// Tasks is the scan of the node's tasks stuck on FUSE and network
	// filesystems that the probing checks used; nil when none ran.
	Tasks *tasks.Report
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

// Noter is implemented by checks that can succeed while leaving part of
// the system out for a reason that is not an error: an overlay whose layers
// the inspected namespace cannot reach (the node is itself a container).
// Notes is what the last Run left out; the Runner puts it in
// Result.Reason.
type Noter interface {
	Notes() []string
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
	var (
		rootErr    error
		rootTested bool
	)
	for _, c := range r.Checks {
		res := Result{Check: c.ID()}
		if c.Kind() != TableCheck && !s.Live {
			res.Status = StatusSkipped
			res.Reason = "needs the live system; the mount table is a captured file"
			rep.Checks = append(rep.Checks, res)
			continue
		}
		if c.Kind() != TableCheck {
			// Every probing and scanning check starts at the inspected
			// namespace's root. When it cannot be opened (no
			// CAP_SYS_PTRACE for another process's root, the process
			// exited) each is an error naming why, with no findings: an
			// errno of ours must never read as a broken mount.
			if !rootTested {
				rootTested = true
				if fd, err := s.Host.OpenRoot(); err != nil {
					rootErr = err
				} else {
					unix.Close(fd)
				}
			}
			if rootErr != nil {
				res.Status, res.Error = StatusError, rootErr.Error()
				rep.Checks = append(rep.Checks, res)
				continue
			}
		}
		start := time.Now()
		found, err := runCheck(ctx, c, s)
		res.Duration = time.Since(start)
		res.Findings = len(found)
		reason, cause, skipped := "", "", false
		if err != nil {
			reason, cause, skipped = skipReason(err)
		}
		switch {
		case skipped && len(found) == 0:
			res.Status, res.Reason, res.Cause = StatusSkipped, reason, cause
		case skipped: // found something with what it could see
			res.Status, res.Reason = StatusProblems, reason
		case err != nil:
			res.Status, res.Error = StatusError, err.Error()
		case len(found) > 0:
			res.Status = StatusProblems
		default:
			res.Status = StatusOK
		}
		if n, ok := c.(Noter); ok {
			if notes := n.Notes(); len(notes) > 0 {
				if res.Reason != "" { // a skip reason stays first
					notes = append([]string{res.Reason}, notes...)
				}
				res.Reason = strings.Join(notes, "; ")
			}
		}
		rep.Checks = append(rep.Checks, res)
		rep.Findings = append(rep.Findings, found...)
		if ss, ok := c.(ScanStatser); ok {
			if rep.Scan == nil {
				rep.Scan = &walk.Stats{Complete: true}
			}
			rep.Scan.Add(ss.Stats())
		}
		if tr, ok := c.(TaskReporter); ok && rep.Tasks == nil {
			rep.Tasks = tr.TaskReport()
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
