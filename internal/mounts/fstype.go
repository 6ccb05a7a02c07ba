package mounts

import (
	"slices"
	"strings"
)

// The filesystem-type policy, in one place: which filesystems have a server
// that can stop answering (probed, never walked into), which are local disks
// and memory (a scan may enter them), and which are kernel pseudo
// filesystems (stacked by design).

// remoteFSTypes are the filesystems, besides FUSE, whose server lives in
// another process, on the host of a VM or on another machine: a syscall on
// them can block for as long as it does not answer.
var remoteFSTypes = []string{
	"nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "9p", "afs", "lustre",
	"gpfs", "beegfs", "gfs2", "ocfs2", "virtiofs",
}

// localFSTypes are the filesystems a scan enters when it finds one mounted
// inside the tree it scans. Anything else (FUSE, remote, pseudo
// filesystems, overlay, whose layers are scanned where they live) is not
// entered.
var localFSTypes = map[string]bool{
	"tmpfs": true, "ramfs": true, "ext2": true, "ext3": true, "ext4": true, "xfs": true, "btrfs": true,
	"zfs": true, "f2fs": true, "vfat": true, "exfat": true, "ntfs3": true, "jfs": true, "reiserfs": true,
	"squashfs": true, "erofs": true, "iso9660": true, "udf": true, "bcachefs": true, "nilfs2": true,
}

// pseudoFSTypes are kernel pseudo filesystems and autofs, which runtimes and
// systemd mount again inside every new namespace (and autofs under every
// automount): routinely stacked on themselves, nothing lost when hidden.
var pseudoFSTypes = map[string]bool{
	"proc": true, "sysfs": true, "devtmpfs": true, "devpts": true, "mqueue": true, "cgroup": true, "cgroup2": true,
	"securityfs": true, "debugfs": true, "tracefs": true, "bpf": true, "binfmt_misc": true, "configfs": true,
	"fusectl": true, "pstore": true, "hugetlbfs": true, "nsfs": true, "autofs": true, "efivarfs": true, "selinuxfs": true,
}

// DefaultProbedFSTypes are the types probed by default: FUSE ("fuse.*"
// matches every subtype) and every remote filesystem, the ones that can
// hang.
func DefaultProbedFSTypes() []string {
	return append([]string{"fuse", "fuse.*", "fuseblk"}, remoteFSTypes...)
}

// MatchFSType reports whether fstype is one of types, where "fuse.*"
// matches every FUSE subtype.
func MatchFSType(types []string, fstype string) bool {
	for _, t := range types {
		if t == fstype || (strings.HasSuffix(t, ".*") && strings.HasPrefix(fstype, strings.TrimSuffix(t, "*"))) {
			return true
		}
	}
	return false
}

// MayHang reports whether touching anything on m could block on a server:
// FUSE, remote filesystems and autofs (which mounts on access).
func (m *Mount) MayHang() bool { return m.FUSE || m.Network || m.FSType == "autofs" }

// Local reports whether m is a local disk or memory filesystem, which a
// scan may enter.
func (m *Mount) Local() bool { return localFSTypes[m.FSType] }

// Pseudo reports whether m is a kernel pseudo filesystem or autofs.
func (m *Mount) Pseudo() bool { return pseudoFSTypes[m.FSType] }

func isRemote(fstype string) bool { return slices.Contains(remoteFSTypes, fstype) }
