package walk

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

// Root is one tree a pass walks.
type Root struct {
	// Path is the directory as the inspected namespace sees it.
	Path string
	// InRoot resolves the path inside the inspected root, following
	// symlinks there (layer directories, which come from the kernel's mount
	// table and are the container runtime's). Without it any symlink in the
	// path is refused (scan roots: the walk's mount bookkeeping needs real
	// paths).
	InRoot bool
	// Base, when set, is a directory above Path (a real path, no symlink
	// between them) that roots of a pass share, such as kubelet's pods/
	// for its pods' volume directories. It is opened once per run, and
	// Path from it in one openat2 that follows no symlink and crosses no
	// mount, so nothing between them can hang; a Path on another mount
	// than Base is opened from the top, as without Base.
	Base string
}

// RootError is a root of a pass that could not be walked.
type RootError struct {
	Index int // into the pass's roots
	Err   error
}

func (e *RootError) Error() string { return e.Err.Error() }
func (e *RootError) Unwrap() error { return e.Err }

// OpenRel opens directory rel (slash separated) below root r, one
// component at a time with O_NOFOLLOW, entering no other mount.
func (w *Walker) OpenRel(r Root, rel string) (int, error) {
	fd, mnt, err := w.OpenRoot(r)
	if err != nil {
		return -1, err
	}
	for _, name := range strings.Split(rel, "/") {
		if name == "" || name == "." {
			continue
		}
		if name == ".." {
			unix.Close(fd)
			return -1, fmt.Errorf("%s: %q leaves the directory", r.Path, rel)
		}
		pfd, err := unix.Openat(fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		cmnt, err := MountID(pfd)
		if err == nil && cmnt != mnt {
			err = fmt.Errorf("%w: %s/%s is another mount", ErrNotScannable, r.Path, rel)
		}
		if err == nil {
			fd, err = unix.Openat(pfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		}
		unix.Close(pfd)
		if err != nil {
			return -1, err
		}
	}
	return fd, nil
}

// ErrNotScannable is wrapped when a root lies on a filesystem the walk must
// not touch.
var ErrNotScannable = errors.New("not scanned")

// hangsOnTheWay returns a mount that may hang among those a lookup of the
// absolute path p crosses (mounted at p or at one of its parents), counting
// the lookups.
func (w *Walker) hangsOnTheWay(p string) *mounts.Mount {
	m, n := w.snap.HangsOnTheWay(p, nil)
	w.mountLookups += uint64(n)
	return m
}

// OpenRoot opens a root directory for reading after checking, from the
// snapshot, that no mount on the way may hang (below its Base, the kernel
// checks that none is crossed).
func (w *Walker) OpenRoot(r Root) (fd, mnt int, err error) {
	if r.Base != "" && !r.InRoot {
		if fd, mnt, ok := w.openFromBase(r); ok {
			return fd, mnt, nil
		}
	}
	p := path.Clean(r.Path)
	if !path.IsAbs(p) {
		return -1, 0, fmt.Errorf("scan root %q: not an absolute path", r.Path)
	}
	if m := w.hangsOnTheWay(p); m != nil {
		return -1, 0, fmt.Errorf("%w: %s lies on %s (%s, mount %d), which could hang", ErrNotScannable, p, m.Mountpoint, m.FSType, m.ID)
	}
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_MAGICLINKS}
	if r.InRoot {
		how.Resolve |= unix.RESOLVE_IN_ROOT
	} else {
		how.Resolve |= unix.RESOLVE_NO_SYMLINKS
	}
	pfd, err := w.root.Open(p, how)
	if err != nil {
		if errors.Is(err, unix.ELOOP) && !r.InRoot {
			return -1, 0, fmt.Errorf("scan root %s: a component is a symlink; give the real path (mount points are real paths): %w", p, err)
		}
		return -1, 0, fmt.Errorf("open %s: %w", p, err)
	}
	defer unix.Close(pfd)
	mnt, err = MountID(pfd)
	if err != nil {
		return -1, 0, fmt.Errorf("statx %s: %w", p, err)
	}
	m := w.snap.ByID[mnt]
	if m == nil {
		return -1, 0, fmt.Errorf("%w: %s is on mount %d, which is not in the mount table read", ErrNotScannable, p, mnt)
	}
	if m.MayHang() {
		return -1, 0, fmt.Errorf("%w: %s is on %s (%s, mount %d), which could hang", ErrNotScannable, p, m.Mountpoint, m.FSType, m.ID)
	}
	fd, err = unix.Openat(pfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, 0, fmt.Errorf("open %s: %w", p, err)
	}
	return fd, mnt, nil
}

// baseDir is a Root.Base opened for a run: fd < 0 when it could not be.
type baseDir struct{ fd, mnt int }

// openFromBase opens r.Path below its Base, opened on first use, in one
// openat2 that crosses no mount and follows no symlink. false: open it from
// the top instead (no Base here, another mount on the way, any error: the
// open from the top reports it).
func (w *Walker) openFromBase(r Root) (fd, mnt int, ok bool) {
	base, p := path.Clean(r.Base), path.Clean(r.Path)
	rel, below := strings.CutPrefix(p, base+"/")
	if !below || w.noOpenat2 { // p is clean and below base: rel has no ".."
		return -1, 0, false
	}
	b, seen := w.bases[base]
	if !seen {
		b.fd, b.mnt, _ = w.OpenRoot(Root{Path: base})
		if w.bases == nil {
			w.bases = map[string]baseDir{}
		}
		w.bases[base] = b
	}
	if b.fd < 0 {
		return -1, 0, false
	}
	fd, err := unix.Openat2(b.fd, rel, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_XDEV | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS})
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		w.noOpenat2 = true
	}
	return fd, b.mnt, err == nil
}

