package mounts

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/mountwatchd/mountwatchd/internal/layout"
	"golang.org/x/sys/unix"
)

// ErrNamespaceUnreachable is wrapped by every error of reaching the inspected
// namespace's files (opening <procfs>/<pid>/root): a failure of ours, never
// of a mount, so it is a check error and never a finding.
var ErrNamespaceUnreachable = errors.New("cannot reach the inspected mount namespace")

// Defaults for Host.
const (
	DefaultProcfs      = "/proc"
	DefaultKubeletRoot = "/var/lib/kubelet"
	DefaultPodLogDir   = "/var/log/pods"
)

// Host names the mount namespace to inspect and says how to reach its files.
//
// A DaemonSet running with the host PID namespace inspects the node through
// PID 1: the node's table is /proc/1/mountinfo and a node path p is reachable
// as /proc/1/root/p. With PID 0 the process inspects its own namespace.
// KubeletRoot, PodLogDir, ContainerdRoot and ContainerdSnapshots are paths
// as the inspected namespace sees them. An empty KubeletRoot,
// ContainerdRoot or ContainerdSnapshots is found by package layout when the
// table is read (Snapshot.Layout says what was found and from what); one
// given always wins.
type Host struct {
	Procfs      string
	PID         int
	KubeletRoot string
	PodLogDir   string
	// ContainerdRoot and ContainerdSnapshots are containerd's root and its
	// overlayfs snapshots directory.
	ContainerdRoot      string
	ContainerdSnapshots string
	// MaxTableBytes is the most bytes read from the mount table
	// (0: DefaultMaxTableBytes).
	MaxTableBytes int64
	// Processes is the run's memory of what the node's kubelet and
	// containerd processes said (their command lines, read when no flag
	// gives a directory), made once per daemon or --once run; nil reads
	// them afresh on every read of a live table.
	Processes *layout.ProcessCache
}

// WithDefaults is h with the default of every field left empty.
func (h Host) WithDefaults() Host {
	if h.Procfs == "" {
		h.Procfs = DefaultProcfs
	}
	if h.KubeletRoot == "" {
		h.KubeletRoot = DefaultKubeletRoot
	}
	if h.PodLogDir == "" {
		h.PodLogDir = DefaultPodLogDir
	}
	return h
}

func (h Host) proc() string {
	if h.PID == 0 {
		return filepath.Join(h.WithDefaults().Procfs, "self")
	}
	return filepath.Join(h.WithDefaults().Procfs, strconv.Itoa(h.PID))
}

// MountinfoPath is the mount table of the inspected namespace.
func (h Host) MountinfoPath() string { return filepath.Join(h.proc(), "mountinfo") }

// HostFS is the inspected mount namespace's root as this process reaches
// it: "/" for our own namespace, <procfs>/<pid>/root for another process's
// (prometheus/procfs's rooted FS). Its Path is the one way a path of that
// namespace (kubelet's root, the pod log directory, a config file, a
// cgroup or containerd directory) becomes a path this process opens; Open
// holds the root open as a Root, which resolves paths below it without
// following a symlink out of it.
type HostFS string

// FS is h's namespace root.
func (h Host) FS() HostFS {
	if h.PID == 0 {
		return "/"
	}
	return HostFS(filepath.Join(h.proc(), "root"))
}

// Path returns where the path of the namespace joined from elems is
// reachable from this process: the path itself for our own namespace
// (one element as it is), below <procfs>/<pid>/root otherwise.
func (fs HostFS) Path(elems ...string) string {
	if fs == "/" {
		if len(elems) == 1 {
			return elems[0]
		}
		return filepath.Join(elems...)
	}
	return filepath.Join(append([]string{string(fs)}, elems...)...)
}

// Open opens the namespace's root (OpenRootAt).
func (fs HostFS) Open() (*Root, error) { return OpenRootAt(string(fs)) }

// rootError explains a failure to open root, another process's root when
// other is set.
func rootError(root string, other bool, err error) error {
	hint := ""
	switch {
	case other && (errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM)) && hasEffectiveCap(unix.CAP_SYS_PTRACE):
		hint = "; the kernel refused ptrace read access to that process although this one holds CAP_SYS_PTRACE: " +
			"an LSM (AppArmor, SELinux), Yama's kernel.yama.ptrace_scope=3 or an undumpable target denies it"
	case other && (errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM)):
		hint = "; reaching another process's files (" + root + ") needs CAP_SYS_PTRACE, which this process does not hold"
	case other && (errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH)):
		hint = "; the process has exited"
	}
	return fmt.Errorf("%w: open %s: %w%s", ErrNamespaceUnreachable, root, err, hint)
}

// hasEffectiveCap reports whether this process holds capability c in its
// effective set.
func hasEffectiveCap(c int) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[c/32].Effective&(1<<(uint(c)%32)) != 0
}
