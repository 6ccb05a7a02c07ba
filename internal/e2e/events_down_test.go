//go:build e2e

package e2e

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
	"github.com/mountwatchd/mountwatchd/internal/testenv/kube"
)

// stopAPIServer kills the cluster's kube-apiserver (found by its argv0 in
// the cluster's Bin) and returns its command line, for restartAPIServer.
func stopAPIServer(t *testing.T, c *kube.Cluster) []string {
	t.Helper()
	bin := filepath.Join(c.Bin, "kube-apiserver")
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		argv := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		// The Bin directory is shared: another test binary's cluster runs
		// the same kube-apiserver in a network namespace of its own.
		ns, _ := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "net"))
		if argv[0] != bin || ns != self {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		testenv.WaitUntil(t, 30*time.Second, "kube-apiserver gone", func() bool {
			data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
			return err != nil || bytes.Contains(data, []byte(") Z "))
		})
		return argv
	}
	t.Fatalf("no process %s", bin)
	return nil
}

// restartAPIServer starts the API server again with the same command line
// and waits until it is ready; it is killed when owner (the test that owns
// the cluster, not a subtest) ends.
func restartAPIServer(t, owner *testing.T, c *kube.Cluster, argv []string) {
	t.Helper()
	log, err := os.Create(filepath.Join(c.Dir, "kube-apiserver-restarted.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	owner.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); log.Close() })
	testenv.WaitUntil(t, 2*time.Minute, "the API server ready again", func() bool {
		out, err := c.KubectlErr("get", "--raw", "/readyz")
		return err == nil && out == "ok"
	})
}

// podLog is the DaemonSet pod's log as kubelet keeps it on the node: read
// from the node, so it needs no API server.
func podLog(t *testing.T, c *kube.Cluster, m *mwd) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(c.PodLogsDir, chartNS+"_"+m.pod+"_*", "mountwatchd", "*.log"))
	var b strings.Builder
	for _, f := range files {
		data, _ := os.ReadFile(f)
		b.Write(data)
	}
	return b.String()
}

func counter(t *testing.T, m *mwd, family string, labels map[string]string) float64 {
	t.Helper()
	fams, err := m.metrics()
	if err != nil {
		return -1
	}
	var sum float64
	for _, s := range fams[family].GetMetric() {
		p := problem{}
		for _, l := range s.GetLabel() {
			p[l.GetName()] = l.GetValue()
		}
		if matches(p, labels) {
			sum += s.GetCounter().GetValue()
		}
	}
	return sum
}

// testAPIDown kills the API server, then the dead volume's FUSE server:
// the checks, the metrics and the journal go on without it; when it comes
// back the pod's Warning and the condition arrive.
func testAPIDown(t, owner *testing.T, c *kube.Cluster, m *mwd, v volume) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("mountwatchd's log:\n%s", tail(podLog(t, c, m), 40))
		}
	})
	argv := stopAPIServer(t, c)
	v.signal(t, c, syscall.SIGKILL)
	p := m.waitProblem(2*time.Minute, problem{"check": "stale_mount", "pod_namespace": kube.Namespace, "pod_name": "dead", "volume": "dead"})
	t.Logf("API server down; mountwatchd's metrics: %v", p)
	testenv.WaitUntil(t, time.Minute, "the journal entry (the pod's log on the node)", func() bool {
		return strings.Contains(podLog(t, c, m), `"check":"stale_mount"`)
	})
	testenv.WaitUntil(t, time.Minute, "API errors counted", func() bool {
		return counter(t, m, "mountwatchd_kube_api_errors_total", problem{"request": "patch_node_status"}) > 0
	})
	errs := counter(t, m, "mountwatchd_kube_api_errors_total", problem{})
	t.Logf("API errors while down: %v", errs)
	restartAPIServer(t, owner, c, argv)
	w := waitEvents(t, c, "dead", "StaleMount", 3*time.Minute)
	t.Logf("after the API server came back: %s %s %q", w.Type, w.Reason, w.Message)
	if w.Type != "Warning" || !strings.Contains(w.Message, `volume "dead"`) || !strings.Contains(w.Message, c.CSIDriver) {
		t.Errorf("the dead server's Warning: %+v", w)
	}
	cond := waitCondition(t, c, corev1.ConditionTrue, "StaleMount")
	t.Logf("condition caught up: %s %s %q", cond.Status, cond.Reason, cond.Message)
}

// testVerbShort takes patch on nodes/status from the chart's ClusterRole:
// the condition's heartbeat fails as the README says (a warning naming the
// ClusterRole, mountwatchd_kube_api_errors_total{reason="forbidden"}) and
// the daemon goes on.
func testVerbShort(t *testing.T, c *kube.Cluster, m *mwd) {
	role, err := c.KubectlErr("get", "clusterrole", daemonName, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	cut := strings.Replace(role, `"nodes/status"`, `"nodes/status-not"`, 1)
	if cut == role {
		t.Fatalf("the ClusterRole has no nodes/status rule:\n%s", role)
	}
	if out, err := c.KubectlInput([]byte(cut), "replace", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	before := counter(t, m, "mountwatchd_kube_api_errors_total", problem{"request": "patch_node_status", "reason": "forbidden"})
	testenv.WaitUntil(t, 2*time.Minute, "the condition's heartbeat forbidden", func() bool {
		return counter(t, m, "mountwatchd_kube_api_errors_total", problem{"request": "patch_node_status", "reason": "forbidden"}) > before
	})
	if before != 0 {
		t.Errorf("forbidden before the role lost its verb: %v", before)
	}
	testenv.WaitUntil(t, time.Minute, "the warning in the log", func() bool {
		l := podLog(t, c, m)
		return strings.Contains(l, "Kubernetes API request failed") && strings.Contains(l, "ClusterRole lacks this verb")
	})
	ok, why := m.healthy()
	if !ok {
		t.Errorf("mountwatchd unhealthy with a verb short: %s", why)
	}
}

// healthy asks the pod's /healthz.
func (m *mwd) healthy() (bool, string) {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + m.ip + ":9842/healthz")
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK, strings.TrimSpace(string(body))
}

// dummyShim lets the harness make its node interface on a kernel without
// the dummy link type (no module): an `ip` first on PATH that makes a
// bridge instead, which holds the address as well. Nothing changes where
// dummy links work.
func dummyShim(t *testing.T) {
	t.Helper()
	if exec.Command("ip", "link", "add", "mwe2e-probe", "type", "dummy").Run() == nil {
		_ = exec.Command("ip", "link", "del", "mwe2e-probe").Run()
		return
	}
	real, err := exec.LookPath("ip")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := "#!/bin/sh\nfor a do\n  shift\n  [ \"$a\" = dummy ] && a=bridge\n  set -- \"$@\" \"$a\"\ndone\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "ip"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	t.Log("no dummy links on this kernel: the node's interface is a bridge")
}
