//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
	"github.com/mountwatchd/mountwatchd/internal/testenv/kube"
)

// apiProxyPort is where the test forwards the API server (which listens on
// loopback only) at the node's address, for the DaemonSet's pod: the
// cluster has no kube-proxy, so the kubernetes Service's address leads
// nowhere, and the pod's in-cluster config is pointed here instead
// (KUBERNETES_SERVICE_HOST/PORT; the API server's certificate names the
// node's address, its advertise address).
const apiProxyPort = 16443

// apiProxy forwards NodeIP:apiProxyPort to the API server until the test
// ends. A connection made while the API server is down fails, as it would.
func apiProxy(t *testing.T, c *kube.Cluster) {
	t.Helper()
	l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", c.NodeIP, apiProxyPort))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				out, err := net.DialTimeout("tcp", strings.TrimPrefix(c.Server, "https://"), 5*time.Second)
				if err != nil {
					return
				}
				defer out.Close()
				go func() { _, _ = io.Copy(out, in); out.Close() }()
				_, _ = io.Copy(in, out)
			}()
		}
	}()
}

// deployKube is deploy with the chart's kubeAPI values (sets) on and the
// pod's in-cluster config pointed at apiProxy.
func deployKube(t *testing.T, c *kube.Cluster, sets ...string) *mwd {
	t.Helper()
	apiProxy(t, c)
	args := []string{"--set-json", fmt.Sprintf(`extraEnv=[{"name":"KUBERNETES_SERVICE_HOST","value":%q},{"name":"KUBERNETES_SERVICE_PORT","value":"%d"}]`,
		c.NodeIP, apiProxyPort)}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	return deploy(t, c, args...)
}

// kubeEvents are the events on the object named name in the suite's
// namespace.
func kubeEvents(t *testing.T, c *kube.Cluster, name string) []corev1.Event {
	t.Helper()
	out, err := c.KubectlErr("-n", kube.Namespace, "get", "events", "--field-selector", "involvedObject.name="+name, "-o", "json")
	if err != nil {
		return nil
	}
	var l corev1.EventList
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatal(err)
	}
	return l.Items
}

