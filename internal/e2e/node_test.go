//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
	"github.com/mountwatchd/mountwatchd/internal/testenv/kube"
)

// TestRealNode deploys the chart on a real one-node cluster laid out as
// kubelet's defaults have it, then breaks real pods' CSI FUSE volumes the
// ways the brief lists. Each failure is seen by the DaemonSet's pod, naming
// the real pod, its namespace and volume; what kubelet and the runtime say
// of the same failure is logged beside it.
func TestRealNode(t *testing.T) {
	c := kube.Start(t, kube.Options{})
	m := deploy(t, c)
	newVolume(t, c, "healthy", nil)
	runPod(t, c, "healthy", "healthy", "")
	m.ranOnce(t)
	assertNoProblems(t, m, "a healthy node: the DaemonSet's own pod, a pod on a CSI FUSE volume, projected tokens, containerd's overlays")

	t.Run("churn", func(t *testing.T) { testChurn(t, c, m) })
	t.Run("stale_mount", func(t *testing.T) { testStale(t, c, m) })
	t.Run("deleted_subpath", func(t *testing.T) { testDeletedSubPath(t, c, m) })
	t.Run("unmounted_volume", func(t *testing.T) { testUnmounted(t, c, m) })
	t.Run("seed_stack_deleted_on_server", func(t *testing.T) { testSeedStack(t, c, m) })
	// Last: it leaves a connection hung until its end.
	t.Run("hung_mount", func(t *testing.T) { testHung(t, c, m) })
}

func assertNoProblems(t *testing.T, m *mwd, what string) {
	t.Helper()
	ps, err := m.problems()
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) > 0 {
		t.Fatalf("%s: want no problem, got %v\nmountwatchd's log:\n%s", what, ps, tail(m.logs(), 20))
	}
}

// testChurn makes 20 pods on CSI volumes and deletes them, scraping all the
// while: no problem at any time (a mount being made or removed is no
// failure).
func testChurn(t *testing.T, c *kube.Cluster, m *mwd) {
	const n = 20
	stop := make(chan struct{})
	seen := make(chan []problem, 1)
	go func() {
		var bad []problem
		for {
			select {
			case <-stop:
				seen <- bad
				return
			case <-time.After(500 * time.Millisecond):
			}
			if ps, err := m.problems(); err == nil {
				bad = append(bad, ps...)
			}
		}
	}()
	for i := 0; i < n; i++ {
		newVolume(t, c, fmt.Sprintf("churn-%d", i), nil)
	}
	var all strings.Builder
	for i := 0; i < n; i++ {
		all.WriteString(podSpec(fmt.Sprintf("churn-%d", i), fmt.Sprintf("churn-%d", i), "") + "---\n")
	}
	c.Apply(t, all.String())
	for i := 0; i < n; i++ {
		waitPodRunning(t, c, fmt.Sprintf("churn-%d", i))
	}
	time.Sleep(12 * time.Second) // a full re-read (--interval) and two probe rounds with all of them
	c.Kubectl(t, "-n", kube.Namespace, "delete", "pods", "-l", "!nothing", "--field-selector", "metadata.name!=healthy", "--wait=true", "--timeout=2m")
	time.Sleep(12 * time.Second)
	close(stop)
	if bad := <-seen; len(bad) > 0 {
		t.Fatalf("20 pods with CSI FUSE volumes made and deleted: want no problem at any time, got %v", bad)
	}
	t.Logf("%d pods with CSI FUSE volumes made and deleted: no problem in any scrape", n)
}

