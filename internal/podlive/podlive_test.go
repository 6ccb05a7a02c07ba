package podlive

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestPodCgroups makes a stand-in pod in the machine's real cgroups for
// each cgroup driver and QoS class, in every hierarchy it has (cgroup v2,
// and v1's pids controller on a hybrid machine), and asks the Reader through
// the v2 hierarchy alone, the v1 one alone and both: running with its
// process, stopped once the process is gone, gone once its cgroups are.
func TestPodCgroups(t *testing.T) {
	testenv.RequireRoot(t)
	hs := testenv.PodHierarchies(t)
	n := 0
	for _, driver := range []string{"cgroupfs", "systemd"} {
		for _, qos := range []string{"guaranteed", "burstable", "besteffort"} {
			for _, h := range append([][]string{hs}, splitEach(hs)...) {
				n++
				t.Run(fmt.Sprintf("%s/%s/%d-hierarchies/%s", driver, qos, len(h), filepath.Base(h[0])), func(t *testing.T) {
					uid := fmt.Sprintf("0d0c0a11-%04x-4000-8000-%012d", os.Getpid()&0xffff, n)
					pod := testenv.StartPodCgroup(t, h, driver, qos, uid)
					ask := func() Pod {
						r := &Reader{Cgroup: testenv.CgroupRoot, NodeCgroup: testenv.CgroupRoot}
						defer r.Close()
						return r.Pod(uid)
					}
					if p := ask(); p.State != Running {
						t.Fatalf("with its process in %v: %+v, want running", pod.Dirs, p)
					}
					// Another pod's UID is not this one.
					r := &Reader{Cgroup: testenv.CgroupRoot}
					if p := r.Pod("0d0c0a11-ffff-4000-8000-000000000000"); p.State != Gone {
						t.Errorf("an unknown pod beside a running one: %+v, want gone", p)
					}
					r.Close()
					pod.Stop()
					if p := ask(); p.State != Stopped {
						t.Fatalf("process gone, cgroups left: %+v, want stopped", p)
					}
					pod.Remove()
					if p := ask(); p.State == Running || p.State == Stopped {
						t.Fatalf("cgroups removed: %+v, want gone or unknown", p)
					}
				})
			}
		}
	}
}

func splitEach(hs []string) [][]string {
	if len(hs) < 2 {
		return nil
	}
	var out [][]string
	for _, h := range hs {
		out = append(out, []string{h})
	}
	return out
}

// TestPodUnknownWithoutCgroups: a cgroup root with no hierarchy and no
// containerd state says nothing, rather than "gone".
func TestPodUnknownWithoutCgroups(t *testing.T) {
	r := &Reader{Cgroup: t.TempDir(), Containerd: filepath.Join(t.TempDir(), "missing")}
	defer r.Close()
	if p := r.Pod("0d0c0a11-0000-4000-8000-000000000001"); p.State != Unknown {
		t.Fatalf("%+v, want unknown", p)
	}
	if p := r.Pod("../../etc"); p.State != Unknown {
		t.Fatalf("a path for a UID: %+v, want unknown", p)
	}
}

