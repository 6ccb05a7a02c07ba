package walk

import (
	"errors"
	"strconv"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ----- xattrs, read relative to the parent's descriptor, never following a
// symlink.

// Syscall numbers of listxattrat and getxattrat (Linux 6.13, the same on
// every architecture).
const (
	sysGetxattrat  = 464
	sysListxattrat = 465
)

// noXattrAt is set once getxattrat/listxattrat (Linux 6.13) are found
// missing: ENOSYS from an older kernel, or EPERM from a seccomp profile that
// predates them (containerd's RuntimeDefault answers unknown syscalls with
// EPERM). Neither call returns EPERM otherwise; the l*xattr fallback then
// reports any real error.
var noXattrAt atomic.Bool

// procPath names an entry through our own descriptor of its directory; the
// only component resolved is name, with the *xattr "l" calls not following
// it.
func (e *Entry) procPath() string {
	return e.w.procfs + "/self/fd/" + strconv.Itoa(e.Dirfd) + "/" + e.Name
}

// ListXattrs returns the entry's xattr names.
func (e *Entry) ListXattrs() ([]string, error) {
	if len(e.w.xbuf) == 0 {
		e.w.xbuf = make([]byte, 4096)
	}
	buf := e.w.xbuf
	for {
		n, err := e.listxattr(buf)
		if errors.Is(err, unix.ERANGE) && len(buf) < 64<<10 {
			buf = make([]byte, 64<<10) // XATTR_LIST_MAX
			continue
		}
		if err != nil {
			if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.ENODATA) {
				return nil, nil
			}
			return nil, err
		}
		var names []string
		for rest := buf[:n]; len(rest) > 0; {
			i := indexNUL(rest)
			if i < 0 {
				i = len(rest)
			}
			if i > 0 {
				names = append(names, string(rest[:i]))
			}
			rest = rest[min(i+1, len(rest)):]
		}
		return names, nil
	}
}

func (e *Entry) listxattr(buf []byte) (int, error) {
	if err := e.Guard(); err != nil {
		return 0, err
	}
	if !noXattrAt.Load() {
		name, err := unix.BytePtrFromString(e.Name)
		if err != nil {
			return 0, err
		}
		var p unsafe.Pointer
		if len(buf) > 0 {
			p = unsafe.Pointer(&buf[0])
		}
		n, _, errno := unix.Syscall6(sysListxattrat, uintptr(e.Dirfd), uintptr(unsafe.Pointer(name)),
			unix.AT_SYMLINK_NOFOLLOW, uintptr(p), uintptr(len(buf)), 0)
		if errno != unix.ENOSYS && errno != unix.EPERM {
			if errno != 0 {
				return 0, errno
			}
			return int(n), nil
		}
		noXattrAt.Store(true)
	}
	return unix.Llistxattr(e.procPath(), buf)
}

// xattrArgs is struct xattr_args of getxattrat.
type xattrArgs struct {
	value uint64
	size  uint32
	flags uint32
}

// GetXattr returns the value of xattr attr, or nil when it is not set.
func (e *Entry) GetXattr(attr string) ([]byte, error) {
	buf := make([]byte, 64)
	n, err := e.getxattr(attr, buf)
	if errors.Is(err, unix.ERANGE) {
		buf = make([]byte, 64<<10)
		n, err = e.getxattr(attr, buf)
	}
	switch {
	case err == nil:
		return buf[:n], nil
	case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP):
		return nil, nil
	}
	return nil, err
}

func (e *Entry) getxattr(attr string, buf []byte) (int, error) {
	if err := e.Guard(); err != nil {
		return 0, err
	}
	if !noXattrAt.Load() {
		name, err := unix.BytePtrFromString(e.Name)
		if err != nil {
			return 0, err
		}
		an, err := unix.BytePtrFromString(attr)
		if err != nil {
			return 0, err
		}
		args := xattrArgs{value: uint64(uintptr(unsafe.Pointer(&buf[0]))), size: uint32(len(buf))}
		n, _, errno := unix.Syscall6(sysGetxattrat, uintptr(e.Dirfd), uintptr(unsafe.Pointer(name)),
			unix.AT_SYMLINK_NOFOLLOW, uintptr(unsafe.Pointer(an)), uintptr(unsafe.Pointer(&args)), unsafe.Sizeof(args))
		if errno != unix.ENOSYS && errno != unix.EPERM {
			if errno != 0 {
				return 0, errno
			}
			return int(n), nil
		}
		noXattrAt.Store(true)
	}
	return unix.Lgetxattr(e.procPath(), attr, buf)
}

// TrustedXattrsVisible reports whether this process can read trusted.*
// xattrs: CAP_SYS_ADMIN in its effective set.
func TrustedXattrsVisible() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[unix.CAP_SYS_ADMIN/32].Effective&(1<<(unix.CAP_SYS_ADMIN%32)) != 0
}
