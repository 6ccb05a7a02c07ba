package export

import (
	"encoding/json"
	"io"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/layout"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe"
	"github.com/mountwatchd/mountwatchd/internal/tasks"
	"github.com/mountwatchd/mountwatchd/internal/walk"
)

// SchemaVersion is the version of the JSON document. It changes only when a
// field is removed or changes meaning; new fields may appear in any version.
const SchemaVersion = 1

// Document is the JSON report of --once --output json. docs/operations.md documents
// every field.
type Document struct {
	SchemaVersion int            `json:"schema_version"`
	Status        finding.Status `json:"status"`
	Summary       string         `json:"summary"`
	Node          string         `json:"node"`
	Time          time.Time      `json:"time"`
	MountTable    *MountTable    `json:"mount_table,omitempty"`
	// Layout is where kubelet and containerd keep their state, and what
	// said so.
	Layout      *layout.Layout      `json:"layout,omitempty"`
	Findings    []finding.Finding   `json:"findings"`
	Checks      []finding.Result    `json:"checks"`
	ParseErrors []mounts.ParseError `json:"parse_errors"`
	// ParseErrorsTotal counts every unparsable line; parse_errors lists
	// the first mounts.MaxParseErrorsListed.
	ParseErrorsTotal int          `json:"parse_errors_total"`
	Probe            *probe.Stats `json:"probe,omitempty"`
	Scan             *walk.Stats  `json:"scan,omitempty"`
	// Tasks is the scan of the node's tasks stuck on FUSE and network
	// filesystems.
	Tasks *tasks.Report `json:"stuck_tasks,omitempty"`
	// Remediation is what the opt-in remediation decided in this run
	// (--remediation.mode).
	Remediation []finding.Remediation `json:"remediation,omitempty"`
	Error       string                `json:"error,omitempty"`
}

// MountTable says which table was checked.
type MountTable struct {
	Source string `json:"source"`
	Live   bool   `json:"live"`
	PID    int    `json:"pid,omitempty"`
	Mounts int    `json:"mounts"`
	// MountMax is the inspected host's fs.mount-max (mount_leak compares
	// the table with it); absent when not known.
	MountMax int `json:"mount_max,omitempty"`
}

// NewDocument builds the JSON document of a report.
func NewDocument(r *finding.Report) *Document {
	s := r.Snapshot
	d := &Document{
		SchemaVersion:    SchemaVersion,
		Status:           r.Status(),
		Summary:          Summary(r),
		Node:             hostname(),
		Time:             s.Taken.UTC(),
		MountTable:       &MountTable{Source: s.Path, Live: s.Live, Mounts: len(s.Mounts)},
		Layout:           &s.Layout,
		Findings:         orEmpty(r.Findings),
		Checks:           orEmpty(r.Checks),
		ParseErrors:      orEmpty(s.ParseErrors),
		ParseErrorsTotal: s.ParseErrorTotal(),
		Probe:            r.Probe,
		Scan:             r.Scan,
		Tasks:            r.Tasks,
		Remediation:      r.Remediation,
	}
	if s.Live {
		d.MountTable.PID = s.Host.PID
	}
	if r.Table != nil {
		d.MountTable.MountMax = r.Table.MountMax
	}
	return d
}

// ErrorDocument is the JSON document when the node could not be checked.
func ErrorDocument(err error, now time.Time) *Document {
	return &Document{
		SchemaVersion: SchemaVersion,
		Status:        finding.StatusError,
		Summary:       ErrorSummary(err),
		Node:          hostname(),
		Time:          now.UTC(),
		Findings:      []finding.Finding{},
		Checks:        []finding.Result{},
		ParseErrors:   []mounts.ParseError{},
		Error:         err.Error(),
	}
}

// WriteJSON writes d, indented, with a trailing newline.
func WriteJSON(w io.Writer, d *Document) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(d)
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}

func hostname() string {
	if n := os.Getenv("NODE_NAME"); n != "" { // set from the downward API in the DaemonSet
		return n
	}
	h, _ := os.Hostname()
	return h
}