// testStale kills the volume's FUSE server, as the OOM killer kills
// ceph-fuse: the mount table does not change.
func testStale(t *testing.T, c *kube.Cluster, m *mwd) {
	v := newVolume(t, c, "dead", nil)
	runPod(t, c, "dead", "dead", "")
	v.signal(t, c, syscall.SIGKILL)
	// csi_driver: the label an alert routes to the storage team by.
	p := m.waitProblem(t, time.Minute, problem{"check": "stale_mount", "pod_namespace": kube.Namespace, "pod_name": "dead", "volume": "dead",
		"csi_driver": c.CSIDriver})
	t.Logf("mountwatchd: %v", p)
	// What kubelet and the runtime say of it.
	restartContainer(t, c, "dead")
	st := restartedState(c, "dead")
	t.Logf("kubelet, container restarted on the dead volume: %s", st)
	c.Apply(t, podSpec("dead-2", "dead", ""))
	t.Logf("kubelet, a new pod on the same claim: %s", waitEvent(t, c, "dead-2", "FailedMount"))
	c.Kubectl(t, "-n", kube.Namespace, "delete", "pod", "dead", "dead-2", "--wait=false")
}

// testDeletedSubPath deletes a subPath's directory through the node's own
// mount of the volume: the subPath bind mount's root is deleted.
func testDeletedSubPath(t *testing.T, c *kube.Cluster, m *mwd) {
	v := newVolume(t, c, "subdel", nil)
	if err := os.MkdirAll(filepath.Join(v.backing, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	uid := runPod(t, c, "subdel", "subdel", "app")
	if err := os.RemoveAll(filepath.Join(podVolumeDir(c, uid, "subdel"), "app")); err != nil {
		t.Fatal(err)
	}
	p := m.waitProblem(t, time.Minute, problem{"check": "deleted_root", "pod_namespace": kube.Namespace, "pod_name": "subdel", "volume": "subdel"})
	t.Logf("mountwatchd: %v", p)
	restartContainer(t, c, "subdel")
	// What the kubelet at hand does, which the finding's message says:
	// every state the restarted container goes through until it runs.
	states, running := statesUntilRunning(c, "subdel", 2*time.Minute)
	_, err := os.Stat(filepath.Join(v.backing, "app"))
	t.Logf("kubelet, container restarted on the deleted subPath: %s; the subPath directory re-created: %v", strings.Join(states, " -> "), err == nil)
	if !running || err != nil {
		t.Errorf("the deleted_root message for a subPath says kubelet 1.34 re-creates the directory and the restarted container runs; "+
			"here it ran: %v, the directory re-created: %v", running, err == nil)
	}
	c.Kubectl(t, "-n", kube.Namespace, "delete", "pod", "subdel", "--wait=false")
}

// testUnmounted unmounts a running pod's volume under it: its writes land
// on the kubelet root's filesystem.
func testUnmounted(t *testing.T, c *kube.Cluster, m *mwd) {
	newVolume(t, c, "gone", nil)
	uid := runPod(t, c, "gone", "gone", "")
	if err := syscall.Unmount(podVolumeDir(c, uid, "gone"), syscall.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	// The series names the volume's directory; mountpoint is the
	// filesystem the writes land on.
	p := m.waitProblem(t, time.Minute, problem{"check": "unmounted_volume", "pod_namespace": kube.Namespace, "pod_name": "gone", "volume": "gone",
		"directory": podVolumeDir(c, uid, "gone"), "csi_driver": c.CSIDriver})
	t.Logf("mountwatchd: %v", p)
	c.Kubectl(t, "-n", kube.Namespace, "delete", "pod", "gone", "--wait=false")
}

// testHung stops the volume's FUSE server answering while it still reads
// each request (a ceph-fuse waiting on a frozen MDS): the pod's task that
// lists the volume waits in the kernel; the pod, deleted, stays
// Terminating; then the DaemonSet's own pod is deleted while its probe of
// that connection is stuck.
func testHung(t *testing.T, c *kube.Cluster, m *mwd) {
	v := newVolume(t, c, "hung", nil)
	runPod(t, c, "hung", "hung", "")
	v.signal(t, c, syscall.SIGUSR1)
	t.Cleanup(func() { _ = syscall.Kill(v.serverPID(t, c), syscall.SIGUSR2) })
	p := m.waitProblem(t, time.Minute, problem{"check": "hung_mount", "pod_namespace": kube.Namespace, "pod_name": "hung", "volume": "hung"})
	t.Logf("mountwatchd: %v", p)
	testenv.WaitUntil(t, time.Minute, "the pod's stuck task named in the journal", func() bool {
		return strings.Contains(m.logs(), kube.Namespace+"/hung")
	})
	c.Kubectl(t, "-n", kube.Namespace, "delete", "pod", "hung", "--wait=false")
	time.Sleep(20 * time.Second) // four times its grace period
	ts, err := c.KubectlErr("-n", kube.Namespace, "get", "pod", "hung", "-o", "jsonpath={.metadata.deletionTimestamp}")
	if err != nil || ts == "" {
		t.Fatalf("the pod on the hung volume went away (%v): want it stuck Terminating", err)
	}
	still := m.waitProblem(t, time.Minute, problem{"check": "hung_mount", "pod_name": "hung"})
	t.Logf("pod deleted at %s, still Terminating; mountwatchd still says: %v", ts, still)
	t.Logf("kubelet: %s", events(c, "hung"))

	// The DaemonSet's own pod deleted while its probe of that connection
	// is stuck: it goes within its grace period, and its replacement
	// reports the connection hung from the state record without sending it
	// another probe (which would stick too).
	before := stuckHelpers(t, c)
	if before != 1 {
		t.Errorf("%d mountwatchd processes wait on the hung connection before the pod is deleted, want 1 (its one probe)", before)
	}
	old := m.pod
	deleted := time.Now()
	c.Kubectl(t, "-n", chartNS, "delete", "pod", old, "--wait=false")
	var finished string
	testenv.WaitUntil(t, time.Minute, "mountwatchd's container with a stuck probe terminated", func() bool {
		finished, _ = c.KubectlErr("-n", chartNS, "get", "pod", old, "-o", "jsonpath={.status.containerStatuses[0].state.terminated.finishedAt}")
		return finished != ""
	})
	end, err := time.Parse(time.RFC3339, finished)
	if err != nil {
		t.Fatal(err)
	}
	// Its grace period is 30 s; kubelet's status has a resolution of a
	// second.
	if end.After(deleted.Add(31 * time.Second)) {
		t.Errorf("mountwatchd's container ended %v after its pod was deleted: past its grace period of 30s\n%s",
			end.Sub(deleted), mountwatchdProcs(c))
	}
	m.waitReady(t, 2*time.Minute)
	if m.pod == old {
		t.Fatalf("the DaemonSet's pod %s is still the old one", old)
	}
	// The old pod's object stays Terminating while the probe stuck in the
	// kernel keeps its cgroup: kubelet removes a pod only once its cgroup
	// is gone. The container itself has ended; the replacement runs.
	obj, _ := c.KubectlErr("-n", chartNS, "get", "pod", old, "-o", "jsonpath={.metadata.deletionTimestamp} {.status.phase}")
	t.Logf("mountwatchd's old pod: container ended %v after deletion; its object now: %q; the stuck probe:\n%s",
		end.Sub(deleted).Round(time.Second), obj, mountwatchdProcs(c))
	again := m.waitProblem(t, time.Minute, problem{"check": "hung_mount", "pod_name": "hung"})
	m.ranOnce(t)
	after := stuckHelpers(t, c)
	t.Logf("replacement pod %s: %v; mountwatchd processes waiting on the connection: %d before, %d after", m.pod, again, before, after)
	if after > 1 {
		t.Errorf("%d mountwatchd processes wait on the hung connection after the pod was replaced: the new pod probed it again", after)
	}
}

// ours reports whether /proc entry pid is a mountwatchd process (the
// daemon, a probe helper) of this cluster's pods: other tests on the
// machine run mountwatchd too.
func ours(c *kube.Cluster, pid string) bool {
	comm, _ := os.ReadFile(filepath.Join("/proc", pid, "comm"))
	cg, _ := os.ReadFile(filepath.Join("/proc", pid, "cgroup"))
	return strings.HasPrefix(string(comm), "mountwatchd") && strings.Contains(string(cg), c.CgroupRoot+"/")
}

// mountwatchdProcs lists mountwatchd's processes with their state, wait
// channel and cgroup, for a failure message.
func mountwatchdProcs(c *kube.Cluster) string {
	var b strings.Builder
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if !ours(c, e.Name()) {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		wchan, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "wchan"))
		cg, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		fmt.Fprintf(&b, "pid %s %s wchan=%s\n  %s\n", e.Name(), strings.TrimSpace(string(stat)), wchan,
			strings.ReplaceAll(strings.TrimSpace(string(cg)), "\n", "\n  "))
	}
	return b.String()
}

// restartedState is what kubelet says of a pod's container once it ended:
// the first state after it that is waiting or running again, or the last
// seen after a minute (it is recorded, not judged).
func restartedState(c *kube.Cluster, pod string) string {
	var st string
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		st = containerStatus(c, pod)
		if strings.Contains(st, "waiting") || (strings.Contains(st, "running") && !strings.Contains(st, "restarts=0")) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	return st
}

// statesUntilRunning are the distinct states of the pod's container from
// now until it runs again after a restart (true), or until timeout.
func statesUntilRunning(c *kube.Cluster, pod string, timeout time.Duration) ([]string, bool) {
	var states []string
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		st := containerStatus(c, pod)
		if len(states) == 0 || states[len(states)-1] != st {
			states = append(states, st)
		}
		if strings.Contains(st, `"running"`) && !strings.Contains(st, "restarts=0") {
			return states, true
		}
		time.Sleep(500 * time.Millisecond)
	}
	return states, false
}

