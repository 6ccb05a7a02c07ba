package check

import (
	"context"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

// DeletedRoot is the ID of DeletedRootCheck.
const DeletedRoot finding.ID = "deleted_root"

var deletedRootDecl = Decl{
	ID: DeletedRoot, Kind: finding.TableCheck, Needs: UsesRoot | UsesProbes, Order: 10,
	MessageID:  "faa7a0350bc2426cb8b19c486849983b",
	Severities: []finding.Severity{finding.Critical, finding.Warning},
	New:        func(*Config) Check { return DeletedRootCheck{} },
}

func init() { Register(deletedRootDecl) }

// DeletedRootCheck finds mounts whose source directory (root field) or mount
// point was deleted. It needs only the mount table.
//
// A bind mount whose source directory was removed keeps working for stat
// and reads, but every new bind mount from it fails with ENOENT; runc reports
// that as "mount through procfd: no such file or directory" and the pod never
// starts.
//
// It skips the masks that systemd-nspawn and container runtimes put over
// entries of /proc and /sys (/proc/kmsg, /proc/sys/kernel/random/boot_id):
// a file made, bind-mounted and deleted at once, so the mount's root ends in
// //deleted by design and nothing ever bind-mounts from it.
//
// On the live system it tells a deleted file from a deleted directory by
// looking at the mount point (statx from the cache, through the inspected
// root, following no symlink, and only when no mount on the way could hang);
// a captured table does not say which.
//
// On the live system it also reports a mount whose root directory the
// latest probe found deleted on the server (probe.Result.RootDeleted: a
// directory with link count 0 on the probe's own stat, or a server that
// answers ENOENT for it), which the mount table never shows: the
// directory was removed through another client, or it is the root of the
// FUSE mount itself. It makes no request of its own (UsesProbes).
type DeletedRootCheck struct{}

// Decl implements Check.
func (DeletedRootCheck) Decl() Decl { return deletedRootDecl }

// Run implements Check.
func (DeletedRootCheck) Run(_ context.Context, env *Env) Outcome {
	s := env.Snapshot
	var out []finding.Finding
	for _, m := range s.Mounts {
		rootGone := strings.HasSuffix(m.Root, mounts.DeletedRootSuffix) && !procMask(s, m)
		mpGone := strings.HasSuffix(m.Mountpoint, mounts.DeletedMountSuffix)
		if !rootGone && !mpGone {
			if f, ok := serverDeleted(env.Probes, m); ok {
				out = append(out, f)
			}
			continue
		}
		sev := finding.Warning
		if m.FUSE || (m.Kube != nil && m.Kube.PodUID != "") || (m.Kube != nil && m.Kube.Kind == mounts.CSIStaging) {
			sev = finding.Critical
		}
		kind := ""
		if rootGone && !mpGone && s.Live && env.Root != nil {
			kind = mountPointKind(s, env.Root, m)
		}
		f := newFinding(DeletedRoot, sev, m, deletedMessage(m, rootGone, mpGone, kind))
		if kind != "" {
			f.Details = map[string]string{"root_type": kind}
		}
		out = append(out, f)
	}
	return Outcome{Findings: out}
}

// procMask reports whether m is a bind mount over an entry of a proc or
// sysfs mount: the masks nspawn and container runtimes make over /proc and
// /sys entries from a file they delete at once.
func procMask(s *mounts.Snapshot, m *mounts.Mount) bool {
	if p := s.ByID[m.Parent]; p != nil && p != m {
		return p.FSType == "proc" || p.FSType == "sysfs"
	}
	// The parent is not in the table (a partial capture): go by the path.
	return strings.HasPrefix(m.Mountpoint, "/proc/") || strings.HasPrefix(m.Mountpoint, "/sys/")
}

// mountPointKind says whether m's mount point, and so its root, is a "file"
// or a "directory" on the live system; "" when it cannot be told without
// risk: a mount on the way could hang (FUSE, network), or the lookup fails.
// It follows no symlink and reads the type from the cache (a FUSE server is
// not asked).
func mountPointKind(s *mounts.Snapshot, root *mounts.Root, m *mounts.Mount) string {
	if o, _ := s.HangsOnTheWay(m.Mountpoint, m); o != nil {
		return ""
	}
	fd, err := root.Open(m.Mountpoint, unix.OpenHow{Flags: unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return ""
	}
	defer unix.Close(fd)
	var st unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_DONT_SYNC|unix.AT_NO_AUTOMOUNT, unix.STATX_TYPE|unix.STATX_MNT_ID, &st); err != nil {
		return ""
	}
	if int(st.Mnt_id) != m.ID {
		return "" // the path leads to another mount (m is shadowed)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return "directory"
	}
	return "file"
}

// deletedMessage explains a finding; kind is "file", "directory" or ""
// (not known: a captured table does not say).
func deletedMessage(m *mounts.Mount, rootGone, mpGone bool, kind string) string {
	var b strings.Builder
	if rootGone {
		what, unknown := "The "+kind, ""
		if kind == "" {
			what, unknown = "The directory or file", " (the mount table does not say which)"
		}
		fmt.Fprintf(&b, "%s %s on %s (%s), which this mount shows, was deleted%s. ",
			what, strings.TrimSuffix(m.Root, mounts.DeletedRootSuffix), m.Source, m.FSType, unknown)
		b.WriteString("Files already open and stat still work, but every new bind mount from it fails with ENOENT")
		b.WriteString(deletedEffect(m))
	}
	if mpGone {
		b.WriteString("The directory this mount sits on was deleted: the mount can no longer be reached by its path " +
			"and keeps its filesystem busy. ")
	}
	switch {
	case m.Kube != nil && m.Kube.Kind == mounts.SubPath:
		b.WriteString("Fix: copy out what the container wrote since (it is in the directory kubelet re-created), restore " +
			"the subPath's data from a backup, then delete the pod so kubelet binds the restored directory.")
	case m.Kube != nil && m.Kube.PodUID != "":
		b.WriteString("Fix: delete the pod so kubelet unmounts and republishes the volume; if the source directory " +
			"was removed by mistake, recreate it first.")
	case m.Kube != nil && m.Kube.Kind == mounts.CSIStaging:
		b.WriteString("Fix: drain the pods using this volume so the CSI driver unstages and restages it.")
	default:
		fmt.Fprintf(&b, "Fix: unmount it (umount %s) and mount it again from an existing directory.", strings.TrimSuffix(m.Mountpoint, mounts.DeletedMountSuffix))
	}
	return b.String()
}

// deletedEffect says what a //deleted root does to what uses the mount,
// each quote attributed to the component and version that prints it, and
// ends the sentence.
func deletedEffect(m *mounts.Mount) string {
	const runc = ` (runc 1.1 and earlier fail the container with "mount through procfd: no such file or directory")`
	switch {
	case m.Kube != nil && m.Kube.Kind == mounts.CSIStaging:
		return ", so no new pod can publish this volume" + runc + ". "
	case m.Kube != nil && m.Kube.Kind == mounts.SubPath:
		return fmt.Sprintf(". Checked with kubelet 1.34 and containerd 1.6: the restarted container of pod %s first waits with "+
			`CreateContainerConfigError "failed to prepare subPath for volumeMount", then kubelet re-creates the subPath's `+
			"directory, empty, binds it anew and the container runs, with no error naming the deletion: the data of volume %s's "+
			"subPath is silently gone from it; older kubelets, with runc 1.1 and earlier, fail the container instead "+
			`("mount through procfd: no such file or directory"). `, podName(m.Kube), volumeName(m.Kube))
	case m.Kube != nil && m.Kube.PodUID != "":
		return fmt.Sprintf(", so containers of pod %s that mount volume %s cannot start: containerd 1.6 fails a restarted "+
			`one, reported by kubelet 1.34 as CreateContainerError: failed to generate container "..." spec: failed to generate `+
			`spec: failed to mkdir "%s": mkdir %[3]s: file exists`+runc+". ", podName(m.Kube), volumeName(m.Kube), m.Mountpoint)
	}
	return runc + ". "
}

// volumeName names a pod's volume as kubelet's directory does: for a
// claim, its PersistentVolume, not the pod's own name for the volume
// (which only the API knows).
func volumeName(k *mounts.Kube) string {
	if k.Kind == mounts.PodVolume && k.VolumePlugin == mounts.CsiPlugin {
		return k.Volume + " (kubelet's directory name: for a claim, its PersistentVolume)"
	}
	return k.Volume
}

// podName is namespace/name when known, else the pod UID.
func podName(k *mounts.Kube) string {
	if k.PodName != "" {
		return k.PodNamespace + "/" + k.PodName
	}
	return k.PodUID
}
