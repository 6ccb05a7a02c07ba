package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
)

func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return string(out), nil
}

// teardown stops everything Start started, even after a failure: kubelet
// first (so it restarts nothing), then every FUSE server of the CSI plugin
// is resumed and killed (a task waiting on one then fails with ENOTCONN
// instead of staying in D), then the containers and their shims (re-parented
// to PID 1: found by mount namespace), the daemons, the mounts under the
// node's directories, the cgroups under CgroupRoot, and the sysctls and
// host directories.
func (c *Cluster) teardown() {
	if c.kubelet != nil {
		c.kubelet.stop(10 * time.Second)
	}
	self, _ := os.Readlink("/proc/self/ns/mnt")
	var shims, fuse []int
	for _, pid := range allPIDs() {
		if pid == os.Getpid() {
			continue
		}
		ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
		if ns != self {
			continue
		}
		argv0 := argv0(pid)
		switch {
		case strings.Contains(argv0, "containerd-shim"):
			shims = append(shims, pid)
		case c.isCSIChild(pid):
			fuse = append(fuse, pid)
		}
	}
	for _, pid := range fuse {
		_ = syscall.Kill(pid, syscall.SIGCONT)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	var victims []int
	for _, pid := range shims {
		victims = append(victims, descendants(pid)...)
		victims = append(victims, pid)
	}
	for _, pid := range victims {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for i := len(c.procs) - 1; i >= 0; i-- {
		c.procs[i].stop(10 * time.Second)
	}
	c.unmountUnder(c.RootDir, "/var/lib/containerd", "/run/containerd", "/run/netns", c.PodLogsDir)
	c.removeCgroups()
	for i := len(c.undo) - 1; i >= 0; i-- {
		c.undo[i]()
	}
}

// isCSIChild reports whether pid's parent is the CSI plugin.
func (c *Cluster) isCSIChild(pid int) bool {
	ppid := parent(pid)
	for _, p := range c.procs {
		if p.name == "e2e-csi" && p.cmd.Process != nil && p.cmd.Process.Pid == ppid {
			return true
		}
	}
	return false
}

func allPIDs() []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

func argv0(pid int) string {
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return string(bytes.SplitN(cmdline, []byte{0}, 2)[0])
}

func parent(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

func descendants(pid int) []int {
	var out []int
	for _, tid := range tasks(pid) {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, tid))
		for _, f := range strings.Fields(string(data)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
				out = append(out, descendants(n)...)
			}
		}
	}
	return out
}

func tasks(pid int) []int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var out []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// unmountUnder detaches every mount at or below the directories, deepest
// first (MNT_DETACH never waits on a FUSE server). The table is read, never
// a mount point stat'ed: one may be a hung FUSE mount.
func (c *Cluster) unmountUnder(dirs ...string) {
	var targets []string
	for _, d := range dirs {
		ms, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(d))
		for _, m := range ms {
			targets = append(targets, m.Mountpoint)
		}
	}
	sort.Slice(targets, func(i, j int) bool { return len(targets[i]) > len(targets[j]) })
	for _, m := range targets {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
}

// removeCgroups removes CgroupRoot and everything below it in every
// hierarchy, deepest first, once the killed processes are gone.
func (c *Cluster) removeCgroups() {
	for _, h := range cgroupHierarchies() {
		root := filepath.Join(h, c.CgroupRoot)
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			for try := 0; try < 100; try++ {
				err := syscall.Rmdir(dirs[i])
				if err == nil || !errors.Is(err, syscall.EBUSY) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
}
