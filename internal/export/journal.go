package export

import (
	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/layout"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// MessageIDs are the journal MESSAGE_IDs of problem entries, one per
// registered check (check.Decl.MessageID), fixed forever so that
// `journalctl MESSAGE_ID=<id>` finds every appearance, severity change and
// clearing of one kind of problem. docs/journal.md lists them. It is
// finding.MessageIDs, the one map the declaring packages fill from init.
var MessageIDs = finding.MessageIDs

// Journal priorities (syslog levels) of problem entries.
const (
	PriorityCrit    = 2
	PriorityWarning = 4
	PriorityNotice  = 5
	PriorityInfo    = 6
)

// PriorityField is the zap field that sets an entry's journal PRIORITY,
// overriding the one derived from the zap level.
const PriorityField = "priority"

// ChangePriority is the journal priority of a change: the severity's for
// "appeared" and "changed" (critical 2, warning 4, info 6), notice (5) for
// "cleared".
func ChangePriority(c finding.Change) int {
	if c.Event == "cleared" {
		return PriorityNotice
	}
	switch c.Finding.Severity {
	case finding.Critical:
		return PriorityCrit
	case finding.Warning:
		return PriorityWarning
	}
	return PriorityInfo
}

// LogChange logs one change of a problem (appeared, changed, cleared) with
// the structured fields the journal indexes: check, severity, mount_point,
// fstype, source, pod_uid, pod_namespace, pod_name, volume, errno (when the
// check found one), message_id and priority. The journald core upper-cases
// them into journal fields (CHECK, MOUNT_POINT, ...).
func LogChange(log *zap.Logger, c finding.Change) {
	f := &c.Finding
	fields := []zap.Field{
		zap.String("event", c.Event),
		zap.String("check", string(f.Check)),
		zap.String("severity", string(f.Severity)),
		zap.String("mount_point", f.MountPoint),
		zap.String("fstype", f.FSType),
		zap.String("source", f.Source),
		zap.String("root", f.Root),
		zap.String("major_minor", f.Dev),
		zap.Int("mount_id", f.MountID),
	}
	opt := func(k, v string) {
		if v != "" {
			fields = append(fields, zap.String(k, v))
		}
	}
	opt("path", f.Path)
	opt("directory", f.Directory)
	opt("pod_uid", f.PodUID)
	opt("pod_namespace", f.PodNamespace)
	opt("pod_name", f.PodName)
	opt("volume", f.Volume)
	opt("csi_driver", f.CSIDriver)
	opt("volume_handle", f.VolumeHandle)
	opt("errno", f.Details["errno"])
	if c.Event == "changed" {
		fields = append(fields, zap.String("previous_severity", string(c.Was)))
	}
	fields = append(fields, zap.Time("first_seen", f.FirstSeen), zap.String("detail", f.Message))
	if id, ok := MessageIDs[f.Check]; ok {
		fields = append(fields, zap.String("message_id", id))
	}
	fields = append(fields, zap.Int(PriorityField, ChangePriority(c)))

	level := zapcore.InfoLevel
	if c.Event != "cleared" {
		switch f.Severity {
		case finding.Critical:
			level = zapcore.ErrorLevel
		case finding.Warning:
			level = zapcore.WarnLevel
		}
	}
	msg := "mount problem " + c.Event + ": " + string(f.Check) + " " + Printable(f.MountPoint)
	if ce := log.Check(level, msg); ce != nil {
		ce.Write(fields...)
	}
}

// LogLayout logs, in one entry, where kubelet and containerd keep their
// state and what decided each directory (a flag, their command lines or
// config, the mount table, the default), at level (a kubelet root the
// table left ambiguous is a warning whatever level says). The daemon logs
// it at info when it changes; --once at debug, its report says it.
func LogLayout(log *zap.Logger, level zapcore.Level, l layout.Layout) {
	fields := []zap.Field{}
	for _, d := range []struct {
		name string
		dir  layout.Dir
	}{{"kubelet_root", l.Kubelet}, {"containerd_root", l.ContainerdRoot}, {"containerd_snapshots", l.ContainerdSnapshots},
		{"pod_logs", l.PodLogs}} {
		fields = append(fields, zap.String(d.name, d.dir.Path), zap.String(d.name+"_source", string(d.dir.Source)))
		if d.dir.Evidence != "" {
			fields = append(fields, zap.String(d.name+"_evidence", d.dir.Evidence))
		}
	}
	if len(l.KubeletRoots) > 1 {
		fields = append(fields, zap.Strings("kubelet_roots", l.KubeletRoots))
	}
	msg := "layout found"
	if len(l.Kubelet.Candidates) > 1 && l.Kubelet.Source == layout.FromDefault {
		msg = "layout found; kubelet root ambiguous, the default kept and the mounts under every candidate read as kubelet's (give --path.kubelet)"
		level = zapcore.WarnLevel
	}
	if ce := log.Check(level, msg); ce != nil {
		ce.Write(fields...)
	}
}
