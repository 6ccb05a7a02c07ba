package check

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe"
	"github.com/mountwatchd/mountwatchd/internal/tasks"
)

// What the probing checks say about the node's tasks stuck on a connection
// (package tasks): the counts and pods in hung_mount's and stale_mount's
// findings, and hung_mount for a connection whose probe was answered while
// tasks have waited on it past HungMountCheck.StuckAfter.

// DefaultStuckAfter is how long a task may wait on one connection before
// the connection is reported hung even when its probe is answered. A
// healthy but slow server can keep one request for minutes: s3fs and
// gcsfuse answer the close() or fsync() of a file written through them only
// once the whole object is uploaded (5 GiB at 10 MB/s is about 8.5
// minutes), and a read can wait for a large object to be fetched. Ten
// minutes stays clear of that, and the probe's own requests find a server
// that stopped answering everything much sooner.
const DefaultStuckAfter = 10 * time.Minute

// stuckAfter is HungMountCheck.StuckAfter for Config.StuckAfter: the
// default for 0, never (0) for a negative one.
func stuckAfter(d time.Duration) time.Duration {
	switch {
	case d == 0:
		return DefaultStuckAfter
	case d < 0:
		return 0
	}
	return d
}

// scanTasks returns the scan of the node's tasks for this probe round,
// shared by the probing checks of one run; nil without a scanner.
func scanTasks(ctx context.Context, sc *tasks.Scanner, r *probe.Round, s *mounts.Snapshot) *tasks.Report {
	if sc == nil {
		return nil
	}
	return sc.ScanFor(ctx, r, s)
}

// addStuckDetails puts what is stuck on the finding's connection in its
// details and returns the sentence that says it, or "" when nothing is.
func addStuckDetails(d map[string]string, tr *tasks.Report) string {
	c := tr.Conn(d["connection"])
	if c == nil {
		return ""
	}
	d["stuck_tasks"] = strconv.Itoa(c.Tasks)
	d["stuck_since"] = c.Since.UTC().Format(time.RFC3339)
	if p := stuckPods(c); p != "" {
		d["stuck_pods"] = p
	}
	return stuckSentence(c)
}

// withStuck puts the stuck sentence into a finding's message, before its
// "Fix:".
func withStuck(msg, stuck string) string {
	if stuck == "" {
		return msg
	}
	if i := strings.LastIndex(msg, "Fix: "); i >= 0 {
		return msg[:i] + stuck + msg[i:]
	}
	return msg + " " + strings.TrimSpace(stuck)
}

// stuckPods lists the pods with stuck tasks: namespace/name (container):
// count, most first.
func stuckPods(c *tasks.Conn) string {
	var parts []string
	for _, p := range c.Pods {
		parts = append(parts, podLabel(p.Pod)+": "+strconv.Itoa(p.Tasks))
	}
	if c.MorePods > 0 {
		parts = append(parts, fmt.Sprintf("%d more pods", c.MorePods))
	}
	if c.NodeTasks > 0 {
		parts = append(parts, "not in a pod: "+strconv.Itoa(c.NodeTasks)+nodeTaskNames(c))
	}
	return strings.Join(parts, ", ")
}

// nodeTaskNames names the stuck tasks in no pod by command name and PID
// (never their command lines), saying which is the kubelet's.
func nodeTaskNames(c *tasks.Conn) string {
	if n := c.NodeNames(); n != "" {
		return " (" + n + ")"
	}
	return ""
}

func podLabel(p tasks.Pod) string {
	name := p.UID
	if p.Name != "" {
		name = p.Namespace + "/" + p.Name
	}
	switch {
	case p.Container != "":
		name += " (container " + p.Container + ")"
	case p.ContainerID != "":
		name += " (container " + shortID(p.ContainerID) + ")"
	}
	return name
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func stuckSentence(c *tasks.Conn) string {
	var b strings.Builder
	n := "1 task is"
	if c.Tasks != 1 {
		n = strconv.Itoa(c.Tasks) + " tasks are"
	}
	fmt.Fprintf(&b, "%s waiting on it in the kernel, the first since at least %s (first seen by mountwatchd: the kernel does not say when a wait began)",
		n, c.Since.UTC().Format(time.RFC3339))
	if p := stuckPods(c); p != "" {
		b.WriteString(": " + p)
	}
	b.WriteString(". ")
	return b.String()
}

// stuckFindings reports hung_mount on every mount of a connection whose
// probe did not find it hung, while tasks have waited on it longer than
// after: the server answers our probe (statfs, a cached stat) and not what
// its users ask for, as ceph-fuse does with its MDS down.
func stuckFindings(conns *connIndex, s *mounts.Snapshot, r *probe.Round, tr *tasks.Report, after time.Duration, fusectl string) []finding.Finding {
	if tr == nil || after <= 0 {
		return nil
	}
	var out []finding.Finding
	for _, m := range s.Mounts {
		res, ok := r.Results[m.ID]
		if !ok || res.State == probe.Hung || (res.State == probe.Failed && isStale(m, res.Errno)) {
			continue // not probed (its type is not), or already hung or stale
		}
		c := tr.Conn(m.Dev())
		if c == nil || tr.Taken.Sub(c.Since) < after {
			continue
		}
		f := newFinding(HungMount, finding.Critical, m, "")
		f.Details = connDetails(conns, m)
		f.Details["probe"] = res.State.String()
		f.Details["stuck_after"] = after.String()
		stuck := addStuckDetails(f.Details, tr)
		var b strings.Builder
		probed := res.Path
		if probed == "" {
			probed = m.Mountpoint
		}
		switch res.State {
		case probe.OK:
			fmt.Fprintf(&b, "The probe of %s was answered, but connection %s has had ", probed, m.Dev())
		default:
			fmt.Fprintf(&b, "Connection %s (probe: %s) has had ", m.Dev(), res.State)
		}
		fmt.Fprintf(&b, "a task waiting on it for longer than %s (--probe.stuck-after): the server answers some requests and not others "+
			"(ceph-fuse with its MDS down still answers statfs and cached attributes). ", after)
		b.WriteString(stuck)
		if m.Kube != nil && m.Kube.PodUID != "" {
			fmt.Fprintf(&b, "Pod %s hangs on volume %s. ", podName(m.Kube), volumeName(m.Kube))
		}
		if m.FUSE {
			fmt.Fprintf(&b, "Fix: find what the server waits on (for ceph-fuse: its MDS); to free the stuck tasks, abort the connection "+
				"(echo 1 > %s/%d/abort), which turns the hang into ENOTCONN, then remount.", fusectl, m.Minor)
		} else {
			b.WriteString("Fix: bring the server or the network path back; a lazy unmount (umount -l) frees the path but not the stuck tasks.")
		}
		f.Message = b.String()
		out = append(out, f)
	}
	return out
}
