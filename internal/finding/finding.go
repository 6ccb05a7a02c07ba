// Package finding holds the outcome types of a check run that every
// exporter consumes: Finding (one problem with one mount), its ID and
// Severity, a check's Result and Status, the run's Report, and the Change
// of a problem between runs. It is node-problem-detector's pkg/types for
// mountwatchd: exporters (package export) import it and never the check
// machinery (package check: checks, their declarations, the Runner).
//
// It holds data and the small methods that order or identify it; it runs
// nothing and reads nothing from the system.
package finding

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe"
	"github.com/mountwatchd/mountwatchd/internal/tasks"
	"github.com/mountwatchd/mountwatchd/internal/walk"
)

// ID is the stable, documented name of a check. IDs appear in JSON
// reports, metric labels and journal fields; never rename one. Each is
// declared in its check's file.
type ID string

// MessageIDs maps an ID to the journal MESSAGE_ID of its problem entries.
// The packages that declare IDs fill it from init (check.Register for every
// check, remedy for its held finding) and nothing writes it after; the
// journal exporter reads it.
var MessageIDs = map[ID]string{}

// Severity of a finding.
type Severity string

// Severities, most severe first.
const (
	Critical Severity = "critical"
	Warning  Severity = "warning"
	Info     Severity = "info"
)

// Severities lists every severity, most severe first.
var Severities = []Severity{Critical, Warning, Info}

// Rank orders severities: a higher rank is more severe.
func (s Severity) Rank() int {
	switch s {
	case Critical:
		return 3
	case Warning:
		return 2
	case Info:
		return 1
	}
	return 0
}

// Finding is one problem with one mount (or one file inside a mount). Every
// exporter (text, JSON, metrics, journal) renders the same Finding.
type Finding struct {
	Check    ID       `json:"check"`
	Severity Severity `json:"severity"`
	// Message says what breaks and what to do, in one paragraph.
	Message string `json:"message"`

	MountID    int    `json:"mount_id"`
	MountPoint string `json:"mountpoint"`
	FSType     string `json:"fstype"`
	Source     string `json:"source"`
	Root       string `json:"root"`
	Dev        string `json:"major_minor"`
	// Path is the file inside the mount the finding is about, for checks
	// that look inside mounts; empty otherwise.
	Path string `json:"path,omitempty"`
	// Directory is the directory on the node the finding is about when it
	// is not MountPoint (empty otherwise): the volume directory that is no
	// mount point (unmounted_volume), the pod volume or scan root holding
	// the file (stray_overlay_xattr), the opaque directory as the overlay
	// mount shows it (opaque_propagation). Metric series carry it as their
	// directory label (MountPoint when empty): unlike Path, it is bounded
	// by the node's mounts, volumes, scan roots and image directories.
	Directory string `json:"directory,omitempty"`

	mounts.Kube

	// Details are check-specific facts (errno, waiting requests, layers);
	// the README lists them per check.
	Details map[string]string `json:"details,omitempty"`

	// FirstSeen is when this problem was first seen by this process.
	FirstSeen time.Time `json:"first_seen"`
}

// Key identifies a problem across checks: the same key in two runs is the
// same problem, whose FirstSeen carries over. A finding about no one mount
// (MountID 0: mount_leak's growing source, the table's size) is identified
// by the filesystem, source and root it names.
func (f *Finding) Key() string {
	k := string(f.Check) + "\x00" + strconv.Itoa(f.MountID) + "\x00" + f.MountPoint + "\x00" + f.Path
	if f.MountID == 0 {
		k += "\x00" + f.Dev + "\x00" + f.FSType + "\x00" + f.Source + "\x00" + f.Root
	}
	return k
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

// Kind is a check's schedule in the daemon: how often it runs.
type Kind int

// Kinds of checks.
const (
	// TableCheck runs on every read of the mount table, in the daemon's
	// loop: it must be cheap and never block on a mount. Only table checks
	// that do not need the live system run on a captured table.
	TableCheck Kind = iota
	// ProbeCheck runs every probe interval: it reads the run's probe round
	// (stat, statfs of mounts, made by a prober that never blocks its
	// caller).
	ProbeCheck
	// ScanCheck runs every scan interval, the slowest: it walks trees
	// inside mounts under a budget.
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

// TableStats is the size of the mount table and its growth, for metrics.
type TableStats struct {
	Size int // mounts in the table (lines, parsed or not)
	// MountMax is the inspected host's fs.mount-max; 0 when unknown (a
	// captured table, or unreadable).
	MountMax int
	// Growth is Size less the size of the first table this process read.
	Growth int
	// FirstSize and FirstTaken are that first table's.
	FirstSize  int
	FirstTaken time.Time
}

// Change is how a problem changed between two runs.
type Change struct {
	Finding Finding
	// Event is "appeared", "changed" (severity) or "cleared".
	Event string
	// Was is the previous severity, for "changed".
	Was Severity
}
