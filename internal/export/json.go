package export

import (
	"encoding/json"
	"io"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/probe"
)

// SchemaVersion is the version of the JSON document. It changes only when a
// field is removed or changes meaning; new fields may appear in any version.
const SchemaVersion = 1

// Document is the JSON report of --once --output json. README.md documents
// every field.
type Document struct {
	SchemaVersion int                 `json:"schema_version"`
	Status        probe.Status        `json:"status"`
	Summary       string              `json:"summary"`
	Node          string              `json:"node"`
	Time          time.Time           `json:"time"`
	MountTable    *MountTable         `json:"mount_table,omitempty"`
	Findings      []probe.Finding     `json:"findings"`
	Checks        []probe.CheckResult `json:"checks"`
	ParseErrors   []probe.ParseError  `json:"parse_errors"`
	// ParseErrorsTotal counts every unparsable line; parse_errors lists
	// the first probe.MaxParseErrorsListed.
	ParseErrorsTotal int               `json:"parse_errors_total"`
	Probe            *probe.ProbeStats `json:"probe,omitempty"`
	Scan             *probe.ScanStats  `json:"scan,omitempty"`
	Error            string            `json:"error,omitempty"`
}

// MountTable says which table was checked.
type MountTable struct {
	Source string `json:"source"`
	Live   bool   `json:"live"`
	PID    int    `json:"pid,omitempty"`
	Mounts int    `json:"mounts"`
}

// NewDocument builds the JSON document of a report.
func NewDocument(r *probe.Report) *Document {
	s := r.Snapshot
	d := &Document{
		SchemaVersion:    SchemaVersion,
		Status:           r.Status(),
		Summary:          Summary(r),
		Node:             hostname(),
		Time:             s.Taken.UTC(),
		MountTable:       &MountTable{Source: s.Source, Live: s.Live, Mounts: len(s.Mounts)},
		Findings:         orEmpty(r.Findings),
		Checks:           orEmpty(r.Checks),
		ParseErrors:      orEmpty(s.ParseErrors),
		ParseErrorsTotal: s.ParseErrorTotal(),
		Probe:            r.Probe,
		Scan:             r.Scan,
	}
	if s.Live {
		d.MountTable.PID = s.Host.PID
	}
	return d
}

// ErrorDocument is the JSON document when the node could not be checked.
func ErrorDocument(err error, now time.Time) *Document {
	return &Document{
		SchemaVersion: SchemaVersion,
		Status:        probe.StatusError,
		Summary:       ErrorSummary(err),
		Node:          hostname(),
		Time:          now.UTC(),
		Findings:      []probe.Finding{},
		Checks:        []probe.CheckResult{},
		ParseErrors:   []probe.ParseError{},
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
