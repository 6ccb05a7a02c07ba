// Package resolve opens a path below a directory descriptor as openat2(2)
// does with RESOLVE_IN_ROOT or RESOLVE_NO_SYMLINKS, and keeps working where
// openat2 is refused.
//
// openat2 (Linux 5.6) is refused by system call filters that do not know
// it: systemd answers a call its SystemCallFilter= does not know with ENOSYS
// (systemd 252's @system-service under mountwatchd.service does that), and
// container runtimes' default seccomp profiles answer EPERM. There every
// open would fail, so Openat2 then resolves the path one component at a
// time with openat(O_PATH|O_NOFOLLOW), reading each symlink itself: the
// same rules, without the kernel's protection against a directory renamed
// out of the root during the walk. Use openat2 directly when a fallback is
// not wanted.
package resolve

import (
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// maxSymlinks is the kernel's limit on symlinks followed in one lookup.
const maxSymlinks = 40

// refused is set once openat2 was refused; later calls go straight to the
// fallback.
var refused atomic.Bool

// supported are the RESOLVE_* flags the fallback implements.
const supported = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// Openat2 is openat2(dirfd, path, how). When openat2 fails with ENOSYS or
// EPERM (a system call filter that does not allow it), and how asks for an
// O_PATH descriptor with no RESOLVE_* flag but RESOLVE_IN_ROOT,
// RESOLVE_NO_SYMLINKS and RESOLVE_NO_MAGICLINKS, it resolves the path
// itself; otherwise it returns openat2's error.
func Openat2(dirfd int, path string, how *unix.OpenHow) (int, error) {
	if !canFallBack(how) {
		return unix.Openat2(dirfd, path, how)
	}
	if !refused.Load() {
		fd, err := unix.Openat2(dirfd, path, how)
		if err != unix.ENOSYS && err != unix.EPERM {
			return fd, err
		}
		refused.Store(true)
	}
	return fallback(dirfd, path, how)
}

func canFallBack(how *unix.OpenHow) bool {
	return how.Flags&unix.O_PATH != 0 && how.Resolve&^uint64(supported) == 0
}

// fallback resolves path below dirfd one component at a time. Every
// directory on the way is held open, so ".." returns to the descriptor it
// came from and never leaves the root (RESOLVE_IN_ROOT). A symlink fails
// with ELOOP under RESOLVE_NO_SYMLINKS; under RESOLVE_IN_ROOT its target is
// resolved below the root (an absolute target from the root). A magic link
// of /proc is read as the path it shows, never jumped through.
func fallback(dirfd int, path string, how *unix.OpenHow) (int, error) {
	if path == "" {
		return -1, unix.ENOENT // as openat2 without AT_EMPTY_PATH
	}
	w := walker{inRoot: how.Resolve&unix.RESOLVE_IN_ROOT != 0, noSymlinks: how.Resolve&unix.RESOLVE_NO_SYMLINKS != 0,
		noFollowLast: how.Flags&unix.O_NOFOLLOW != 0}
	root, err := unix.Openat(dirfd, ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	w.stack = []int{root} // stack[0] is the root; the last is where we are
	defer w.close()
	if strings.HasPrefix(path, "/") && !w.inRoot {
		abs, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, err
		}
		w.stack = append(w.stack, abs)
	}
	w.todo = splitPath(path)
	for len(w.todo) > 0 {
		if err := w.step(); err != nil {
			return -1, err
		}
	}
	out := w.stack[len(w.stack)-1]
	if how.Flags&unix.O_DIRECTORY != 0 {
		var st unix.Stat_t
		if err := unix.Fstat(out, &st); err != nil {
			return -1, err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return -1, unix.ENOTDIR
		}
	}
	// Hand out a descriptor of our own, with the caller's close-on-exec.
	flags := unix.F_DUPFD
	if how.Flags&unix.O_CLOEXEC != 0 {
		flags = unix.F_DUPFD_CLOEXEC
	}
	return unix.FcntlInt(uintptr(out), flags, 0)
}

// walker is one fallback resolution: the directories on the way, held
// open, and the components still to resolve.
type walker struct {
	inRoot, noSymlinks, noFollowLast bool

	stack []int    // stack[0] is the root; the last is where we are
	todo  []string // components still to resolve
	links int      // symlinks followed
}

func (w *walker) close() {
	for _, fd := range w.stack {
		unix.Close(fd)
	}
}

// step resolves the next component.
func (w *walker) step() error {
	name := w.todo[0]
	w.todo = w.todo[1:]
	cur := w.stack[len(w.stack)-1]
	switch name {
	case ".":
		return nil
	case "..":
		if len(w.stack) > 1 {
			unix.Close(cur)
			w.stack = w.stack[:len(w.stack)-1]
			return nil
		}
		if w.inRoot {
			return nil // ".." of the root is the root
		}
	}
	fd, err := unix.Openat(cur, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return err
	}
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		if len(w.todo) == 0 && w.noFollowLast {
			w.stack = append(w.stack, fd) // O_PATH|O_NOFOLLOW: the link itself
			return nil
		}
		return w.follow(fd)
	case len(w.todo) > 0 && st.Mode&unix.S_IFMT != unix.S_IFDIR:
		unix.Close(fd)
		return unix.ENOTDIR
	}
	w.stack = append(w.stack, fd)
	return nil
}

// follow reads the symlink open as fd (and closes it) and puts its target
// before the components still to resolve.
func (w *walker) follow(fd int) error {
	target, err := readlink(fd)
	unix.Close(fd)
	if err != nil {
		return err
	}
	w.links++
	if w.noSymlinks || !w.inRoot || w.links > maxSymlinks {
		// Without RESOLVE_IN_ROOT, following a link could leave
		// the tree: only the two modes callers use are emulated.
		return unix.ELOOP
	}
	if strings.HasPrefix(target, "/") {
		for _, fd := range w.stack[1:] {
			unix.Close(fd)
		}
		w.stack = w.stack[:1]
	}
	w.todo = append(splitPath(target), w.todo...)
	return nil
}

func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}

// readlink reads the target of the symlink open as fd (O_PATH|O_NOFOLLOW).
func readlink(fd int) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(fd, "", buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}
