package check

import (
	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

// newFinding fills the mount fields of a finding from m.
func newFinding(check finding.ID, sev finding.Severity, m *mounts.Mount, msg string) finding.Finding {
	f := finding.Finding{
		Check: check, Severity: sev, Message: msg,
		MountID: m.ID, MountPoint: m.Mountpoint, FSType: m.FSType, Source: m.Source,
		Root: m.Root, Dev: m.Dev(),
	}
	if m.Kube != nil {
		f.Kube = *m.Kube
	}
	return f
}
