package check

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe"
	"github.com/mountwatchd/mountwatchd/internal/tasks"
	"github.com/mountwatchd/mountwatchd/internal/walk"
)

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
	// Probe is the state of the prober after the run's probe round; nil
	// when the run made none.
	Probe *probe.Stats
	// Scan is the progress of the tree scans; nil when no scan ran.
	Scan *walk.Stats
	// Table is the mount table's size and growth (mount_leak); nil when
	// that check did not run.
	Table *TableStats
	// Tasks is the scan of the node's tasks stuck on FUSE and network
	// filesystems that the probing checks used (Outcome.Tasks); nil when
	// none ran.
	Tasks *tasks.Report
	// Remediation is what the opt-in remediation (package remedy) decided
	// after this run: one entry per decision; nil when it is off or
	// decided nothing.
	Remediation []Remediation
}

// Remediation is one decision of the opt-in remediation (package remedy)
// about one hung FUSE connection.
type Remediation struct {
	Action     string    `json:"action"` // "abort"
	Mode       string    `json:"mode"`   // "dry-run" or "on"
	Result     string    `json:"result"` // aborted, would_abort, held_back, refused, cannot_act, failed
	Connection string    `json:"connection"`
	FSType     string    `json:"fstype"`
	MountPoint string    `json:"mountpoint"`
	HungSince  time.Time `json:"hung_since"`
	At         time.Time `json:"at"`
	Reason     string    `json:"reason"`
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
