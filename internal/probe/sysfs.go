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

// Probe implements FS: a probe without the deep request.
func (s SysFS) Probe(root, path string) (uint64, error) {
	return s.ProbeRequest(Request{Root: root, Path: path})
}

// ProbeRequest implements RequestFS.
func (SysFS) ProbeRequest(req Request) (uint64, error) {
	root, p := req.Root, req.Path
	// Opening the namespace's root is our part of the path: its failure
	// (no CAP_SYS_PTRACE, the process exited) says nothing of the mount.
	r, err := mounts.OpenRootAt(root)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	fd, err := r.Open(p, unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", p, err)
	}
	defer unix.Close(fd)
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", p, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", p, err)
	}
	if req.Deep && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if err := readDir(fd); err != nil {
			return 0, fmt.Errorf("readdir %s: %w", p, err)
		}
	}
	return st.Dev, nil
}

// classifyProbe turns what a probe of m returned into its Result.
func classifyProbe(m *mounts.Mount, dev uint64, err error) Result {
	pr := Result{Path: m.Mountpoint}
	if errors.Is(err, mounts.ErrNamespaceUnreachable) {
		pr.State, pr.Err, pr.Reason = NotProbed, err, "the inspected namespace could not be reached"
		return pr
	}
	if errors.Is(err, ErrHelper) {
		pr.State, pr.Err, pr.Reason = NotProbed, err, "the probe helper process failed"
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
	return pr
}
