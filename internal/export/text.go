package export

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/layout"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/tasks"
)

// WriteText writes the human report of --once: the summary line, then each
// finding, then how each check went and which table lines were skipped.
func WriteText(w io.Writer, r *finding.Report) error {
	ew := &errWriter{w: w}
	ew.printf("%s\n", Summary(r))
	writeFindings(ew, r.Findings)

	s := r.Snapshot
	writeChecks(ew, r)
	if p := r.Probe; p != nil {
		ew.printf("Probed %s: %d blocked in the kernel, %d not probed (%d probes, %d timeouts since start).\n",
			plural(p.Connections, "connection"), p.Blocked, p.NotProbed, p.Probes, p.Timeouts)
	}
	writeTasks(ew, r.Tasks, s)
	for _, a := range r.Remediation {
		ew.printf("Remediation (%s): %s of connection %s (%s on %s): %s: %s\n", a.Mode, a.Action, a.Connection,
			Printable(a.FSType), Printable(a.MountPoint), a.Result, Printable(a.Reason))
	}
	if sc := r.Scan; sc != nil {
		state := "pass complete"
		if !sc.Complete {
			state = "pass not complete (budget reached; resumes on the next run)"
		}
		ew.printf("Scanned %d entries, %s (%d passes, budget reached %d times since start).\n",
			sc.Entries, state, sc.Passes, sc.BudgetExhausted)
	}
	if t := r.Table; t != nil && t.MountMax > 0 {
		ew.printf("Mount table: %d mounts, %.1f%% of fs.mount-max (%d).\n", t.Size, 100*float64(t.Size)/float64(t.MountMax), t.MountMax)
	}
	if len(s.ParseErrors) > 0 {
		ew.printf("\nMount table lines that could not be parsed (left out of the checks):\n")
		for _, e := range s.ParseErrors {
			ew.printf("  line %d: %s: %s\n", e.Line, e.Err, Printable(e.Text))
		}
		if more := s.ParseErrorTotal() - len(s.ParseErrors); more > 0 {
			ew.printf("  ... and %d more lines not parsed (the first %d are listed)\n", more, len(s.ParseErrors))
		}
	}
	return ew.err
}

// writeFindings writes each finding: its mount, its pod, its details and
// its message.
func writeFindings(ew *errWriter, findings []finding.Finding) {
	for _, f := range findings {
		ew.printf("\n%s %s %s\n", strings.ToUpper(string(f.Severity)), f.Check, Printable(f.MountPoint))
		if f.Path != "" {
			ew.printf("  path:   %s\n", Printable(f.Path))
		}
		ew.printf("  mount:  id %d, %s from %s, root %s, dev %s\n", f.MountID, Printable(f.FSType),
			Printable(orNone(f.Source)), Printable(f.Root), f.Dev)
		if k := kubeLine(f.Kube); k != "" {
			ew.printf("  kube:   %s\n", k)
		}
		for _, k := range sortedKeys(f.Details) {
			ew.printf("  %s: %s\n", k, Printable(f.Details[k]))
		}
		ew.printf("  since:  %s\n", f.FirstSeen.UTC().Format(time.RFC3339))
		ew.printf("%s", wrap(Printable(f.Message), "  ", 78))
	}

}

// writeChecks writes how each check went and the layout found.
func writeChecks(ew *errWriter, r *finding.Report) {
	s := r.Snapshot
	mode := "live"
	if !s.Live {
		mode = "captured file"
	}
	ew.printf("\nChecked %s from %s (%s):\n", plural(len(s.Mounts), "mount"), Printable(s.Path), mode)
	for _, c := range r.Checks {
		switch c.Status {
		case finding.StatusSkipped:
			ew.printf("  %-20s skipped: %s\n", c.Check, c.Reason)
		case finding.StatusError:
			ew.printf("  %-20s error: %s\n", c.Check, Printable(c.Error))
		default:
			ew.printf("  %-20s %-8s %s in %s\n", c.Check, c.Status, plural(c.Findings, "finding"), c.Duration.Round(time.Microsecond))
			if c.Reason != "" {
				ew.printf("  %-20s not checked: %s\n", "", Printable(c.Reason))
			}
		}
	}
	l := s.Layout
	ew.printf("Layout (what was found, and from what):\n")
	for _, d := range []struct {
		name string
		dir  layout.Dir
	}{{"kubelet root", l.Kubelet}, {"containerd root", l.ContainerdRoot}, {"containerd snapshots", l.ContainerdSnapshots},
		{"pod logs", l.PodLogs}} {
		ew.printf("  %-20s %s\n", d.name, Printable(d.dir.String()))
	}
	if len(l.KubeletRoots) > 1 {
		ew.printf("  %-20s %s\n", "kubelet roots used", Printable(strings.Join(l.KubeletRoots, ", ")))
	}
}

