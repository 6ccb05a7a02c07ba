//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
	"github.com/mountwatchd/mountwatchd/internal/testenv/kube"
)

// The image make e2e builds (make image with IMAGE=localhost/mountwatchd,
// IMAGE_TAG=e2e, for this machine's platform only) and where it wrote it.
const (
	imageEnv   = "MOUNTWATCHD_E2E_IMAGE"
	chartNS    = "mountwatchd"
	daemonName = "mountwatchd"
)

// Shorter schedules than the defaults, so that a test sees each failure in
// seconds; an operator may set the same flags with extraArgs. Nothing else
// of the chart is overridden but the image and the node's PID.
var fastArgs = []string{"--probe.interval=5s", "--interval=10s", "--unmounted-volume.grace=15s"}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// mwd is mountwatchd deployed by its chart on a cluster.
type mwd struct {
	c   *kube.Cluster
	pod string // the DaemonSet's pod
	ip  string
}

// deploy imports the image into the node's containerd, renders the chart
// with Helm (only the image, the node's PID, the schedules and the
// test's extra helm arguments set) and applies it, and waits until the
// DaemonSet's pod is Ready through its real readiness probe.
func deploy(t *testing.T, c *kube.Cluster, extra ...string) *mwd {
	t.Helper()
	archive := os.Getenv(imageEnv)
	testenv.Require(t, archive != "", "$%s: the image archive (make e2e builds it)", imageEnv)
	c.ImportImage(archive)
	// The chart's state hostPath, in the test's namespace.
	c.Tmpfs("/run/mountwatchd")
	helm := testenv.RequireCommand(t, "helm", "make tools")
	args := []string{"template", daemonName, filepath.Join(repoRoot(), "packaging/helm/mountwatchd"),
		"--namespace", chartNS, "--kube-version", kube.Version,
		"--set", "image.registry=localhost", "--set", "image.repository=mountwatchd", "--set", "image.tag=e2e",
		// The node's mount namespace is the test's private one: its
		// processes (kubelet, this test) are the node's init here.
		"--set", fmt.Sprintf("targetPID=%d", os.Getpid()),
		"--set-json", fmt.Sprintf("extraArgs=[%q,%q,%q]", fastArgs[0], fastArgs[1], fastArgs[2])}
	args = append(args, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, helm, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, stderr.String())
	}
	c.Kubectl(t, "create", "namespace", chartNS)
	c.Apply(t, string(out))
	m := &mwd{c: c}
	m.waitReady(t, 3*time.Minute)
	t.Logf("mountwatchd pod %s/%s Ready at %s", chartNS, m.pod, m.ip)
	return m
}

// waitReady waits until the DaemonSet has one pod and it is Ready
// through its real readiness probe.
func (m *mwd) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	c := m.c
	deadline := time.Now().Add(timeout)
	for {
		names, _ := c.KubectlErr("-n", chartNS, "get", "pods", "-l", "app.kubernetes.io/name=mountwatchd",
			"-o", `jsonpath={range .items[*]}{.metadata.name}{" "}{.metadata.deletionTimestamp}{" "}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
		m.pod = ""
		for _, line := range strings.Split(names, "\n") {
			// name, then Ready's status when there is no deletionTimestamp
			if f := strings.Fields(line); len(f) == 2 && f[1] == "True" {
				m.pod = f[0]
			}
		}
		if m.pod != "" {
			break
		}
		if time.Now().After(deadline) {
			desc, _ := c.KubectlErr("-n", chartNS, "describe", "pods")
			ev, _ := c.KubectlErr("-n", chartNS, "get", "events")
			logs, _ := c.KubectlErr("-n", chartNS, "logs", "-l", "app.kubernetes.io/name=mountwatchd", "--tail=50")
			t.Fatalf("the DaemonSet's pod is not Ready within %v:\n%s\n%s\n%s\n--- kubelet:\n%s", timeout, desc, ev, logs, tail(c.KubeletLog(), 40))
		}
		time.Sleep(time.Second)
	}
	m.ip = c.Kubectl(t, "-n", chartNS, "get", "pod", m.pod, "-o", "jsonpath={.status.podIP}")
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// metrics scrapes the pod's /metrics.
func (m *mwd) metrics() (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.ip+":9842/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(strings.NewReader(string(body)))
}

// problem is one mountwatchd_problem series, by its labels.
type problem map[string]string

func (p problem) String() string {
	return fmt.Sprintf("%s %s %s pod=%s/%s volume=%s", p["severity"], p["check"], p["mountpoint"], p["pod_namespace"], p["pod_name"], p["volume"])
}

// problems are the problem series of one scrape.
func (m *mwd) problems() ([]problem, error) {
	fams, err := m.metrics()
	if err != nil {
		return nil, err
	}
	var out []problem
	if f := fams["mountwatchd_problem"]; f != nil {
		for _, s := range f.GetMetric() {
			p := problem{}
			for _, l := range s.GetLabel() {
				p[l.GetName()] = l.GetValue()
			}
			out = append(out, p)
		}
	}
	return out, nil
}

// waitProblem waits until a problem series matching want (every label
// given) appears, and returns it.
func (m *mwd) waitProblem(t *testing.T, timeout time.Duration, want problem) problem {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last []problem
	for {
		ps, err := m.problems()
		if err == nil {
			last = ps
			for _, p := range ps {
				if matches(p, want) {
					return p
				}
			}
		}
		if time.Now().After(deadline) {
			logs, _ := m.c.KubectlErr("-n", chartNS, "logs", m.pod, "--tail=30")
			t.Fatalf("no problem %v within %v; last scrape: %v (err %v)\nmountwatchd's log:\n%s", want, timeout, last, err, logs)
		}
		time.Sleep(time.Second)
	}
}

func matches(p, want problem) bool {
	for k, v := range want {
		if p[k] != v {
			return false
		}
	}
	return true
}

// ranOnce waits until the daemon has probed the node's mounts at least
// twice, so that "no problem" means something.
func (m *mwd) ranOnce(t *testing.T) {
	t.Helper()
	first := -1.0
	testenv.WaitUntil(t, 2*time.Minute, "two probe rounds", func() bool {
		fams, err := m.metrics()
		if err != nil {
			return false
		}
		f := fams["mountwatchd_check_runs_total"]
		if f == nil {
			return false
		}
		var n float64
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "check" && l.GetValue() == "stale_mount" {
					n += s.GetCounter().GetValue()
				}
			}
		}
		if first < 0 {
			first = n
			return false
		}
		return n > first+1
	})
}

// logs is the DaemonSet pod's log (JSON lines on stderr).
func (m *mwd) logs() string {
	out, _ := m.c.KubectlErr("-n", chartNS, "logs", m.pod)
	return out
}
