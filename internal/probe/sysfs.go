package probe

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

// SysFS probes with openat2(O_PATH, RESOLVE_NO_SYMLINKS), fstatfs and
// fstat, resolving the path below the inspected root (mounts.Root, through
// package resolve, which still resolves where a system call filter refuses
// openat2, as systemd's does under the unit). fstatfs is the request a FUSE
// server must answer (the kernel may answer stat from its attribute cache);
// fstat gives the device, which tells whether the path still leads to the
// mount that was meant. A deep request then reads the root directory's
// first entries (readDir).
//
// SysFS makes its syscalls on the calling thread, which a FUSE server that
// read the request and never answers holds in uninterruptible sleep: only
// a helper process (HelperFS, ServeHelper) should use it.
type SysFS struct{}

// ErrRootGone means the server answered a probe's statfs or stat of the
// mount's root, which the path had led to, with ENOENT: the directory the
// mount shows no longer exists on the server (sshfs's remote directory
// removed). The mount table does not change.
var ErrRootGone = errors.New("the server says the mount's root directory does not exist")

// Probe implements FS: a probe without the deep request.
func (s SysFS) Probe(root, path string) (uint64, error) {
	a, err := s.ProbeRequest(Request{Root: root, Path: path})
	return a.Dev, err
}

// ProbeRequest implements RequestFS.
func (SysFS) ProbeRequest(req Request) (Answer, error) {
	root, p := req.Root, req.Path
	// Opening the namespace's root is our part of the path: its failure
	// (no CAP_SYS_PTRACE, the process exited) says nothing of the mount.
	r, err := mounts.OpenRootAt(root)
	if err != nil {
		return Answer{}, err
	}
	defer r.Close()
	fd, err := r.Open(p, unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return Answer{}, fmt.Errorf("open %s: %w", p, err)
	}
	defer unix.Close(fd)
	// From here on the path has led to the mount's root: an ENOENT is
	// the server's answer about that directory, not a path that moved.
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return Answer{}, rootErr("statfs", p, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return Answer{}, rootErr("stat", p, err)
	}
	a := Answer{Dev: st.Dev, Mode: st.Mode, Nlink: uint64(st.Nlink)}
	if req.Deep && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		a.Listed = true
		if a.Names, a.Gone, err = readDir(fd); err != nil {
			return Answer{}, fmt.Errorf("readdir %s: %w", p, err)
		}
	}
	return a, nil
}

func rootErr(op, p string, err error) error {
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%s %s: %w (%w)", op, p, ErrRootGone, err)
	}
	return fmt.Errorf("%s %s: %w", op, p, err)
}

// rootDeleted says whether an answered probe found the mount's root
// directory deleted on the server, and what showed it. A directory's link
// count is at least 1 while it has a name (POSIX: 2, "." and its entry;
// some FUSE servers say 1); 0 means it was removed, which the mount table
// never shows when another client removed it or the removed directory is
// the root of the FUSE mount itself (ceph-fuse -r, kubelet's view of a
// CephFS volume). A FUSE server that never fills in the link count (go-fuse
// leaves it 0 unless its Getattr sets it) says 0 for every directory: when
// the probe listed the root, a deleted directory is also empty (only an
// empty directory can be removed), so a listing with names clears it. A
// listing the server answers with ENOENT is a deleted root whatever the
// link count (sshfs answers stat from its cache, with link count 1).
func rootDeleted(a Answer) (bool, string) {
	switch {
	case a.Mode&unix.S_IFMT != unix.S_IFDIR:
		return false, ""
	case a.Gone:
		return true, fmt.Sprintf("the server answers the listing of its root with ENOENT (link count %d)", a.Nlink)
	case a.Nlink != 0:
		return false, ""
	case a.Listed && a.Names > 0:
		return false, "" // a server that does not count links: it lists names
	case a.Listed:
		return true, "its root's link count is 0 and it lists no entries"
	}
	return true, "its root's link count is 0 (its listing not read: one per connection, none on --probe.shallow-fstypes)"
}

// classifyProbe turns what a probe of m returned into its Result.
func classifyProbe(m *mounts.Mount, a Answer, err error) Result {
	dev := a.Dev
	pr := Result{Path: m.Mountpoint}
	if errors.Is(err, mounts.ErrNamespaceUnreachable) {
		pr.State, pr.Err, pr.Reason = NotProbed, err, "the inspected namespace could not be reached"
		return pr
	}
	if errors.Is(err, ErrHelper) {
		pr.State, pr.Err, pr.Reason = NotProbed, err, "the probe helper process failed"
		return pr
	}
	if errors.Is(err, ErrRootGone) {
		// The server answered, about the root the path led to.
		pr.State, pr.Err, pr.RootDeleted = OK, err, true
		pr.RootEvidence = "the server answers the statfs or stat of its root with ENOENT"
		return pr
	}
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			switch errno {
			case syscall.ENOENT, syscall.ENOTDIR, syscall.ELOOP, syscall.EXDEV:
				pr.State, pr.Err, pr.Reason = Unreachable, err, "the mount point no longer leads to this mount"
				return pr
			}
		}
		pr.State, pr.Errno, pr.Err = Failed, errno, err
		return pr
	}
	if unix.Major(dev) != uint32(m.Major) || unix.Minor(dev) != uint32(m.Minor) {
		pr.State, pr.Reason = Unreachable, fmt.Sprintf("the mount point leads to device %d:%d, not this mount", unix.Major(dev), unix.Minor(dev))
		return pr
	}
	pr.State = OK
	pr.RootDeleted, pr.RootEvidence = rootDeleted(a)
	return pr
}