func kubeLine(k mounts.Kube) string {
	var parts []string
	switch {
	case k.PodName != "":
		parts = append(parts, fmt.Sprintf("pod %s/%s (uid %s)", k.PodNamespace, k.PodName, k.PodUID))
	case k.PodUID != "":
		parts = append(parts, "pod uid "+k.PodUID)
	}
	if k.Volume != "" {
		parts = append(parts, "volume "+k.Volume)
	}
	if k.Container != "" {
		parts = append(parts, "container "+k.Container)
	}
	if k.Kind != "" {
		parts = append(parts, string(k.Kind))
	}
	if k.VolumePlugin != "" {
		parts = append(parts, "plugin "+k.VolumePlugin)
	}
	if k.CSIDriver != "" {
		parts = append(parts, "driver "+k.CSIDriver)
	}
	if k.VolumeHandle != "" {
		parts = append(parts, "handle "+k.VolumeHandle)
	}
	return Printable(strings.Join(parts, ", "))
}

func orNone(s string) string {
	if s == "" {
		return "(no source)"
	}
	return s
}

// wrap breaks text into lines of at most width bytes, each prefixed.
func wrap(text, prefix string, width int) string {
	var b strings.Builder
	line := prefix
	for _, word := range strings.Fields(text) {
		if len(line) > len(prefix) && len(line)+1+len(word) > width {
			b.WriteString(line + "\n")
			line = prefix
		}
		if len(line) > len(prefix) {
			line += " "
		}
		line += word
	}
	if len(line) > len(prefix) {
		b.WriteString(line + "\n")
	}
	return b.String()
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, a ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, a...)
	}
}

// writeTasks writes the text report's lines of the stuck tasks: why they
// were not counted, or the connections they wait on; nothing when the
// probing checks did not scan or found none.
func writeTasks(ew *errWriter, tr *tasks.Report, s *mounts.Snapshot) {
	switch {
	case tr == nil:
	case tr.Err != nil:
		ew.printf("Stuck tasks not counted: %s.\n", Printable(tr.Err.Error()))
	case tr.Stuck > 0:
		ew.printf("Stuck tasks: %d waiting in the kernel on FUSE or network filesystems (%d tasks examined; %d on a connection the kernel does not name):\n",
			tr.Stuck, tr.Examined, tr.Unattributed)
		for _, dev := range slices.Sorted(maps.Keys(tr.Conns)) {
			c := tr.Conns[dev]
			fstype := ""
			if ms := s.ByDev(dev); len(ms) > 0 {
				fstype = " (" + Printable(ms[0].FSType) + ")"
			}
			ew.printf("  connection %s%s: %s, first seen %s%s\n", dev, fstype, plural(c.Tasks, "task"),
				c.Since.UTC().Format(time.RFC3339), podsLine(c))
		}
	}
}

// podsLine lists the pods with tasks stuck on a connection, for the text
// report.
func podsLine(c *tasks.Conn) string {
	var parts []string
	for _, p := range c.Pods {
		name := p.UID
		if p.Name != "" {
			name = p.Namespace + "/" + p.Name
		}
		if p.Container != "" {
			name += " (" + p.Container + ")"
		}
		parts = append(parts, fmt.Sprintf("%s: %d", Printable(name), p.Tasks))
	}
	if c.MorePods > 0 {
		parts = append(parts, fmt.Sprintf("%d more pods", c.MorePods))
	}
	if c.NodeTasks > 0 {
		n := fmt.Sprintf("not in a pod: %d", c.NodeTasks)
		if names := c.NodeNames(); names != "" {
			n += " (" + Printable(names) + ")"
		}
		parts = append(parts, n)
	}
	if len(parts) == 0 {
		return ""
	}
	return "; " + strings.Join(parts, ", ")
}
