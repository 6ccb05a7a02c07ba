package kubeapi

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/mountwatchd/mountwatchd/internal/check"
	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/kubelink"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

const (
	testNode = "node-1"
	testNS   = "apps"
)

// hungFinding is hung_mount on pod apps/web's CSI volume pv-1.
func hungFinding(sev finding.Severity) finding.Finding {
	return finding.Finding{Check: "hung_mount", Severity: sev, Message: "the FUSE server does not answer",
		MountID: 7, MountPoint: "/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~csi/pv-1/mount", FSType: "fuse.ceph-fuse",
		Kube: mounts.Kube{Kind: mounts.PodVolume, PodUID: "uid-1", PodNamespace: testNS, PodName: "web",
			VolumePlugin: mounts.CsiPlugin, Volume: "pv-1", CSIDriver: "cephfs.csi.ceph.com", VolumeHandle: "h-1"},
		FirstSeen: time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)}
}

func state(findings ...finding.Finding) *kubelink.Snapshot {
	return kubelink.NewSnapshot(findings, true)
}

func objects() []runtime.Object {
	return []runtime.Object{
		&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: testNode},
			Spec: v1.NodeSpec{Taints: []v1.Taint{{Key: "dedicated", Value: "db", Effect: v1.TaintEffectNoSchedule},
				{Key: TaintKey, Effect: v1.TaintEffectNoExecute}}}},
		&v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-1"}, Spec: v1.PersistentVolumeSpec{
			ClaimRef:               &v1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: testNS, Name: "data", UID: "claim-uid"},
			PersistentVolumeSource: v1.PersistentVolumeSource{CSI: &v1.CSIPersistentVolumeSource{Driver: "cephfs.csi.ceph.com", VolumeHandle: "h-1"}}}},
	}
}

func start(t *testing.T, cs *fake.Clientset, cfg Config) *Reporter {
	t.Helper()
	cfg.NodeName = testNode
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	r := New(cfg, typedAPI{cs.CoreV1()})
	r.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.Stop(ctx, true)
	})
	return r
}

