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

// HungMount is the ID of HungMountCheck.
const HungMount finding.ID = "hung_mount"

var hungMountDecl = Decl{
	ID: HungMount, Kind: finding.ProbeCheck, Needs: NeedsLive | NeedsRoot | NeedsProbes, Order: 30,
	MessageID:  "0b3bc3277687449192a2a991a8da58f0",
	Severities: []finding.Severity{finding.Critical},
	New: func(cfg *Config) Check {
		return HungMountCheck{Fusectl: cfg.Fusectl, FusectlErr: cfg.FusectlErr, Tasks: cfg.Tasks, StuckAfter: stuckAfter(cfg.StuckAfter)}
	},
}

func init() { Register(hungMountDecl) }

// HungMountCheck finds mounts whose filesystem does not answer a probe by
// the deadline: a FUSE server alive but stuck (or stopped), an unreachable
// hard-mounted NFS server. The blocked probe stays parked in the kernel
// (one per connection, at most --probe.max-blocked) and the finding clears
// once it returns and a new probe answers. It reads the run's probe round
// (Env.Probes).
type HungMountCheck struct {
	// Fusectl is where fusectl is mounted (DefaultFusectl when empty);
	// FusectlErr, when set, says why the waiting count cannot be read.
	Fusectl    string
	FusectlErr error
	// Tasks, when set, counts the node's tasks stuck on each connection
	// (shared with StaleMountCheck: one scan per probe round); a
	// connection with one stuck longer than StuckAfter is hung even when
	// its probe was answered (StuckAfter 0: never).
	Tasks      *tasks.Scanner
	StuckAfter time.Duration
}

// Decl implements Check.
func (HungMountCheck) Decl() Decl { return hungMountDecl }

// Run implements Check.
func (c HungMountCheck) Run(ctx context.Context, env *Env) Outcome {
	s, r := env.Snapshot, env.Probes
	tr := scanTasks(ctx, c.Tasks, r, s)
	var out []finding.Finding
	waiting := map[string]string{} // by connection, read once
	conns := newConnIndex(s)
	for _, m := range s.Mounts {
		res, ok := r.Results[m.ID]
		if !ok || res.State != probe.Hung {
			continue
		}
		f := newFinding(HungMount, finding.Critical, m, "")
		f.Details = connDetails(conns, m)
		f.Details["blocked_since"] = res.Since.UTC().Format(time.RFC3339)
		f.Details["probed"] = res.Path
		if m.FUSE {
			w, ok := waiting[m.Dev()]
			if !ok {
				w = c.waiting(m.Minor)
				waiting[m.Dev()] = w
			}
			f.Details["fuse_waiting"] = w
		}
		stuck := addStuckDetails(f.Details, tr)
		f.Message = withStuck(hungMessage(conns, m, res, r.Timeout, f.Details["fuse_waiting"], c.fusectl()), stuck)
		out = append(out, f)
	}
	out = append(out, stuckFindings(conns, s, r, tr, c.StuckAfter, c.fusectl())...)
	return Outcome{Findings: out, Err: r.NamespaceErr(), Tasks: tr}
}

func (c HungMountCheck) fusectl() string {
	if c.Fusectl == "" {
		return probe.DefaultFusectl
	}
	return c.Fusectl
}

func (c HungMountCheck) waiting(minor int) string {
	if c.FusectlErr != nil {
		return "unknown: " + c.FusectlErr.Error()
	}
	n, err := probe.FuseWaiting(c.fusectl(), minor)
	if err != nil {
		return "unknown: " + err.Error()
	}
	return strconv.Itoa(n)
}

func hungMessage(conns *connIndex, m *mounts.Mount, res probe.Result, timeout time.Duration, waiting, fusectl string) string {
	ci := conns.of(m)
	var b strings.Builder
	fmt.Fprintf(&b, "A probe of %s has not answered since %s (deadline %s). ", res.Path, res.Since.UTC().Format(time.RFC3339), timeout)
	if m.FUSE {
		fmt.Fprintf(&b, "The FUSE server behind connection %s is alive but not answering (stopped, deadlocked, or waiting on its own backend): ", m.Dev())
	} else {
		fmt.Fprintf(&b, "The server behind %s (%s) does not answer: ", m.Source, m.FSType)
	}
	fmt.Fprintf(&b, "every process that touches any of its %s (%s) hangs in the kernel. ", plural(ci.mounts, "mount"), plural(ci.podVolumes, "pod volume"))
	if m.Kube != nil && m.Kube.PodUID != "" {
		fmt.Fprintf(&b, "Pod %s hangs on volume %s. ", podName(m.Kube), volumeName(m.Kube))
	}
	if m.FUSE {
		switch {
		case waiting == "1":
			b.WriteString("1 request is waiting on it. ")
		case !strings.HasPrefix(waiting, "unknown"):
			fmt.Fprintf(&b, "%s requests are waiting on it. ", waiting)
		}
		fmt.Fprintf(&b, "Fix: find the server process (for ceph-fuse: is it stopped, or waiting on its MDS or network?); to free "+
			"the hung processes, abort the connection (echo 1 > %s/%d/abort), which turns the hang into ENOTCONN, then remount.",
			fusectl, m.Minor)
	} else {
		b.WriteString("Fix: bring the server or the network path back; a lazy unmount (umount -l) frees the path but not the hung processes.")
	}
	return b.String()
}
