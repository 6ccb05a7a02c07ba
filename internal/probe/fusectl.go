package probe

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/flagname"
)

// DefaultFusectl is where the FUSE control filesystem is mounted.
const DefaultFusectl = "/sys/fs/fuse/connections"

const fusectlMagic = 0x65735543

// ErrNoFusectl means the FUSE control filesystem is not mounted.
var ErrNoFusectl = errors.New("fusectl is not mounted")

// EnsureFusectl checks that fusectl is mounted at dir and, only when mount
// is set (--probe.mount-fusectl), mounts it there if it is not. Mounting it
// in our own mount namespace is enough: it lists every FUSE connection.
func EnsureFusectl(dir string, mount bool) error {
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		return fmt.Errorf("fusectl at %s: %w", dir, err)
	}
	if sfs.Type == fusectlMagic {
		return nil
	}
	if !mount {
		return fmt.Errorf("%w at %s (mount -t fusectl none %s, or run with --"+flagname.ProbeMountFusectl+")", ErrNoFusectl, dir, dir)
	}
	if err := unix.Mount("none", dir, "fusectl", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount fusectl on %s: %w", dir, err)
	}
	return nil
}

// FuseWaiting reads how many requests of FUSE connection minor are waiting
// for an answer. Reading fusectl never blocks.
func FuseWaiting(dir string, minor int) (int, error) {
	data, err := os.ReadFile(filepath.Join(dir, strconv.Itoa(minor), "waiting"))
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("fusectl waiting of connection %d: %w", minor, err)
	}
	return n, nil
}