// eventsBy are the events of one reason, by reason.
func eventsBy(evs []corev1.Event, reason string) []corev1.Event {
	var out []corev1.Event
	for _, e := range evs {
		if e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

func waitEvents(t *testing.T, c *kube.Cluster, name, reason string, timeout time.Duration) corev1.Event {
	t.Helper()
	var evs []corev1.Event
	testenv.WaitUntil(t, timeout, fmt.Sprintf("a %s event on %s", reason, name), func() bool {
		evs = eventsBy(kubeEvents(t, c, name), reason)
		return len(evs) > 0
	})
	return evs[0]
}

func nodeObject(t *testing.T, c *kube.Cluster) corev1.Node {
	t.Helper()
	var n corev1.Node
	if err := json.Unmarshal([]byte(c.Kubectl(t, "get", "node", c.NodeName, "-o", "json")), &n); err != nil {
		t.Fatal(err)
	}
	return n
}

func mountCondition(t *testing.T, c *kube.Cluster) (corev1.NodeCondition, bool) {
	t.Helper()
	for _, cond := range nodeObject(t, c).Status.Conditions {
		if cond.Type == "MountProblem" {
			return cond, true
		}
	}
	return corev1.NodeCondition{}, false
}

func waitCondition(t *testing.T, c *kube.Cluster, status corev1.ConditionStatus, reason string) corev1.NodeCondition {
	t.Helper()
	var cond corev1.NodeCondition
	testenv.WaitUntil(t, 2*time.Minute, fmt.Sprintf("condition MountProblem %s %s", status, reason), func() bool {
		var ok bool
		cond, ok = mountCondition(t, c)
		return ok && cond.Status == status && cond.Reason == reason
	})
	return cond
}

// taints are the node's taints as key=value:effect.
func taints(t *testing.T, c *kube.Cluster) []string {
	t.Helper()
	var out []string
	for _, tn := range nodeObject(t, c).Spec.Taints {
		out = append(out, tn.Key+"="+tn.Value+":"+string(tn.Effect))
	}
	return out
}

const (
	ourTaint   = "mountwatchd.io/mount-problem=:NoSchedule"
	decoyTaint = "e2e.test/keep=yes:PreferNoSchedule"
)

func hasTaint(ts []string, want string) bool {
	for _, s := range ts {
		if s == want {
			return true
		}
	}
	return false
}

// TestKubeReporting deploys the chart with events, the condition and the
// taint on, on a real cluster whose node carries a taint of someone else's,
// then hangs a real pod's FUSE volume and resumes it, kills another's
// server while the API server is down, and takes a verb from the role.
func TestKubeReporting(t *testing.T) {
	c := kube.Start(t, kube.Options{})
	c.Kubectl(t, "taint", "node", c.NodeName, decoyTaint)
	m := deployKube(t, c, "kubeAPI.events=true", "kubeAPI.condition=true", "kubeAPI.taint=true", "kubeAPI.heartbeat=10s")
	hung := newVolume(t, c, "hung", nil)
	runPod(t, c, "hung", "hung", "")
	dead := newVolume(t, c, "dead", nil)
	runPod(t, c, "dead", "dead", "")
	m.ranOnce(t)
	waitCondition(t, c, corev1.ConditionFalse, "NoMountProblem")

	t.Run("hung", func(t *testing.T) { testHungEvents(t, c, m, hung) })
	t.Run("api_down", func(t *testing.T) { testAPIDown(t, c, m, dead) })
	t.Run("rbac_one_verb_short", func(t *testing.T) { testVerbShort(t, c, m) })

	// Every mountwatchd_kube_* series the alerting rules use is in the
	// pod's /metrics (the image test checks the others, without --kube.*).
	rules, err := os.ReadFile(filepath.Join(repoRoot(), "packaging/prometheus/mountwatchd.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	fams, err := m.metrics()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range regexp.MustCompile(`\bmountwatchd_kube_[a-z_]+\b`).FindAllString(string(rules), -1) {
		if len(fams[name].GetMetric()) == 0 {
			t.Errorf("the rules use %s, which the pod's /metrics does not have", name)
		}
	}
	if up := fams["mountwatchd_kube_helper_up"].GetMetric(); len(up) != 1 || up[0].GetGauge().GetValue() != 1 {
		t.Errorf("mountwatchd_kube_helper_up: %v, want 1", up)
	}

	// mountwatchd-kube talks to the API server with none of the three
	// capabilities the daemon holds, and cannot regain them.
	helpers := 0
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if strings.TrimSpace(string(comm)) != "mountwatchd-kub" || !ours(c, e.Name()) { // comm is 15 bytes
			continue
		}
		helpers++
		status, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		for _, want := range []string{"CapPrm:\t0000000000000000", "CapEff:\t0000000000000000", "NoNewPrivs:\t1"} {
			if !strings.Contains(string(status), want) {
				t.Errorf("mountwatchd-kube (pid %s): want %q in its status:\n%s", e.Name(), want, status)
			}
		}
	}
	if helpers != 1 {
		t.Errorf("%d mountwatchd-kube processes in the pod, want 1", helpers)
	}
}

// testHungEvents: one Warning on the pod and its claim however long the
// hang lasts, one Normal when the server resumes; the condition True then
// False; the taint on while it is critical, off after; the other taint
// untouched.
func testHungEvents(t *testing.T, c *kube.Cluster, m *mwd, v volume) {
	v.signal(t, c, syscall.SIGUSR1)
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			_ = syscall.Kill(v.serverPID(t, c), syscall.SIGUSR2)
		}
	})
	w := waitEvents(t, c, "hung", "HungMount", 2*time.Minute)
	t.Logf("pod event: %s %s %q (from %s on %s)", w.Type, w.Reason, w.Message, w.Source.Component, w.Source.Host)
	if w.Type != "Warning" || !strings.Contains(w.Message, `volume "hung"`) || !strings.Contains(w.Message, c.CSIDriver) ||
		w.Source.Component != "mountwatchd" || w.Source.Host != c.NodeName || w.ReportingController != "mountwatchd" {
		t.Errorf("the Warning names no volume and driver, or not from mountwatchd on %s: %+v", c.NodeName, w)
	}
	testenv.WaitUntil(t, time.Minute, "the Warning on the claim", func() bool { // the claim has the PV's name
		return countKind(eventsBy(kubeEvents(t, c, "hung"), "HungMount"), "PersistentVolumeClaim") == 1
	})
	cond := waitCondition(t, c, corev1.ConditionTrue, "HungMount")
	t.Logf("condition: %s %s %q", cond.Status, cond.Reason, cond.Message)
	testenv.WaitUntil(t, time.Minute, "the taint", func() bool { return hasTaint(taints(t, c), ourTaint) })
	if ts := taints(t, c); !hasTaint(ts, decoyTaint) {
		t.Errorf("the other taint is gone: %v", ts)
	}
	time.Sleep(40 * time.Second) // eight probe rounds, four condition heartbeats
	evs := kubeEvents(t, c, "hung")
	if ws := eventsBy(evs, "HungMount"); countKind(ws, "Pod") != 1 || ws[0].Count != 1 {
		t.Errorf("want exactly one Warning on the pod after eight probe rounds, got %v", describe(ws))
	}
	v.signal(t, c, syscall.SIGUSR2)
	resumed = true
	n := waitEvents(t, c, "hung", "HungMountCleared", 2*time.Minute)
	t.Logf("pod event: %s %s %q", n.Type, n.Reason, n.Message)
	evs = kubeEvents(t, c, "hung")
	if ws, ns := eventsBy(evs, "HungMount"), eventsBy(evs, "HungMountCleared"); countKind(ws, "Pod") != 1 || countKind(ns, "Pod") != 1 ||
		countKind(ws, "PersistentVolumeClaim") != 1 || ns[0].Type != "Normal" {
		t.Errorf("want one Warning and one Normal on the pod and on the claim, got %v", describe(evs))
	}
	waitCondition(t, c, corev1.ConditionFalse, "NoMountProblem")
	testenv.WaitUntil(t, time.Minute, "the taint removed", func() bool { return !hasTaint(taints(t, c), ourTaint) })
	if ts := taints(t, c); !hasTaint(ts, decoyTaint) || len(ts) != 1 {
		t.Errorf("taints after: %v, want only %s", ts, decoyTaint)
	}
	// mountwatchd-kube's counters reach the daemon's /metrics within a
	// couple of seconds (it sends them every 2s and after each state).
	taintChanges := func(op string) float64 {
		return counter(t, m, "mountwatchd_kube_taint_changes_total", problem{"op": op})
	}
	testenv.WaitUntil(t, 30*time.Second, "the taint's add and remove counted", func() bool {
		return taintChanges("add") >= 1 && taintChanges("remove") >= 1
	})
	if add, remove := taintChanges("add"), taintChanges("remove"); add != 1 || remove != 1 {
		t.Errorf("taint changes: %v adds and %v removes, want one of each", add, remove)
	}
}

func countKind(evs []corev1.Event, kind string) int {
	n := 0
	for _, e := range evs {
		if e.InvolvedObject.Kind == kind {
			n++
		}
	}
	return n
}

func describe(evs []corev1.Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "\n  %s %s/%s %s %s x%d: %s", e.Type, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Source.Component, e.Count, e.Message)
	}
	return b.String()
}
