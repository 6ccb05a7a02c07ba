package remedy

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

const fusectlMagic = 0x65735543

// fusectl is the FUSE control filesystem of the inspected namespace, held
// open below its root: every path is resolved with openat2
// (RESOLVE_IN_ROOT, no symlinks), so nothing leads out of it.
type fusectl struct {
	root *mounts.Root
	dir  string // as the inspected namespace names it
}

// openFusectl opens the inspected root and checks that dir is fusectl.
func openFusectl(h mounts.Host, dir string) (*fusectl, error) {
	root, err := h.OpenRoot()
	if err != nil {
		return nil, err
	}
	fc := &fusectl{root: root, dir: dir}
	fd, err := fc.open("", unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("fusectl at %s: %w", h.FS().Path(dir), err)
	}
	defer unix.Close(fd)
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		root.Close()
		return nil, fmt.Errorf("fusectl at %s: %w", h.FS().Path(dir), err)
	}
	if sfs.Type != fusectlMagic {
		root.Close()
		return nil, fmt.Errorf("fusectl is not mounted at %s in the inspected namespace (mount -t fusectl none %s there)", h.FS().Path(dir), dir)
	}
	return fc, nil
}

func (fc *fusectl) close() { fc.root.Close() }

func (fc *fusectl) open(rel string, flags int) (int, error) {
	return fc.root.Open(path.Join(fc.dir, rel), unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC | unix.O_NOFOLLOW),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
}

// identity is connection minor's identity: its number and when its
// fusectl directory was made (the connection's creation), so that a new
// connection that reuses the minor is another one.
func (fc *fusectl) identity(dev string, minor int) (string, error) {
	fd, err := fc.open(strconv.Itoa(minor), unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return "", fmt.Errorf("connection %s in fusectl: %w", dev, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s@%d.%09d", dev, st.Ctim.Sec, st.Ctim.Nsec), nil
}

// waiting reads the connection's waiting request count. Reading fusectl
// never blocks.
func (fc *fusectl) waiting(minor int) (int, error) {
	fd, err := fc.open(strconv.Itoa(minor)+"/waiting", unix.O_RDONLY)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	b := make([]byte, 32)
	n, err := unix.Read(fd, b)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b[:n])))
}

// openAbort opens the connection's abort file for writing: the one file
// remediation writes. Opening writes nothing; it says whether we may.
func (fc *fusectl) openAbort(minor int) (int, error) {
	fd, err := fc.open(strconv.Itoa(minor)+"/abort", unix.O_WRONLY)
	if err != nil {
		return -1, fmt.Errorf("open %s for writing: %w%s", path.Join(fc.dir, strconv.Itoa(minor), "abort"), err, accessHint(err))
	}
	return fd, nil
}

func accessHint(err error) string {
	switch {
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return " (the file is writable by its owner, root, only: run as uid 0)"
	case errors.Is(err, unix.EROFS):
		return " (fusectl is mounted read-only where the inspected namespace sees it)"
	}
	return ""
}
