//go:build e2e

package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
	"github.com/mountwatchd/mountwatchd/internal/testenv/kube"
)

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
func testAPIDown(t *testing.T, c *kube.Cluster, m *mwd, v volume) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("mountwatchd's log:\n%s", tail(podLog(t, c, m), 40))
		}
	})
	c.StopAPIServer(t)
	v.signal(t, c, syscall.SIGKILL)
	p := m.waitProblem(t, 2*time.Minute, problem{"check": "stale_mount", "pod_namespace": kube.Namespace, "pod_name": "dead", "volume": "dead"})
	t.Logf("API server down; mountwatchd's metrics: %v", p)
	testenv.WaitUntil(t, time.Minute, "the journal entry (the pod's log on the node)", func() bool {
		return strings.Contains(podLog(t, c, m), `"check":"stale_mount"`)
	})
	testenv.WaitUntil(t, time.Minute, "API errors counted", func() bool {
		return counter(t, m, "mountwatchd_kube_api_errors_total", problem{"request": "patch_node_status"}) > 0
	})
	errs := counter(t, m, "mountwatchd_kube_api_errors_total", problem{})
	t.Logf("API errors while down: %v", errs)
	c.StartAPIServer(t)
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
