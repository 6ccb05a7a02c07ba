package kubeapi

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mountwatchd/mountwatchd/internal/finding"
)

// nodeWant is what the node should say: the condition and whether the
// taint should be on.
type nodeWant struct {
	problem         bool
	reason, message string
	critical        bool
}

// wantFrom is the node's wanted state for the current findings: the
// condition True while a warning or critical problem exists, with the
// worst check's reason, the taint while a critical one does.
func wantFrom(findings []finding.Finding) nodeWant {
	counts := map[finding.ID]int{}
	worst := map[finding.ID]int{}
	var crit, warn int
	for i := range findings {
		f := &findings[i]
		switch f.Severity {
		case finding.Critical:
			crit++
		case finding.Warning:
			warn++
		default:
			continue
		}
		counts[f.Check]++
		worst[f.Check] = max(worst[f.Check], f.Severity.Rank())
	}
	if crit+warn == 0 {
		return nodeWant{reason: ReasonNoProblem, message: "mountwatchd finds no warning or critical mount problem"}
	}
	ids := make([]finding.ID, 0, len(counts))
	for id := range counts {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		if worst[ids[i]] != worst[ids[j]] {
			return worst[ids[i]] > worst[ids[j]]
		}
		return ids[i] < ids[j]
	})
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprintf("%s %d", id, counts[id])
	}
	msg := fmt.Sprintf("%d critical, %d warning mount problems: %s (mountwatchd's metrics and journal name each mount and pod)",
		crit, warn, strings.Join(parts, ", "))
	return nodeWant{problem: true, reason: Reason(ids[0]), message: truncate(msg), critical: crit > 0}
}

// nodeSync writes the condition and the taint. Its run goroutine owns all
// but the wanted state.
type nodeSync struct {
	cfg  Config
	api  API
	m    *metrics
	said *saidErrors
	log  *zap.Logger

	mu     sync.Mutex
	wanted *nodeWant
	wake   chan struct{}

	// what was last written
	written    *v1.NodeCondition
	beat       time.Time
	tainted    *bool // nil: not known
	retryDelay time.Duration
	retryAt    time.Time // no attempt before, after a failure
}

func newNodeSync(cfg Config, api API, m *metrics, said *saidErrors, log *zap.Logger) *nodeSync {
	return &nodeSync{cfg: cfg, api: api, m: m, said: said, log: log, wake: make(chan struct{}, 1)}
}

func (n *nodeSync) want(w nodeWant) {
	n.mu.Lock()
	n.wanted = &w
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *nodeSync) load() *nodeWant {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.wanted
}

func (n *nodeSync) run(ctx context.Context) {
	t := time.NewTimer(n.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.wake:
			if time.Now().Before(n.retryAt) {
				continue // backing off: a new state waits for the retry
			}
		case <-t.C:
		}
		next := n.sync(ctx, time.Now())
		n.retryAt = time.Time{}
		if n.retryDelay > 0 {
			n.retryAt = time.Now().Add(next)
		}
		t.Stop()
		select {
		case <-t.C:
		default:
		}
		t.Reset(next)
	}
}

// sync writes what changed (and the condition's heartbeat when due) and
// returns when it should run again.
func (n *nodeSync) sync(ctx context.Context, now time.Time) time.Duration {
	w := n.load()
	if w == nil {
		return n.cfg.Heartbeat
	}
	ok := true
	if n.cfg.Condition {
		ok = n.syncCondition(ctx, *w, now) == nil
	}
	if n.cfg.Taint && (n.tainted == nil || *n.tainted != w.critical) {
		ok = n.syncTaint(ctx, w.critical) == nil && ok
	}
	if !ok {
		if n.retryDelay == 0 {
			n.retryDelay = firstRetryDelay
		} else {
			n.retryDelay = min(2*n.retryDelay, maxRetryDelay, n.cfg.Heartbeat)
		}
		return n.retryDelay
	}
	n.retryDelay = 0
	if !n.cfg.Condition {
		return n.cfg.Heartbeat
	}
	return max(n.cfg.Heartbeat-time.Since(n.beat), time.Second)
}

