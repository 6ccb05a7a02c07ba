package remedy

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mountwatchd/mountwatchd/internal/check"
	"github.com/mountwatchd/mountwatchd/internal/export"
	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

// MessageID is the journal MESSAGE_ID of every remediation decision
// (`journalctl MESSAGE_ID=52e34adc81af4f3d9f8a7e27a9c2bc5b`), fixed forever.
const MessageID = "52e34adc81af4f3d9f8a7e27a9c2bc5b"

// HeldID is the check id of the warning finding that says remediation of
// a hung connection is held back (rate limit, cap) or cannot act (no write
// access, no fusectl, no state directory).
const HeldID finding.ID = "remediation_held"

// HeldMessageID is the MESSAGE_ID of the held finding's journal entries.
const HeldMessageID = "38f66570f6e947079b56d5436c2cef4f"

// The held finding's appearing and clearing carry its MESSAGE_ID, as every
// check's do.
func init() { export.MessageIDs[HeldID] = HeldMessageID }

// Journal priorities of decisions: an abort changed the system (warning),
// what could not be done when asked is a warning too, a dry-run's would is
// a notice, a refusal (the connection recovered) is information.
func priority(result string) int {
	switch result {
	case Aborted, HeldBack, CannotAct, Failed:
		return 4
	case WouldAbort:
		return 5
	}
	return 6
}

// report says each decision where operators look: one journal entry and
// one count per decision (the daemon says a connection's decision again
// only when it changes), the hung findings' details, a warning finding per
// connection held back, and rep.Remediation.
func (r *Remedy) report(rep *finding.Report, ds []decision) {
	seen := map[string]bool{}
	defer func() { // a connection no longer decided about is forgotten: if it hangs again, that is said
		for k := range r.said {
			if !seen[k] {
				delete(r.said, k)
			}
		}
	}()
	for _, d := range ds {
		seen[d.c.id], seen[d.c.dev] = true, true
		if d.earlier == nil {
			key := d.c.id
			if key == "" {
				key = d.c.dev
			}
			if r.cfg.Once || r.said[key] != d.result {
				r.said[key] = d.result
				r.journal(rep, d)
				r.Actions.WithLabelValues(ActionAbort, d.result, d.c.fstype).Inc()
			}
		}
		at := d.at
		if d.earlier != nil {
			at = d.earlier.At
		}
		rep.Remediation = append(rep.Remediation, finding.Remediation{
			Action: ActionAbort, Mode: string(r.cfg.Mode), Result: d.result, Connection: d.c.dev, FSType: d.c.fstype,
			MountPoint: d.c.probed.Mountpoint, HungSince: d.c.res.Since.UTC(), At: at.UTC(), Reason: d.reason,
		})
		annotateHung(rep, d, at)
		if d.result == HeldBack || d.result == CannotAct || d.result == Failed {
			rep.Findings = append(rep.Findings, heldFinding(d))
		}
	}
	check.SortFindings(rep.Findings)
}

// annotateHung puts the decision in the details of the connection's hung
// findings.
func annotateHung(rep *finding.Report, d decision, at time.Time) {
	for i := range rep.Findings {
		f := &rep.Findings[i]
		if f.Check != "hung_mount" || f.Dev != d.c.dev {
			continue
		}
		if f.Details == nil {
			f.Details = map[string]string{}
		}
		f.Details["remediation"] = d.result + ": " + d.reason
		switch d.result {
		case Aborted:
			f.Details["aborted_at"] = at.UTC().Format(time.RFC3339)
		case WouldAbort:
			f.Details["would_abort_at"] = at.UTC().Format(time.RFC3339)
		}
	}
}

// heldFinding is the warning that remediation of d's connection is held
// back, on the mount its probe went to.
func heldFinding(d decision) finding.Finding {
	m := d.c.probed
	f := finding.Finding{Check: HeldID, Severity: finding.Warning, MountID: m.ID, MountPoint: m.Mountpoint, FSType: m.FSType,
		Source: m.Source, Root: m.Root, Dev: m.Dev(),
		Details: map[string]string{"connection": d.c.dev, "result": d.result, "reason": d.reason,
			"hung_since": d.c.res.Since.UTC().Format(time.RFC3339)},
	}
	if m.Kube != nil {
		f.Kube = *m.Kube
	}
	what := "is held back"
	if d.result != HeldBack {
		what = "cannot act"
	}
	f.Message = fmt.Sprintf("Remediation of hung FUSE connection %s (%s on %s) %s: %s. The connection stays hung and every task stuck on it stays stuck. "+
		"Fix: see why the server does not answer; abort it by hand (echo 1 > /sys/fs/fuse/connections/%d/abort) if it must be freed now.",
		d.c.dev, m.FSType, m.Mountpoint, what, d.reason, d.c.minor)
	return f
}