// TestContainerdSandboxes: containerd's task directories of the k8s.io
// namespace, the sandbox's config.json carrying the CRI sandbox-uid
// annotation, answer when no kubelet cgroup can be seen; a container's
// spec (no sandbox-uid), a symlinked config and a FIFO do not.
func TestContainerdSandboxes(t *testing.T) {
	state := t.TempDir()
	tasks := filepath.Join(state, "io.containerd.runtime.v2.task/k8s.io")
	write := func(id, spec string) {
		if err := os.MkdirAll(filepath.Join(tasks, id), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tasks, id, "config.json"), []byte(spec), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const uid = "6f0c5a3e-1b2c-4d5e-8f90-123456789abc"
	write("sandbox1", `{"ociVersion":"1.0.2","annotations":{"io.kubernetes.cri.container-type":"sandbox","io.kubernetes.cri.sandbox-uid" : "`+uid+`"}}`)
	write("ctr1", `{"annotations":{"io.kubernetes.cri.container-type":"container","io.kubernetes.cri.sandbox-id":"sandbox1"}}`)
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "config.json"), []byte(`{"annotations":{"io.kubernetes.cri.sandbox-uid":"aaaaaaaa-0000-4000-8000-000000000000"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(tasks, "link"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(other, "config.json"), filepath.Join(tasks, "link", "config.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(tasks, "fifo"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mkfifo(filepath.Join(tasks, "fifo", "config.json")); err != nil {
		t.Fatal(err)
	}
	r := &Reader{Cgroup: t.TempDir(), Containerd: state, NodeContainerd: "/run/containerd"}
	defer r.Close()
	if p := r.Pod(uid); p.State != Running || p.Evidence != "containerd sandbox task sandbox1" {
		t.Errorf("sandbox's pod: %+v", p)
	}
	if p := r.Pod("aaaaaaaa-0000-4000-8000-000000000000"); p.State != Gone {
		t.Errorf("a pod named only by a symlinked config: %+v, want gone", p)
	}
}

func TestSandboxUID(t *testing.T) {
	for spec, want := range map[string]string{
		`{"io.kubernetes.cri.sandbox-uid":"abc-1"}`:      "abc-1",
		`{"io.kubernetes.cri.sandbox-uid":  "abc-1" }`:   "abc-1",
		`{"io.kubernetes.cri.sandbox-uid":"../x"}`:       "",
		`{"io.kubernetes.cri.sandbox-uid":`:              "",
		`{"io.kubernetes.cri.sandbox-uid":"unterminated`: "",
		`{"io.kubernetes.cri.sandbox-id":"abc"}`:         "",
		`{"io.kubernetes.cri.sandbox-uid" x "abc"}`:      "",
	} {
		got, ok := SandboxUID([]byte(spec))
		if got != want || ok != (want != "") {
			t.Errorf("%s: %q %v, want %q", spec, got, ok, want)
		}
	}
}

// A real containerd (Debian's 1.6 with runc) runs a sandbox task in the
// k8s.io namespace with the CRI's sandbox-uid annotation in its OCI spec:
// with no kubelet cgroup to be seen, the pod runs while the task exists and
// is gone once containerd deleted it.
func TestContainerdSandboxTaskReal(t *testing.T) {
	testenv.RequireContainerd(t)
	// runc makes /k8s.io in every cgroup hierarchy of the host (not
	// isolated by the mount namespace); containerd removes the task's own
	// cgroup when the test deletes it. Remove the namespace's directories
	// last, each only if empty (rmdir): another test may share them.
	t.Cleanup(func() {
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/k8s.io")
		for _, d := range append(dirs, "/sys/fs/cgroup/k8s.io") {
			_ = syscall.Rmdir(d)
		}
	})
	c := testenv.StartContainerd(t)
	c.Namespace = "k8s.io"
	img := c.ImportImage("localhost/pause:1", testenv.BusyboxLayer(t))
	const uid = "c0ffee00-1b2c-4d5e-8f90-123456789abc"
	task := c.RunWith([]string{"--annotation", "io.kubernetes.cri.sandbox-uid=" + uid}, img.Name, "sandbox", "/bin/sleep", "300")
	ask := func() Pod {
		r := &Reader{Cgroup: t.TempDir(), Containerd: c.State, NodeContainerd: "/run/containerd"}
		defer r.Close()
		return r.Pod(uid)
	}
	if p := ask(); p.State != Running || p.Evidence != "containerd sandbox task "+task.ID {
		t.Fatalf("sandbox task running: %+v", p)
	}
	c.Ctr("task", "kill", "-s", "KILL", task.ID)
	testenv.WaitUntil(t, 20*time.Second, "the task to exit", func() bool {
		_, err := c.CtrErr("task", "delete", task.ID)
		return err == nil
	})
	if p := ask(); p.State != Gone {
		t.Fatalf("sandbox task deleted: %+v", p)
	}
}
