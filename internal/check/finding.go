package check

import (
	"strconv"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

// ID is the stable, documented name of a check. IDs appear in JSON
// reports, metric labels and journal fields; never rename one. Each is
// declared in its check's file.
type ID string

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

// newFinding fills the mount fields of a finding from m.
func newFinding(check ID, sev Severity, m *mounts.Mount, msg string) Finding {
	f := Finding{
		Check: check, Severity: sev, Message: msg,
		MountID: m.ID, MountPoint: m.Mountpoint, FSType: m.FSType, Source: m.Source,
		Root: m.Root, Dev: m.Dev(),
	}
	if m.Kube != nil {
		f.Kube = *m.Kube
	}
	return f
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
