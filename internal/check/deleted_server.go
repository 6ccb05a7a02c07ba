package check

import (
	"fmt"
	"strings"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe"
)

// serverDeleted is deleted_root's finding for a mount whose root directory
// the latest probe found deleted on the server (probe.Result.RootDeleted),
// with nothing in the mount table to say so.
func serverDeleted(r *probe.Round, m *mounts.Mount) (finding.Finding, bool) {
	if r == nil {
		return finding.Finding{}, false
	}
	res, ok := r.Results[m.ID]
	if !ok || res.State != probe.OK || !res.RootDeleted {
		return finding.Finding{}, false
	}
	sev := finding.Warning // as for a //deleted root: critical on FUSE and kubelet's mounts
	if m.FUSE || (m.Kube != nil && (m.Kube.PodUID != "" || m.Kube.Kind == mounts.CSIStaging)) {
		sev = finding.Critical
	}
	f := newFinding(DeletedRoot, sev, m, serverDeletedMessage(m, res))
	f.Details = map[string]string{
		"root_type":  "directory",
		"deleted_on": "server",
		"evidence":   res.RootEvidence,
		"probed":     res.Path,
		"connection": m.Dev(),
	}
	return f, true
}

func serverDeletedMessage(m *mounts.Mount, res probe.Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "The directory %s on %s (%s), which this mount shows as its root, was deleted on the server: %s. "+
		"The mount table does not show it (no //deleted): the directory was removed through another client "+
		"(another node or pod, a cleanup job) or it is the root of the FUSE mount itself (ceph-fuse -r, as ceph-csi mounts). ",
		m.Root, m.Source, m.FSType, res.RootEvidence)
	b.WriteString("Processes see an empty directory, and whatever they write goes into the deleted directory " +
		"and is lost once the mount is unmounted. ")
	switch {
	case m.Kube != nil && m.Kube.PodUID != "":
		fmt.Fprintf(&b, "Pod %s sees volume %s empty. Checked with kubelet 1.34, containerd 1.6 and ceph-csi v3.6.2: "+
			"its restarted containers and new pods on the claim start normally and see the empty volume, and kubelet "+
			"raises no event: the data loss has no error anywhere. ", podName(m.Kube), volumeName(m.Kube))
	case m.Kube != nil && m.Kube.Kind == mounts.CSIStaging:
		b.WriteString("Every pod that publishes this volume sees it empty; checked with kubelet 1.34, containerd 1.6 " +
			"and ceph-csi v3.6.2, they start normally and kubelet raises no event. ")
	}
	switch {
	case m.Kube != nil && (m.Kube.PodUID != "" || m.Kube.Kind == mounts.CSIStaging):
		b.WriteString("Fix: stop the writers first (scale down or delete the pods using the volume), restore the " +
			"directory on the server (a snapshot or backup; files written since the deletion are only in the deleted " +
			"directory, readable through this mount until it is unmounted: copy them out first), then delete the pods so " +
			"kubelet unmounts the volume and the CSI driver stages it again from the restored directory.")
	default:
		fmt.Fprintf(&b, "Fix: copy out what was written since the deletion, restore the directory on the server, "+
			"then unmount %s and mount it again: a mount never sees a directory recreated under the same name.", m.Mountpoint)
	}
	return b.String()
}
