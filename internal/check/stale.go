package check

import (
	"context"
	"fmt"
	"strings"
	"syscall"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe"
	"github.com/mountwatchd/mountwatchd/internal/tasks"
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
func isStale(m *mounts.Mount, errno syscall.Errno) bool {
	if errno == syscall.EACCES {
		return m.Kube != nil
	}
	_, ok := staleErrnos[errno]
	return ok
}

// StaleMount is the ID of StaleMountCheck.
const StaleMount finding.ID = "stale_mount"

var staleMountDecl = Decl{
	ID: StaleMount, Kind: finding.ProbeCheck, Needs: NeedsLive | NeedsRoot | NeedsProbes, Order: 20,
	MessageID:  "2a3f10996b9740bebc72984411f7b637",
	Severities: []finding.Severity{finding.Critical, finding.Warning},
	New:        func(cfg *Config) Check { return StaleMountCheck{Tasks: cfg.Tasks} },
}

func init() { Register(staleMountDecl) }

// StaleMountCheck finds mounts whose filesystem answers a probe with an
// error that means it is dead, such as ENOTCONN after a FUSE server died.
// The mount table does not change when that happens; only a probe shows it.
// It reads the run's probe round (Env.Probes).
type StaleMountCheck struct {
	// Tasks, when set, says how many of the node's tasks are stuck on a
	// stale connection (a server that died holding requests); shared with
	// HungMountCheck: one scan per probe round.
	Tasks *tasks.Scanner
}

// Decl implements Check.
func (StaleMountCheck) Decl() Decl { return staleMountDecl }

// Run implements Check.
func (c StaleMountCheck) Run(ctx context.Context, env *Env) Outcome {
	s, r := env.Snapshot, env.Probes
	tr := scanTasks(ctx, c.Tasks, r, s)
	var out []finding.Finding
	conns := newConnIndex(s)
	for _, m := range s.Mounts {
		res, ok := r.Results[m.ID]
		if !ok || res.State != probe.Failed || !isStale(m, res.Errno) {
			continue
		}
		sev := finding.Critical
		if res.Errno == syscall.EACCES {
			sev = finding.Warning
		}
		f := newFinding(StaleMount, sev, m, staleMessage(conns, m, res))
		f.Details = connDetails(conns, m)
		f.Details["errno"] = unix.ErrnoName(res.Errno)
		f.Details["probed"] = res.Path
		f.Message = withStuck(f.Message, addStuckDetails(f.Details, tr))
		out = append(out, f)
	}
	return Outcome{Findings: out, Err: r.NamespaceErr(), Tasks: tr}
}

func staleMessage(conns *connIndex, m *mounts.Mount, res probe.Result) string {
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
		fmt.Fprintf(&b, "Pod %s cannot use volume %s. ", podName(m.Kube), volumeName(m.Kube))
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
	csi := m.Kube != nil && (m.Kube.Kind == mounts.CSIStaging || m.Kube.VolumePlugin == mounts.CsiPlugin || len(ci.staging) > 0)
	if csi && res.Errno == syscall.ENOTCONN {
		b.WriteString(staleKubeletSays(m, ci))
		b.WriteString("Fix: delete the pods that use the volume: kubelet unpublishes it and the CSI driver unstages the dead " +
			"mount and stages the volume anew for the next pod (checked with ceph-csi v3.6.2); if a mount is left, unmount it " +
			"(umount -l) first.")
		return b.String()
	}
	fmt.Fprintf(&b, "Fix: unmount every mount of %s (findmnt -o TARGET,MAJ:MIN | grep %s; umount -l), then remount "+
		"the volume (for CSI: restart the node plugin so it restages) and restart the pods that use it.", m.Dev(), m.Dev())
	return b.String()
}

// staleKubeletSays is what kubelet and the runtime print for a CSI volume
// on a dead FUSE connection, each quote attributed to the component and
// version that prints it (checked with kubelet 1.34, containerd 1.6 and
// ceph-csi v3.6.2).
func staleKubeletSays(m *mounts.Mount, ci connInfo) string {
	volume, podMount := "<pv>", "<kubelet root>/pods/<pod uid>/volumes/kubernetes.io~csi/<pv>/mount"
	if m.Kube.PodUID != "" {
		volume, podMount = m.Kube.Volume, m.Mountpoint
	}
	staging := "<staging>/globalmount"
	switch {
	case m.Kube.Kind == mounts.CSIStaging:
		staging = m.Mountpoint
	case len(ci.staging) > 0:
		staging = ci.staging[0]
	}
	return fmt.Sprintf("What the pods get (kubelet 1.34, containerd 1.6, ceph-csi v3.6.2): a restarted container fails, "+
		`reported by kubelet as CreateContainerError: failed to generate container "..." spec: failed to generate spec: `+
		`failed to stat "%s": stat %[1]s: transport endpoint is not connected (containerd's error); a new pod on the `+
		`claim gets kubelet's FailedMount event: MountVolume.SetUp failed for volume "%s" : rpc error: code = Internal `+
		`desc = stat %s: transport endpoint is not connected (the CSI driver's NodePublishVolume error). `,
		podMount, volume, staging)
}
