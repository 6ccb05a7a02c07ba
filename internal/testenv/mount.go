package testenv

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Run runs a command and fails the test with its output if it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Mount mounts and unmounts again (lazily) when the test ends.
func Mount(t testing.TB, source, target, fstype string, flags uintptr, data string) {
	t.Helper()
	if err := os.MkdirAll(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(source, target, fstype, flags, data); err != nil {
		t.Fatalf("mount %s on %s (%s): %v", source, target, fstype, err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(target, syscall.MNT_DETACH) })
}

// Tmpfs mounts a fresh tmpfs on dir.
func Tmpfs(t testing.TB, dir string) {
	t.Helper()
	Mount(t, "none", dir, "tmpfs", 0, "")
}

// Bind bind-mounts source on target.
func Bind(t testing.TB, source, target string) {
	t.Helper()
	Mount(t, source, target, "", syscall.MS_BIND, "")
}

// Bindfs mounts a bindfs FUSE filesystem of src on dir and returns the
// bindfs server process (bindfs -f stays in the foreground, so its PID is
// the FUSE server's). extra are bindfs options such as "subtype=ceph-fuse".
func Bindfs(t testing.TB, src, dir string, extra ...string) *os.Process {
	t.Helper()
	bin := RequireCommand(t, "bindfs", "bindfs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"-f", "--no-allow-other"}
	for _, o := range extra {
		args = append(args, "-o", o)
	}
	cmd := exec.Command(bin, append(args, src, dir)...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("bindfs: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	WaitMounted(t, dir)
	return cmd.Process
}

// WaitMounted waits (at most 10 s) until dir is a mount point.
func WaitMounted(t testing.TB, dir string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		data, err := os.ReadFile("/proc/self/mountinfo")
		if err == nil && strings.Contains(string(data), " "+dir+" ") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s was not mounted within 10s", dir)
}

// KubeletPodVolume creates a kubelet-shaped CSI pod volume directory under
// kubeletRoot with its vol_data.json and returns the "mount" directory.
func KubeletPodVolume(t testing.TB, kubeletRoot, podUID, volume, driver, handle string) string {
	t.Helper()
	dir := filepath.Join(kubeletRoot, "pods", podUID, "volumes", "kubernetes.io~csi", volume)
	if err := os.MkdirAll(filepath.Join(dir, "mount"), 0o750); err != nil {
		t.Fatal(err)
	}
	vd := `{"attachmentID":"csi-123","driverName":"` + driver + `","nodeName":"node-1","specVolID":"` + volume +
		`","volumeHandle":"` + handle + `","volumeLifecycleMode":"Persistent"}`
	if err := os.WriteFile(filepath.Join(dir, "vol_data.json"), []byte(vd), 0o644); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "mount")
}

var (
	fakeCephOnce sync.Once
	fakeCephBin  string
	fakeCephErr  error
)

// FakeCephFuse mounts backing on dir with the project's ceph-fuse stand-in
// (fstype fuse.ceph-fuse, source ceph-fuse) and returns its process:
// SIGUSR1 makes it take each request and block in its handler, SIGHUP
// answer only statfs and getattr (a ceph-fuse whose MDS is down), SIGUSR2
// answer again, SIGTERM die without unmounting, as an OOM-killed ceph-fuse
// does.
func FakeCephFuse(t testing.TB, backing, dir string) *os.Process {
	t.Helper()
	return fakeCephFuse(t, backing, dir, nil)
}

// FakeCephFuseOver mounts a new ceph-fuse stand-in on top of whatever the
// O_PATH descriptor over refers to, through /proc/self/fd: the way to stack
// a mount on a dead FUSE mount, whose mount point path can no longer be
// looked up.
func FakeCephFuseOver(t testing.TB, backing string, over *os.File) *os.Process {
	t.Helper()
	return fakeCephFuse(t, backing, "", over)
}

// FakeCephFuseBinary builds the ceph-fuse stand-in once per test binary
// and returns its path, for tests that run it elsewhere (in a booted
// system).
func FakeCephFuseBinary(t testing.TB) string {
	t.Helper()
	fakeCephOnce.Do(func() {
		d, err := os.MkdirTemp("", "fakecephfuse")
		if err != nil {
			fakeCephErr = err
			return
		}
		fakeCephBin = filepath.Join(d, "fakecephfuse")
		out, err := exec.Command("go", "build", "-o", fakeCephBin,
			"github.com/mountwatchd/mountwatchd/internal/testfuse/fakecephfuse").CombinedOutput()
		if err != nil {
			fakeCephErr = fmt.Errorf("build fakecephfuse: %w\n%s", err, out)
		}
	})
	if fakeCephErr != nil {
		t.Fatal(fakeCephErr)
	}
	return fakeCephBin
}

func fakeCephFuse(t testing.TB, backing, dir string, over *os.File) *os.Process {
	t.Helper()
	fakeCephBin := FakeCephFuseBinary(t)
	// The mount point may be a dead FUSE mount, whose stat fails: EEXIST
	// is enough.
	target := dir
	if over != nil {
		target = "/proc/self/fd/3"
	} else if err := os.MkdirAll(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		t.Fatal(err)
	}
	cmd := exec.Command(fakeCephBin, backing, target)
	if over != nil {
		cmd.ExtraFiles = []*os.File{over}
		dir = over.Name()
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGUSR2)
		_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	buf := make([]byte, 6)
	if n, err := io.ReadFull(out, buf); err != nil || string(buf[:n]) != "ready\n" {
		t.Fatalf("fakecephfuse did not mount %s: %q %v", dir, buf[:n], err)
	}
	return cmd.Process
}

// Threads is the number of OS threads of this process.
func Threads(t testing.TB) int { return ThreadsOf(t, os.Getpid()) }

// ThreadsOf is the number of OS threads of process pid.
func ThreadsOf(t testing.TB, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			var n int
			if _, err := fmt.Sscan(v, &n); err == nil {
				return n
			}
		}
	}
	t.Fatalf("no Threads: line in /proc/%d/status", pid)
	return 0
}

// WaitUntil polls cond every 50 ms and fails the test when it is still
// false after timeout.
func WaitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
