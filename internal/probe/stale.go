package probe

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// staleErrnos are the errors that mean a mount is dead: Kubernetes' own
// mount library treats them as a corrupted mount. EACCES is handled apart
// (see isStale).
var staleErrnos = map[syscall.Errno]string{
	syscall.ENOTCONN:  "the server behind it is gone (a FUSE server killed, OOM-killed or crashed)",
	syscall.ESTALE:    "stale file handle: the server no longer knows this directory (the export or directory was removed or recreated)",
	syscall.EIO:       "the filesystem answers every request with an I/O error",
	syscall.EHOSTDOWN: "the server is down",
	syscall.EAGAIN:    "the filesystem cannot serve requests",
	syscall.ENODEV:    "the filesystem's device is gone",
}

// isStale says whether a probe error makes m a stale mount. EACCES is stale
// only on kubelet mounts: a FUSE mount without allow_other denies even root,
// which is normal for a user's own sshfs or gvfs, but kubelet's volume
// mounts are made for every container and kubelet treats EACCES as corrupt.
func isStale(m *Mount, errno syscall.Errno) bool {
	if errno == syscall.EACCES {
		return m.Kube != nil
	}
	_, ok := staleErrnos[errno]
	return ok
}

// StaleMountCheck finds mounts whose filesystem answers a probe with an
// error that means it is dead, such as ENOTCONN after a FUSE server died.
// The mount table does not change when that happens; only a probe shows it.
type StaleMountCheck struct{ Prober *Prober }

// ID implements Check.
func (StaleMountCheck) ID() CheckID { return StaleMount }

// Kind implements Check.
func (StaleMountCheck) Kind() Kind { return ProbeCheck }

// ProbeStats reports the prober's state for the Report.
func (c StaleMountCheck) ProbeStats() ProbeStats { return c.Prober.Stats() }

// Run implements Check.
func (c StaleMountCheck) Run(ctx context.Context, s *Snapshot) ([]Finding, error) {
	r := c.Prober.Round(ctx, s)
	var out []Finding
	conns := newConnIndex(s)
	for _, m := range s.Mounts {
		res, ok := r.Results[m.ID]
		if !ok || res.State != ProbeFailed || !isStale(m, res.Errno) {
			continue
		}
		sev := Critical
		if res.Errno == syscall.EACCES {
			sev = Warning
		}
		f := newFinding(StaleMount, sev, m, staleMessage(conns, m, res))
		f.Details = connDetails(conns, m)
		f.Details["errno"] = unix.ErrnoName(res.Errno)
		f.Details["probed"] = res.Path
		out = append(out, f)
	}
	return out, nil
}

// connInfo counts what depends on m's connection.
type connInfo struct {
	mounts, podVolumes int
	staging            []string
}

// connIndex answers connOf and reachableOn for one run of a check, each
// once per connection: every mount of a broken connection gets a finding
// that names what depends on the connection, and counting that anew per
// mount made a dead connection with k pod volumes cost k² (issue 11).
type connIndex struct {
	s         *Snapshot
	conns     map[string]connInfo
	reachable map[string]int
}

func newConnIndex(s *Snapshot) *connIndex {
	return &connIndex{s: s, conns: map[string]connInfo{}, reachable: map[string]int{}}
}

// of is connOf(m), counted once per connection.
func (x *connIndex) of(m *Mount) connInfo {
	ci, ok := x.conns[m.Dev()]
	if !ok {
		ci = connOf(x.s, m)
		x.conns[m.Dev()] = ci
	}
	return ci
}

// reachableOn is how many mounts of connection dev are reachable by their
// mount point (Snapshot.Reachable), counted once per connection.
func (x *connIndex) reachableOn(dev string) int {
	n, ok := x.reachable[dev]
	if !ok {
		for _, mm := range x.s.ByDev(dev) {
			if x.s.Reachable(mm) {
				n++
			}
		}
		x.reachable[dev] = n
	}
	return n
}

func connOf(s *Snapshot, m *Mount) connInfo {
	var ci connInfo
	for _, mm := range s.ByDev(m.Dev()) {
		ci.mounts++
		if mm.Kube != nil {
			switch mm.Kube.Kind {
			case PodVolume, SubPath:
				ci.podVolumes++
			case CSIStaging:
				ci.staging = append(ci.staging, mm.Mountpoint)
			}
		}
	}
	return ci
}

func connDetails(conns *connIndex, m *Mount) map[string]string {
	ci := conns.of(m)
	d := map[string]string{
		"connection":           m.Dev(),
		"mounts_on_connection": strconv.Itoa(ci.mounts),
		"pod_volumes":          strconv.Itoa(ci.podVolumes),
	}
	if len(ci.staging) > 0 {
		d["staging"] = strings.Join(ci.staging, " ")
	}
	return d
}

func staleMessage(conns *connIndex, m *Mount, res ProbeResult) string {
	ci := conns.of(m)
	var b strings.Builder
	what := staleErrnos[res.Errno]
	if res.Errno == syscall.EACCES {
		what = "access denied to root, which kubelet treats as a corrupted mount"
	}
	fmt.Fprintf(&b, "A probe of %s failed with %s (%s): %s. ", res.Path, unix.ErrnoName(res.Errno), res.Errno.Error(), what)
	if res.Connection {
		fmt.Fprintf(&b, "The mount table still lists it, but every mount of connection %s fails the same way (%s, %s). ",
			m.Dev(), plural(ci.mounts, "mount"), plural(ci.podVolumes, "pod volume"))
	} else {
		fmt.Fprintf(&b, "The filesystem's root (connection %s) answers, but this mount's directory %s does not. ", m.Dev(), m.Root)
	}
	if m.Kube != nil && m.Kube.PodUID != "" {
		fmt.Fprintf(&b, "Pod %s cannot use volume %s. ", podName(m.Kube), m.Kube.Volume)
	}
	if m.CephFUSE {
		if len(ci.staging) > 0 {
			fmt.Fprintf(&b, "The dead ceph-fuse staging mount is %s: restarting ceph-fuse on it fails the same way, "+
				"and a new mount over it (-o nonempty, or after a lazy unmount) leaves the pod bind mounts on the dead connection. ",
				strings.Join(ci.staging, ", "))
		} else {
			b.WriteString("Restarting ceph-fuse on the same mount point fails the same way; a new mount over it leaves " +
				"existing bind mounts on the dead connection. ")
		}
	}
	fmt.Fprintf(&b, "Fix: unmount every mount of %s (findmnt -o TARGET,MAJ:MIN | grep %s; umount -l), then remount "+
		"the volume (for CSI: restart the node plugin so it restages) and restart the pods that use it.", m.Dev(), m.Dev())
	return b.String()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}