// journal writes the one entry of decision d.
func (r *Remedy) journal(rep *finding.Report, d decision) {
	c := d.c
	fields := []zap.Field{
		zap.String("message_id", MessageID),
		zap.String("action", ActionAbort),
		zap.String("mode", string(r.cfg.Mode)),
		zap.String("result", d.result),
		zap.String("reason", d.reason),
		zap.String("connection", c.dev),
		zap.String("fstype", c.fstype),
		zap.String("source", c.probed.Source),
		zap.String("mount_point", c.probed.Mountpoint),
		zap.String("mount_points", mountPoints(c.mounts)),
		zap.Time("hung_since", c.res.Since),
		zap.String("hung_for", d.at.Sub(c.res.Since).Round(time.Second).String()),
		zap.Int("priority", priority(d.result)),
	}
	if c.id != "" {
		fields = append(fields, zap.String("connection_id", c.id))
	}
	if d.waiting > 0 {
		fields = append(fields, zap.Int("fuse_waiting", d.waiting))
	}
	if pv := podVolumes(c.mounts); pv != "" {
		fields = append(fields, zap.String("pod_volumes", pv))
	}
	if tr := rep.Tasks.Conn(c.dev); tr != nil {
		fields = append(fields, zap.Int("stuck_tasks", tr.Tasks), zap.Time("stuck_since", tr.Since))
	}
	if st := stuckTasks(rep, c.dev); st != "" {
		fields = append(fields, zap.String("stuck_task_list", st))
	}
	level := zapcore.WarnLevel
	if d.result == Refused || d.result == WouldAbort {
		level = zapcore.InfoLevel
	}
	msg := fmt.Sprintf("remediation %s: %s FUSE connection %s (%s on %s)", r.cfg.Mode, d.result, c.dev, c.fstype, c.probed.Mountpoint)
	if ce := r.log.Check(level, msg); ce != nil {
		ce.Write(fields...)
	}
}

func mountPoints(ms []*mounts.Mount) string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Mountpoint)
	}
	return strings.Join(out, " ")
}

// podVolumes names the pods and volumes of the connection's mounts:
// namespace/name (uid) volume.
func podVolumes(ms []*mounts.Mount) string {
	var out []string
	for _, m := range ms {
		k := m.Kube
		if k == nil || k.PodUID == "" {
			continue
		}
		name := k.PodUID
		if k.PodName != "" {
			name = k.PodNamespace + "/" + k.PodName + " (" + k.PodUID + ")"
		}
		out = append(out, name+" volume "+k.Volume)
	}
	return strings.Join(out, "; ")
}

// stuckTasks lists the tasks stuck on connection dev that the task scan
// listed: pid/tid comm [pod].
func stuckTasks(rep *finding.Report, dev string) string {
	if rep.Tasks == nil {
		return ""
	}
	var out []string
	for _, t := range rep.Tasks.Tasks {
		if t.Conn != dev {
			continue
		}
		s := strconv.Itoa(t.PID) + "/" + strconv.Itoa(t.TID) + " " + t.Comm + " (" + t.State + ", " + t.Syscall + ")"
		if p := t.Pod; p != nil {
			name := p.UID
			if p.Name != "" {
				name = p.Namespace + "/" + p.Name
			}
			s += " pod " + name
		}
		out = append(out, s)
	}
	return strings.Join(out, "; ")
}

// annotateStale says, on the stale findings of a connection remediation
// aborted, when and that it was this: an aborted connection is a dead one.
func annotateStale(rep *finding.Report, st *state, fc *fusectl) {
	ids := map[string]string{}
	for i := range rep.Findings {
		f := &rep.Findings[i]
		if f.Check != "stale_mount" || !strings.HasPrefix(f.FSType, "fuse") {
			continue
		}
		id, ok := ids[f.Dev]
		if !ok {
			_, minor, _ := strings.Cut(f.Dev, ":")
			n, err := strconv.Atoi(minor)
			if err == nil {
				id, _ = fc.identity(f.Dev, n)
			}
			ids[f.Dev] = id
		}
		if e, ok := st.aborted(id); ok && id != "" {
			if f.Details == nil {
				f.Details = map[string]string{}
			}
			f.Details["aborted_at"] = e.At.UTC().Format(time.RFC3339)
			f.Details["aborted_by"] = "mountwatchd remediation (the connection was hung)"
		}
	}
}
