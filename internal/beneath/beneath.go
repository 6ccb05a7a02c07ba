// Package beneath lists what a mount hides: the entries of the directory a
// mount was made over, in the filesystem underneath.
//
// It reads through a detached clone of the parent mount without its
// submounts (open_tree(2) with OPEN_TREE_CLONE and no AT_RECURSIVE): in
// the clone the mount point is the plain directory underneath. The clone
// belongs to no mount namespace, is seen by no other process and goes when
// its descriptor is closed, so nothing of the system changes. It needs
// CAP_SYS_ADMIN (the kernel's may_mount), and the kernel clones only mounts
// of the caller's own mount namespace: a mount reached through
// /proc/<pid>/root of a process in another namespace is refused (EINVAL).
//
// It never follows a symlink (the path inside the clone is resolved with
// RESOLVE_NO_SYMLINKS|RESOLVE_BENEATH), never crosses into another mount
// (the clone has none, and RESOLVE_NO_XDEV) and reads at most a bounded
// number of entries. It does not decide whether the parent filesystem is
// safe to touch: callers must not pass one that may hang (FUSE, network).
package beneath

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/resolve"
	"github.com/mountwatchd/mountwatchd/internal/walk"
)

// Errors of List; each is wrapped with the syscall's errno.
var (
	// ErrNotPermitted: open_tree(2) was refused with EPERM: no
	// CAP_SYS_ADMIN, or a system call filter that blocks it.
	ErrNotPermitted = errors.New("open_tree(OPEN_TREE_CLONE) not permitted")
	// ErrMoved: the path no longer leads to the mount it was given for
	// (unmounted, or covered since the table was read).
	ErrMoved = errors.New("the mount point leads to another mount")
	// ErrNotDirectory: there is no directory underneath (a file was
	// mounted over, or the entry is gone from the filesystem underneath).
	ErrNotDirectory = errors.New("no directory underneath")
)

// Listing is what the directory underneath holds.
type Listing struct {
	// Names are the entries read, sorted, without "." and "..": all of
	// them unless More.
	Names []string
	// More is set when the directory holds more than the max entries
	// List was allowed to read.
	More bool
}

// Tree is a detached clone of one mount without its submounts. Listing
// many directories of one filesystem through one Tree costs one clone:
// dropping a clone waits for an RCU grace period, which is most of what a
// clone costs.
type Tree struct {
	fd         int
	mountpoint string
}

// Clone clones the mount with id mountID, mounted at mountpoint in this
// process's mount namespace, without its submounts. The path is resolved
// from / following no symlink, and must still lead to that mount.
func Clone(mountpoint string, mountID int) (*Tree, error) {
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /: %w", err)
	}
	defer unix.Close(root)
	mp := strings.TrimPrefix(mountpoint, "/")
	if mp == "" {
		mp = "."
	}
	fd, err := resolve.Openat2(root, mp, &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return nil, fmt.Errorf("%w: open %s: %w", ErrMoved, mountpoint, err)
	}
	defer unix.Close(fd)
	var st unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_DONT_SYNC|unix.AT_NO_AUTOMOUNT, unix.STATX_MNT_ID, &st); err != nil {
		return nil, fmt.Errorf("statx %s: %w", mountpoint, err)
	}
	if int(st.Mnt_id) != mountID {
		return nil, fmt.Errorf("%w: %s is mount %d, not %d", ErrMoved, mountpoint, st.Mnt_id, mountID)
	}
	clone, err := unix.OpenTree(fd, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("%w: %w", ErrNotPermitted, err)
		}
		return nil, fmt.Errorf("open_tree %s: %w", mountpoint, err)
	}
	return &Tree{fd: clone, mountpoint: mountpoint}, nil
}

// Close drops the clone: it goes with its last descriptor.
func (t *Tree) Close() error { return unix.Close(t.fd) }

// List lists the directory rel (relative to the cloned mount's root,
// clean, without "..") in the clone, reading at most max entries.
func (t *Tree) List(rel string, max int) (Listing, error) {
	if rel == "" {
		rel = "."
	}
	if rel == ".." || strings.HasPrefix(rel, "../") || strings.HasPrefix(rel, "/") || strings.Contains(rel, "/../") || strings.HasSuffix(rel, "/..") {
		return Listing{}, fmt.Errorf("beneath: path %q leaves the mount", rel)
	}
	dir, err := openDir(t.fd, rel)
	if err != nil {
		if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ENOENT) {
			return Listing{}, fmt.Errorf("%w: %s in %s: %w", ErrNotDirectory, rel, t.mountpoint, err)
		}
		return Listing{}, fmt.Errorf("open %s in a clone of %s: %w", rel, t.mountpoint, err)
	}
	defer unix.Close(dir)
	ents, err := walk.ReadDir(dir, max+1)
	if err != nil {
		return Listing{}, fmt.Errorf("read %s in a clone of %s: %w", rel, t.mountpoint, err)
	}
	l := Listing{More: len(ents) > max}
	for _, e := range ents[:min(len(ents), max)] {
		l.Names = append(l.Names, e.Name)
	}
	slices.Sort(l.Names)
	return l, nil
}

// openDir opens rel below the clone's root as a directory, following no
// symlink and crossing no mount; where a system call filter refuses
// openat2 it resolves the path itself (internal/resolve), with the same
// rules for a path that has no "..".
func openDir(clone int, rel string) (int, error) {
	fd, err := unix.Openat2(clone, rel, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV})
	if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) {
		return fd, err
	}
	p, err := resolve.Openat2(clone, rel, &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return -1, err
	}
	defer unix.Close(p)
	return unix.Openat(p, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
}