// stuckHelpers counts mountwatchd's processes (the daemon's probe helpers)
// waiting in the kernel on a FUSE request.
func stuckHelpers(t *testing.T, c *kube.Cluster) int {
	t.Helper()
	n := 0
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if !ours(c, e.Name()) {
			continue
		}
		tasks, _ := os.ReadDir(filepath.Join("/proc", e.Name(), "task"))
		for _, task := range tasks {
			wchan, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "task", task.Name(), "wchan"))
			if strings.Contains(string(wchan), "request_wait_answer") {
				n++
				break
			}
		}
	}
	return n
}

// testSeedStack is the seed's own stack: a real ceph-fuse against a
// one-machine Ceph, staged by the CSI plugin at kubelet's staging path with
// -r <rootPath> as ceph-csi's FUSE mounter runs it, a static
// PersistentVolume and its claim, and a Grafana-like pod. Another CephFS
// client removes the volume's directory: the mount table does not change
// and no root becomes //deleted, but the pod now works on an unlinked,
// empty directory.
func testSeedStack(t *testing.T, c *kube.Cluster, m *mwd) {
	ceph := testenv.StartCeph(t)
	admin := filepath.Join(t.TempDir(), "admin")
	ceph.Mount(admin, "")
	dir := filepath.Join(admin, "volumes", "csi", "dash")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "home.json"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	newVolume(t, c, "dash", map[string]string{"server": "ceph-fuse", "conf": ceph.Conf, "root": "/volumes/csi/dash"})
	runPod(t, c, "grafana-0", "dash", "")
	m.ranOnce(t)
	if ps, err := m.problems(); err == nil {
		for _, p := range ps {
			if p["volume"] == "dash" {
				t.Fatalf("a problem on the healthy ceph-fuse volume: %v", p)
			}
		}
	}
	if err := os.RemoveAll(dir); err != nil { // through the other client
		t.Fatal(err)
	}
	p := m.waitProblem(t, time.Minute, problem{"check": "deleted_root", "pod_namespace": kube.Namespace, "pod_name": "grafana-0",
		"volume": "dash", "csi_driver": c.CSIDriver})
	t.Logf("mountwatchd: %v", p)
	restartContainer(t, c, "grafana-0")
	t.Logf("kubelet, container restarted on the volume deleted on the server: %s; events: %q", restartedState(c, "grafana-0"), events(c, "grafana-0"))
	c.Kubectl(t, "-n", kube.Namespace, "delete", "pod", "grafana-0", "--wait=false")
}
