//go:build e2e

package e2e

import (
	"syscall"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/testenv/kube"
)

// TestRealNodeOperatorLayout is a node laid out the way the seed's operator
// chose: kubelet's --root-dir at /data/kubernetes/kubelet, podLogsDir set in
// kubelet's config file, pods under a cgroup root of its own. mountwatchd is
// given no path flag: it must find all of it from the real kubelet's
// command line, config file and cgroups, and name the pod of a finding.
func TestRealNodeOperatorLayout(t *testing.T) {
	c := kube.Start(t, kube.Options{
		RootDir:    "/data/kubernetes/kubelet",
		PodLogsDir: "/data/kubernetes/pod-logs",
		CgroupRoot: "/mwe2e-operator",
	})
	m := deploy(t, c)
	v := newVolume(t, c, "seed", nil)
	runPod(t, c, "seed", "seed", "")
	m.ranOnce(t)
	assertNoProblems(t, m, "a healthy node laid out by its operator")
	v.signal(t, c, syscall.SIGKILL)
	p := m.waitProblem(t, time.Minute, problem{"check": "stale_mount", "volume": "seed"})
	if p["pod_namespace"] != kube.Namespace || p["pod_name"] != "seed" {
		t.Fatalf("stale_mount on the seed's volume names pod %q/%q, want %s/seed: the layout was not found from the real kubelet\nmountwatchd's log:\n%s",
			p["pod_namespace"], p["pod_name"], kube.Namespace, tail(m.logs(), 30))
	}
	t.Logf("mountwatchd: %v", p)
}