// syncCondition patches the condition through nodes/status when it
// changed or its heartbeat is due.
func (n *nodeSync) syncCondition(ctx context.Context, w nodeWant, now time.Time) error {
	status := v1.ConditionFalse
	if w.problem {
		status = v1.ConditionTrue
	}
	prev := n.written
	if prev != nil && prev.Status == status && prev.Reason == w.reason && prev.Message == w.message && now.Sub(n.beat) < n.cfg.Heartbeat {
		return nil
	}
	c := v1.NodeCondition{Type: v1.NodeConditionType(n.cfg.ConditionType), Status: status, Reason: w.reason, Message: w.message,
		LastHeartbeatTime: metav1.NewTime(now), LastTransitionTime: metav1.NewTime(now)}
	if prev != nil && prev.Status == status {
		c.LastTransitionTime = prev.LastTransitionTime
	}
	if err := n.patchCondition(ctx, c); err != nil {
		return err
	}
	if prev == nil || prev.Status != status {
		n.log.Info("node condition set", zap.String("type", n.cfg.ConditionType), zap.String("status", string(status)),
			zap.String("reason", w.reason), zap.String("message", w.message))
	}
	n.written, n.beat = &c, now
	return nil
}

func (n *nodeSync) patchCondition(ctx context.Context, c v1.NodeCondition) error {
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []v1.NodeCondition{c}}})
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	err = n.api.PatchNodeStatus(rctx, n.cfg.NodeName, patch)
	n.said.result(reqPatchNodeStatus, n.m.request(reqPatchNodeStatus, err), err)
	return err
}

// isOurs reports whether t is the taint this daemon sets.
func isOurs(t v1.Taint) bool { return t.Key == TaintKey && t.Effect == v1.TaintEffectNoSchedule }

// maxTaintTries bounds the retries of a taint patch refused because the
// node changed since it was read.
const maxTaintTries = 5

// syncTaint reads the node's taints and, when ours is not as wanted, adds
// or removes it, keeping every other taint: the patch carries the
// resourceVersion read, so a concurrent change of the taints makes it fail
// (conflict) instead of being overwritten, and it is read again.
func (n *nodeSync) syncTaint(ctx context.Context, want bool) error {
	for try := 0; ; try++ {
		rctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
		node, err := n.api.GetNode(rctx, n.cfg.NodeName)
		cancel()
		n.said.result(reqGetNode, n.m.request(reqGetNode, err), err)
		if err != nil {
			return err
		}
		taints := []v1.Taint{}
		has := false
		for _, t := range node.Spec.Taints {
			if isOurs(t) {
				has = true
				continue
			}
			taints = append(taints, t)
		}
		if has == want {
			n.tainted = &want
			return nil
		}
		if want {
			taints = append(taints, v1.Taint{Key: TaintKey, Effect: v1.TaintEffectNoSchedule})
		}
		patch, err := json.Marshal(map[string]any{
			"metadata": map[string]any{"resourceVersion": node.ResourceVersion},
			"spec":     map[string]any{"taints": taints},
		})
		if err != nil {
			return err
		}
		rctx, cancel = context.WithTimeout(ctx, n.cfg.Timeout)
		err = n.api.PatchNode(rctx, n.cfg.NodeName, patch)
		cancel()
		n.said.result(reqPatchNode, n.m.request(reqPatchNode, err), err)
		if apierrors.IsConflict(err) && try+1 < maxTaintTries {
			continue
		}
		if err != nil {
			return err
		}
		op := "remove"
		if want {
			op = "add"
		}
		n.m.taintChanges.WithLabelValues(op).Inc()
		n.log.Info("node taint "+op, zap.String("taint", TaintKey+":NoSchedule"))
		n.tainted = &want
		return nil
	}
}

// clear sets the condition False and removes the taint this process set,
// for a clean stop, within ctx.
func (n *nodeSync) clear(ctx context.Context) {
	if n.cfg.Condition {
		_ = n.syncCondition(ctx, nodeWant{reason: ReasonStopped, message: "mountwatchd stopped; mount problems are not reported until it runs again"}, time.Now())
	}
	if n.cfg.Taint && n.tainted != nil && *n.tainted {
		_ = n.syncTaint(ctx, false)
	}
}
