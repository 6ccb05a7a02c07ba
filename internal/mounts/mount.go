package mounts

import (
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// Suffixes the kernel appends to deleted paths in mountinfo.
const (
	DeletedRootSuffix  = "//deleted"  // root field: the source dentry was unlinked
	DeletedMountSuffix = " (deleted)" // mount point field, raw "\040(deleted)"
)

// Mount is one line of the mount table, classified once when the snapshot is
// taken so that no check has to parse fstype, source or path again.
type Mount struct {
	mountinfo.Info

	// Line is the 1-based line of the mount table this mount came from.
	Line int

	// FUSE is set for fuse, fuse.* and fuseblk mounts.
	FUSE bool
	// CephFUSE is set for fuse.ceph-fuse mounts and FUSE mounts whose source
	// is ceph-fuse.
	CephFUSE bool
	// Overlay is set for overlayfs mounts.
	Overlay bool
	// Network is set for network filesystems (nfs, cifs, the ceph kernel
	// client, ...), which can hang or go stale like FUSE.
	Network bool

	// Kube is the Kubernetes context parsed from the mount point; nil when the
	// mount is not under the kubelet root.
	Kube *Kube
}

// Dev is the mount's st_dev as "major:minor". Every bind mount of one
// filesystem (one FUSE connection) shares it.
func (m *Mount) Dev() string {
	return strconv.Itoa(m.Major) + ":" + strconv.Itoa(m.Minor)
}

func classify(m *Mount) {
	fstype := m.FSType
	m.FUSE = fstype == "fuse" || fstype == "fuseblk" || strings.HasPrefix(fstype, "fuse.")
	m.CephFUSE = fstype == "fuse.ceph-fuse" || (m.FUSE && m.Source == "ceph-fuse")
	m.Overlay = fstype == "overlay"
	m.Network = isRemote(fstype)
}
