package check

import (
	"context"
	"fmt"
	"strings"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

// DeletedRootCheck finds mounts whose source directory (root field) or mount
// point was deleted. It needs only the mount table.
//
// A bind mount whose source directory was removed keeps working for stat
// and reads, but every new bind mount from it fails with ENOENT; runc reports
// that as "mount through procfd: no such file or directory" and the pod never
// starts.
type DeletedRootCheck struct{}

// ID implements Check.
func (DeletedRootCheck) ID() ID { return DeletedRoot }

// Kind implements Check.
func (DeletedRootCheck) Kind() Kind { return TableCheck }

// Run implements Check.
func (DeletedRootCheck) Run(_ context.Context, s *mounts.Snapshot) ([]Finding, error) {
	var out []Finding
	for _, m := range s.Mounts {
		rootGone := strings.HasSuffix(m.Root, mounts.DeletedRootSuffix)
		mpGone := strings.HasSuffix(m.Mountpoint, mounts.DeletedMountSuffix)
		if !rootGone && !mpGone {
			continue
		}
		sev := Warning
		if m.FUSE || (m.Kube != nil && m.Kube.PodUID != "") || (m.Kube != nil && m.Kube.Kind == mounts.CSIStaging) {
			sev = Critical
		}
		out = append(out, newFinding(DeletedRoot, sev, m, deletedMessage(m, rootGone, mpGone)))
	}
	return out, nil
}

func deletedMessage(m *mounts.Mount, rootGone, mpGone bool) string {
	var b strings.Builder
	if rootGone {
		fmt.Fprintf(&b, "The directory %s on %s (%s), which this mount shows, was deleted. ",
			strings.TrimSuffix(m.Root, mounts.DeletedRootSuffix), m.Source, m.FSType)
		b.WriteString("Files already open and stat still work, but every new bind mount from it fails with ENOENT " +
			`(runc: "mount through procfd: no such file or directory")`)
		switch {
		case m.Kube != nil && m.Kube.Kind == mounts.CSIStaging:
			b.WriteString(", so no new pod can publish this volume")
		case m.Kube != nil && m.Kube.PodUID != "":
			fmt.Fprintf(&b, ", so containers of pod %s that mount volume %s cannot start", podName(m.Kube), m.Kube.Volume)
		}
		b.WriteString(". ")
	}
	if mpGone {
		b.WriteString("The directory this mount sits on was deleted: the mount can no longer be reached by its path " +
			"and keeps its filesystem busy. ")
	}
	switch {
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

// podName is namespace/name when known, else the pod UID.
func podName(k *mounts.Kube) string {
	if k.PodName != "" {
		return k.PodNamespace + "/" + k.PodName
	}
	return k.PodUID
}
