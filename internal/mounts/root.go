package mounts

import (
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/resolve"
)

// Root is the inspected namespace's root directory, held open (O_PATH): the
// one way this process reaches a path of that namespace. Every path is
// resolved below it with openat2 (package resolve), so ".." and, with
// RESOLVE_IN_ROOT, absolute symlinks stay inside the namespace.
type Root struct {
	fd   int
	path string // how this process names the root: / or <procfs>/<pid>/root
}

// OpenRoot opens the inspected namespace's root: the start of every path
// the probing and scanning checks resolve. Its error wraps
// ErrNamespaceUnreachable and names what is missing.
func (h Host) OpenRoot() (*Root, error) { return h.FS().Open() }

// OpenRootAt opens dir as the inspected namespace's root, for a caller that
// has only its HostFS as a string: / for our own namespace, <procfs>/<pid>/root for
// another process's (the prober's FS, which may run in a helper process).
// Its error wraps ErrNamespaceUnreachable and names what is missing.
func OpenRootAt(dir string) (*Root, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, rootError(dir, path.Clean(dir) != "/", err)
	}
	return &Root{fd: fd, path: dir}, nil
}

// FD is the root's descriptor, valid until Close.
func (r *Root) FD() int { return r.fd }

// Path is how this process names the root (/ or <procfs>/<pid>/root).
func (r *Root) Path() string { return r.path }

// Close releases the root's descriptor.
func (r *Root) Close() {
	if r.fd >= 0 {
		unix.Close(r.fd)
		r.fd = -1
	}
}

// Open opens path p of the namespace (absolute, or taken as relative to the
// root) below the root with how's flags and resolve rules, as openat2 does.
func (r *Root) Open(p string, how unix.OpenHow) (int, error) {
	return resolve.Openat2(r.fd, RelPath(p), &how)
}

// RelPath is absolute path p relative to the root: "." for the root itself.
func RelPath(p string) string {
	rel := strings.TrimPrefix(path.Clean("/"+p), "/")
	if rel == "" {
		return "."
	}
	return rel
}