// eventsOn lists "Type Reason" of the events on the object named name.
func eventsOn(t *testing.T, cs *fake.Clientset, name string) []string {
	t.Helper()
	list, err := cs.CoreV1().Events(testNS).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range list.Items {
		if e.InvolvedObject.Name == name {
			out = append(out, e.Type+" "+e.Reason)
		}
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEventOncePerProblem: a problem seen in many states gets one Warning
// event on its pod and on its claim, one Normal when it clears, whatever
// the number of states in between (a poll is no new problem).
func TestEventOncePerProblem(t *testing.T) {
	cs := fake.NewClientset(objects()...)
	r := start(t, cs, Config{Config: kubelink.Config{Events: true}})
	for i := 0; i < 20; i++ {
		r.Publish(state(hungFinding(finding.Critical)))
		time.Sleep(5 * time.Millisecond)
	}
	waitFor(t, "Warning events on the pod and the claim", func() bool {
		return len(eventsOn(t, cs, "web")) == 1 && len(eventsOn(t, cs, "data")) == 1
	})
	r.Publish(state())
	waitFor(t, "Normal events", func() bool { return len(eventsOn(t, cs, "web")) == 2 && len(eventsOn(t, cs, "data")) == 2 })
	time.Sleep(100 * time.Millisecond)
	for _, name := range []string{"web", "data"} {
		got := strings.Join(eventsOn(t, cs, name), ", ")
		if got != "Warning HungMount, Normal HungMountCleared" && got != "Normal HungMountCleared, Warning HungMount" {
			t.Errorf("events on %s: %s", name, got)
		}
	}
	list, _ := cs.CoreV1().Events(testNS).List(context.Background(), metav1.ListOptions{})
	for _, e := range list.Items {
		if e.Count != 1 {
			t.Errorf("event %s on %s counted %d times: want one per problem, not one per state", e.Reason, e.InvolvedObject.Name, e.Count)
		}
		if e.Source.Component != "mountwatchd" || e.Source.Host != testNode || e.ReportingController != "mountwatchd" || e.ReportingInstance != testNode {
			t.Errorf("event %s: source %+v, reporting %s/%s", e.Reason, e.Source, e.ReportingController, e.ReportingInstance)
		}
		if e.Type == "Warning" && (!strings.Contains(e.Message, `volume "pv-1"`) || !strings.Contains(e.Message, "cephfs.csi.ceph.com")) {
			t.Errorf("warning message names no volume and driver: %s", e.Message)
		}
	}
}

// TestClaimOnlyWhenTheVolumeIsItsPV: a volume named like a PV whose handle
// differs (an inline volume) gets no claim event.
func TestClaimOnlyWhenTheVolumeIsItsPV(t *testing.T) {
	cs := fake.NewClientset(objects()...)
	r := start(t, cs, Config{Config: kubelink.Config{Events: true}})
	f := hungFinding(finding.Critical)
	f.VolumeHandle = "another"
	r.Publish(state(f))
	waitFor(t, "the pod's Warning", func() bool { return len(eventsOn(t, cs, "web")) == 1 })
	waitFor(t, "the PV lookup", func() bool { return testutil.ToFloat64(r.m.requests.WithLabelValues(reqGetPV)) == 1 })
	time.Sleep(50 * time.Millisecond)
	if ev := eventsOn(t, cs, "data"); len(ev) != 0 {
		t.Errorf("claim events for a volume that is not its PV: %v", ev)
	}
}

func condition(t *testing.T, cs *fake.Clientset) *v1.NodeCondition {
	t.Helper()
	n, err := cs.CoreV1().Nodes().Get(context.Background(), testNode, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == "MountTrouble" {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

// TestConditionAndTaint: the condition goes True with the worst check as
// reason and back to False; the taint is added once while critical and
// removed once after, and the node's other taints stay as they were.
func TestConditionAndTaint(t *testing.T) {
	cs := fake.NewClientset(objects()...)
	var patches atomic.Int32
	cs.PrependReactor("patch", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() == "" {
			patches.Add(1)
		}
		return false, nil, nil
	})
	r := start(t, cs, Config{Config: kubelink.Config{Condition: true, ConditionType: "MountTrouble", Taint: true, ClearOnStop: true}})
	r.Publish(kubelink.NewSnapshot([]finding.Finding{hungFinding(finding.Critical)}, false)) // not complete: nothing yet
	time.Sleep(50 * time.Millisecond)
	if c := condition(t, cs); c != nil {
		t.Fatalf("condition written before every check ran: %+v", c)
	}
	warn := hungFinding(finding.Warning)
	warn.Check = "stale_mount"
	for i := 0; i < 10; i++ {
		r.Publish(state(warn, hungFinding(finding.Critical)))
	}
	waitFor(t, "condition True", func() bool { c := condition(t, cs); return c != nil && c.Status == v1.ConditionTrue })
	if c := condition(t, cs); c.Reason != "HungMount" || !strings.Contains(c.Message, "1 critical, 1 warning") {
		t.Errorf("condition: %+v", c)
	}
	waitFor(t, "the taint", func() bool { return hasTaint(t, cs) })
	r.Publish(state())
	waitFor(t, "condition False", func() bool { c := condition(t, cs); return c.Status == v1.ConditionFalse })
	waitFor(t, "the taint removed", func() bool { return !hasTaint(t, cs) })
	if n := patches.Load(); n != 2 {
		t.Errorf("%d patches of the node: want one add and one remove", n)
	}
	n, _ := cs.CoreV1().Nodes().Get(context.Background(), testNode, metav1.GetOptions{})
	if len(n.Spec.Taints) != 2 || n.Spec.Taints[0].Key != "dedicated" || n.Spec.Taints[1].Effect != v1.TaintEffectNoExecute {
		t.Errorf("other taints changed: %+v", n.Spec.Taints)
	}
}

func hasTaint(t *testing.T, cs *fake.Clientset) bool {
	n, err := cs.CoreV1().Nodes().Get(context.Background(), testNode, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tn := range n.Spec.Taints {
		if isOurs(tn) {
			return true
		}
	}
	return false
}

// TestAPIDownNeverBlocks: with every request failing as an unreachable
// server's, Publish returns at once, the queue keeps the newest and counts
// the oldest it drops, and once the server answers the queued events go.
func TestAPIDownNeverBlocks(t *testing.T) {
	cs := fake.NewClientset(objects()...)
	var down atomic.Bool
	down.Store(true)
	cs.PrependReactor("*", "*", func(k8stesting.Action) (bool, runtime.Object, error) {
		if down.Load() {
			return true, nil, &netErr{}
		}
		return false, nil, nil
	})
	r := start(t, cs, Config{Config: kubelink.Config{Events: true, Condition: true, ConditionType: "MountTrouble", QueueSize: 4}})
	for i := 0; i < 10; i++ {
		f := hungFinding(finding.Critical)
		f.PodUID, f.PodName = f.PodUID+string(rune('a'+i)), f.PodName+string(rune('a'+i))
		done := make(chan struct{})
		go func() { r.Publish(state(f)); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Publish blocked while the API server is down")
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitFor(t, "dropped events counted", func() bool {
		return testutil.ToFloat64(r.m.events.WithLabelValues("dropped_queue_full")) > 0
	})
	if got := testutil.ToFloat64(r.m.errs.WithLabelValues(reqPatchNodeStatus, "unreachable")); got == 0 {
		t.Error("no unreachable error counted for the condition")
	}
	down.Store(false)
	waitFor(t, "the queued events sent", func() bool { return r.q.len() == 0 && len(eventsOn(t, cs, "webj")) == 1 })
	waitFor(t, "the condition caught up", func() bool { c := condition(t, cs); return c != nil && c.Status == v1.ConditionTrue })
}

type netErr struct{}

func (*netErr) Error() string   { return "dial tcp 127.0.0.1:6443: connect: connection refused" }
func (*netErr) Timeout() bool   { return false }
func (*netErr) Temporary() bool { return true }

// TestForbiddenSaysWhy: a ClusterRole without events create: the event is
// rejected, not retried, counted as forbidden, and logged once with the
// hint the README quotes.
func TestForbiddenSaysWhy(t *testing.T) {
	cs := fake.NewClientset(objects()...)
	cs.PrependReactor("create", "events", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "events"}, "", errors.New("RBAC: no"))
	})
	first := firstRetryDelay
	firstRetryDelay = 10 * time.Millisecond
	t.Cleanup(func() { firstRetryDelay = first })
	core, logs := observer.New(zap.InfoLevel)
	r := start(t, cs, Config{Config: kubelink.Config{Events: true}, Log: zap.New(core)})
	r.Publish(state(hungFinding(finding.Critical)))
	// Retried (an API server starting refuses for a while), then dropped.
	waitFor(t, "two rejected events (pod and claim)", func() bool {
		return testutil.ToFloat64(r.m.events.WithLabelValues("rejected")) == 2
	})
	if got := testutil.ToFloat64(r.m.errs.WithLabelValues(reqCreateEvent, "forbidden")); got != 2*(maxRefusals+1) {
		t.Errorf("forbidden errors: %v", got)
	}
	warned := logs.FilterMessage("Kubernetes API request failed").All()
	if len(warned) != 1 || !strings.Contains(warned[0].ContextMap()["hint"].(string), "ClusterRole lacks") {
		t.Errorf("want one warning naming the ClusterRole, got %v", warned)
	}
}

// TestReasons: every registered check has a CamelCase reason.
func TestReasons(t *testing.T) {
	for _, d := range check.Declared() {
		r := Reason(d.ID)
		if r == "" || r[0] < 'A' || r[0] > 'Z' || strings.ContainsAny(r, "_ ") {
			t.Errorf("%s: reason %q", d.ID, r)
		}
	}
	if Reason("hung_mount") != "HungMount" || ClearedReason("deleted_root") != "DeletedRootCleared" {
		t.Error("reasons changed: they are documented and must not")
	}
}

func TestMetricsLint(t *testing.T) {
	r := New(Config{Config: kubelink.Config{Events: true, NodeName: testNode}}, typedAPI{fake.NewClientset().CoreV1()})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(r.Collectors()...)
	if probs, err := testutil.GatherAndLint(reg); err != nil || len(probs) > 0 {
		t.Errorf("lint: %v %v", err, probs)
	}
}