// closeBases closes the Root.Base directories of the run.
func (w *Walker) closeBases() {
	for _, b := range w.bases {
		if b.fd >= 0 {
			unix.Close(b.fd)
		}
	}
	w.bases = nil
}

// MountID reads the mount id of an open descriptor without asking the
// filesystem (AT_STATX_DONT_SYNC: FUSE and NFS answer from their cache).
func MountID(fd int) (int, error) {
	var st unix.Statx_t
	err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_DONT_SYNC|unix.AT_NO_AUTOMOUNT, unix.STATX_MNT_ID, &st)
	if err != nil {
		return 0, err
	}
	return int(st.Mnt_id), nil
}

// openChild opens subdirectory name of dirfd (logical path p) if the walk
// may enter it, or returns -1.
//
// A directory the snapshot has no mount at is opened in one openat2 that
// crosses no mount (RESOLVE_NO_XDEV): it is on the parent's filesystem,
// which the walk is reading already, and if something was mounted there
// after the snapshot was taken the open fails (EXDEV) without touching it.
// A mount point is opened O_PATH first (no filesystem is asked), and read
// only once its mount id is one the snapshot has there and says cannot
// hang.
func (w *Walker) openChild(dirfd, parentMnt int, name, p string, depth int) (fd, mnt int) {
	if depth > w.Limits.MaxDepth {
		w.tooDeep++
		return -1, 0
	}
	w.mountLookups++
	ms := w.snap.ByMountpoint(p)
	for _, m := range ms {
		// A mount point: decided by the snapshot, before any syscall.
		if m.MayHang() || !m.Local() {
			w.SkippedMounts++
			return -1, 0
		}
	}
	if len(ms) == 0 && !w.noOpenat2 {
		fd, err := unix.Openat2(dirfd, name, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_XDEV | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS})
		switch {
		case err == nil:
			return fd, parentMnt
		case errors.Is(err, unix.EXDEV):
			// Mounted after the snapshot was taken: not entered until a
			// snapshot says what it is.
			w.SkippedMounts++
			return -1, 0
		case errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM):
			w.noOpenat2 = true // a system call filter: open as below from now on
		default:
			w.noteErr(p, err)
			return -1, 0
		}
	}
	pfd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		w.noteErr(p, err)
		return -1, 0
	}
	defer unix.Close(pfd)
	mnt, err = MountID(pfd)
	if err != nil {
		w.noteErr(p, err)
		return -1, 0
	}
	if mnt != parentMnt && !slices.ContainsFunc(ms, func(m *mounts.Mount) bool { return m.ID == mnt }) {
		// Mounted after the snapshot was taken: as above.
		w.SkippedMounts++
		return -1, 0
	}
	fd, err = unix.Openat(pfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		w.noteErr(p, err)
		return -1, 0
	}
	return fd, mnt
}

// Unreachable says why directory dir (an overlay layer of mount
// overlayID) cannot be reached from the inspected root: it does not exist
// there, or it leads back into that overlay. "" when it can, or when it
// cannot be looked up without risk (a FUSE or network mount on the way: a
// walk reports that). Call between Begin and End.
func (w *Walker) Unreachable(dir string, overlayID int) string {
	p := path.Clean(dir)
	if w.hangsOnTheWay(p) != nil {
		return ""
	}
	fd, err := w.root.Open(p, unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	switch {
	case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR):
		return p + " does not exist here"
	case err != nil:
		return ""
	}
	defer unix.Close(fd)
	if mnt, err := MountID(fd); err == nil && mnt == overlayID {
		return p + " leads into the overlay itself"
	}
	return ""
}
