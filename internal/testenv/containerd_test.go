package testenv_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// TestMain runs the harness's own tests in a private mount namespace.
func TestMain(m *testing.M) { testenv.Main(m) }

// The harness does what the tests that use it rely on: an image built from
// layer tars is unpacked by containerd's overlayfs snapshotter under its
// chain IDs, a task's rootfs overlay has the snapshot directories as
// lowerdirs, and nothing is left running or in the host's cgroup tree when
// the test ends.
func TestContainerdHarness(t *testing.T) {
	var (
		pids   []int
		task   testenv.Task
		cgroup []string
	)
	t.Run("run", func(t *testing.T) {
		c := testenv.StartContainerd(t)
		img := c.ImportImage("localhost/harness:1",
			testenv.BusyboxLayer(t, testenv.File("data/modules/a", "a")),
			testenv.LayerTar(t, testenv.Opaque("data/modules"), testenv.File("data/modules/b", "b")))
		if len(img.Layers) != 2 || len(img.ChainIDs) != 2 || img.ChainIDs[0] != img.DiffIDs[0] {
			t.Fatalf("image %+v", img)
		}
		snaps := c.Ctr("snapshots", "ls")
		for _, id := range img.ChainIDs {
			if !strings.Contains(snaps, id) {
				t.Errorf("no committed snapshot %s:\n%s", id, snaps)
			}
		}
		task = c.Run(img.Name, "harness")
		lowers := testenv.LowerDirs(t, task.Rootfs)
		if len(lowers) != 2 || !strings.HasPrefix(lowers[0], c.SnapshotsDir()+"/") {
			t.Fatalf("lowerdirs %v", lowers)
		}
		if v := getxattr(lowers[0]+"/data/modules", "trusted.overlay.opaque"); v != "y" {
			t.Errorf("the opaque whiteout did not make the top layer's data/modules opaque: %q", v)
		}
		if data, err := os.ReadFile(task.Rootfs + "/data/modules/b"); err != nil || string(data) != "b" {
			t.Errorf("rootfs: %q %v", data, err)
		}
		if _, err := os.Stat(task.Rootfs + "/data/modules/a"); err == nil {
			t.Errorf("the opaque layer did not hide the base layer's data/modules/a")
		}
		pids = append(pids, c.PID)
		for _, l := range strings.Split(c.Ctr("task", "ls"), "\n")[1:] {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == task.ID {
				var pid int
				_, _ = fmt.Sscan(f[1], &pid)
				pids = append(pids, pid)
			}
		}
		if len(pids) != 2 {
			t.Fatalf("task not listed: %s", c.Ctr("task", "ls"))
		}
		cgroup, _ = filepath.Glob("/sys/fs/cgroup/*/default/" + task.ID)
		more, _ := filepath.Glob("/sys/fs/cgroup/default/" + task.ID)
		if cgroup = append(cgroup, more...); len(cgroup) == 0 {
			t.Errorf("no cgroup directory for %s: the clean-up check below proves nothing", task.ID)
		}
	})
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			if stat, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); !strings.Contains(string(stat), ") Z ") {
				t.Errorf("process %d still running after the test", pid)
			}
		}
	}
	for _, d := range cgroup {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("cgroup directory %s left behind", d)
		}
	}
	if task.Rootfs != "" {
		if data, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(data), testenv.ContainerdRoot) {
			t.Errorf("mounts under %s left behind", testenv.ContainerdRoot)
		}
	}
}

func getxattr(p, name string) string {
	buf := make([]byte, 64)
	n, err := syscall.Getxattr(p, name, buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}
