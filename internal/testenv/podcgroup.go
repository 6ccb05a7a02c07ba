package testenv

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/kubecgroup"
)

// ContainerPath is the cgroup of container id of pod uid, relative to a
// hierarchy's root, as kubelet and containerd name it (kubecgroup.Parse
// reads it back); under the systemd driver it is containerd's scope
// (cri-containerd-<id>.scope).
func ContainerPath(driver, qos, uid, id string) string {
	if driver == kubecgroup.Systemd {
		return kubecgroup.PodPath(driver, qos, uid) + "/cri-containerd-" + id + ".scope"
	}
	return kubecgroup.PodPath(driver, qos, uid) + "/" + id
}

// Kubelet's cgroup drivers, as a stand-in pod's cgroup is named.
const (
	// CgroupfsDriver names the cgroup kubepods/<qos>/pod<uid>/<container id>
	// (kubepods/pod<uid>/... for a guaranteed pod); the stand-in uses the
	// cgroup v1 pids hierarchy where there is one.
	CgroupfsDriver = kubecgroup.Cgroupfs
	// SystemdDriver names it kubepods.slice/kubepods-<qos>.slice/
	// kubepods-<qos>-pod<uid with _ for ->.slice/cri-containerd-<id>.scope;
	// the stand-in uses the cgroup v2 hierarchy.
	SystemdDriver = kubecgroup.Systemd
)

// cgroupRoot is where a stand-in of driver's pods is made: for the
// cgroupfs driver the cgroup v1 pids hierarchy (these machines have v1
// controllers and v2 at /sys/fs/cgroup/unified, TESTING.md), for the
// systemd driver cgroup v2; on a machine with v2 only, v2 for both.
func cgroupRoot(driver string) string {
	v2 := "/sys/fs/cgroup/unified"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		v2 = "/sys/fs/cgroup" // the unified hierarchy alone
	}
	if driver == CgroupfsDriver {
		if _, err := os.Stat("/sys/fs/cgroup/pids/cgroup.procs"); err == nil {
			return "/sys/fs/cgroup/pids"
		}
	}
	return v2
}

// StandInPod is a process in a cgroup named as kubelet names a pod's
// container.
type StandInPod struct {
	UID, QoS, ContainerID string
	Cmd                   *exec.Cmd
}

// NewPodUID returns a random pod UID.
func NewPodUID(t testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// NewContainerID returns a random 64-digit container id.
func NewContainerID(t testing.TB) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}

// StartStandInPod starts name args as a container of a new pod: the
// process moves itself into the cgroup before it execs the command. When
// the test ends the process is killed and the cgroups this call made are
// removed (cgroups are not isolated by the test's mount namespace). A
// process stuck on a FUSE server cannot be reaped until the server
// answers: resume it first (register its Resume with t.Cleanup after this
// call).
func StartStandInPod(t testing.TB, driver, qos, name string, args ...string) *StandInPod {
	t.Helper()
	RequireRoot(t)
	root := cgroupRoot(driver)
	_, err := os.Stat(filepath.Join(root, "cgroup.procs"))
	Require(t, err == nil, "a cgroup hierarchy at %s", root)
	p := &StandInPod{UID: NewPodUID(t), QoS: qos, ContainerID: NewContainerID(t)}
	rel := ContainerPath(driver, qos, p.UID, p.ContainerID)

	var made []string
	dir := root
	for _, part := range strings.Split(rel, "/") {
		dir = filepath.Join(dir, part)
		if err := os.Mkdir(dir, 0o755); err == nil {
			made = append(made, dir)
		} else if !errors.Is(err, fs.ErrExist) {
			removeCgroupDirs(t, made)
			t.Fatalf("make cgroup %s: %v", dir, err)
		}
	}
	t.Cleanup(func() { removeCgroupDirs(t, made) })

	p.Cmd = exec.Command("sh", append([]string{"-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, dir, name}, args...)...)
	p.Cmd.Stderr = os.Stderr
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = p.Cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = p.Cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Errorf("stand-in pod process %d did not exit 20s after SIGKILL (still waiting on a FUSE server?)", p.Cmd.Process.Pid)
		}
	})
	WaitUntil(t, 10*time.Second, "the stand-in pod process to enter its cgroup", func() bool {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", p.Cmd.Process.Pid))
		return err == nil && strings.Contains(string(data), rel)
	})
	return p
}

// removeCgroupDirs removes cgroups, the innermost first, retrying while the
// kernel still counts an exited process in one.
func removeCgroupDirs(t testing.TB, dirs []string) {
	for i := len(dirs) - 1; i >= 0; i-- {
		var err error
		for range 100 {
			if err = syscall.Rmdir(dirs[i]); err == nil || errors.Is(err, syscall.ENOENT) {
				err = nil
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Errorf("remove cgroup %s: %v", dirs[i], err)
		}
	}
}
