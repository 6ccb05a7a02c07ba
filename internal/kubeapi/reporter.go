package kubeapi

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/record"

	"github.com/mountwatchd/mountwatchd/internal/kubelink"
)

// Defaults for Config.
const (
	DefaultTimeout    = kubelink.DefaultTimeout
	DefaultHeartbeat  = kubelink.DefaultHeartbeat
	DefaultQueueSize  = kubelink.DefaultQueueSize
	claimCacheTTL     = 10 * time.Minute
	maxClaimCacheSize = 4096
)

// Config is the --kube.* settings (kubelink.Config) and the log.
type Config struct {
	kubelink.Config
	Log *zap.Logger
}

func (c Config) withDefaults() Config {
	if c.ConditionType == "" {
		c.ConditionType = DefaultConditionType
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.QueueSize <= 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	return c
}

// Pauses between retries: doubling from the first to the longest.
var (
	firstRetryDelay = time.Second
	maxRetryDelay   = 30 * time.Second
)

// Reporter tells the API server what the daemon publishes. Publish is safe
// from any goroutine and never blocks; Start and Stop are called once.
type Reporter struct {
	cfg Config
	log *zap.Logger
	api API
	m   *metrics

	latest atomic.Pointer[kubelink.Snapshot]
	wake   chan struct{}

	// events
	bcast  record.EventBroadcaster
	rec    record.EventRecorder
	q      *queue[item]
	corr   *record.EventCorrelator
	active map[string]activeProblem // owned by the worker
	claims map[string]claimEntry    // owned by the sender
	said   *saidErrors

	node *nodeSync

	cancel context.CancelFunc
	wg     sync.WaitGroup
	stopMu sync.Mutex
	stop   bool
}

// New returns a reporter that talks to the API server through api.
func New(cfg Config, api API) *Reporter {
	cfg = cfg.withDefaults()
	r := &Reporter{cfg: cfg, log: cfg.Log.With(zap.String("component", "kubeapi")), api: api,
		wake: make(chan struct{}, 1), q: newQueue[item](cfg.QueueSize),
		active: map[string]activeProblem{}, claims: map[string]claimEntry{}}
	r.said = &saidErrors{log: r.log, last: map[string]string{}}
	r.m = newMetrics(func() float64 { return float64(r.q.len()) }, func() float64 { return float64(r.q.capacity()) })
	if cfg.Events {
		r.corr = record.NewEventCorrelatorWithOptions(record.CorrelatorOptions{})
		r.bcast = record.NewBroadcaster()
		r.rec = r.bcast.NewRecorder(runtime.NewScheme(), v1.EventSource{Component: "mountwatchd", Host: cfg.NodeName})
		r.bcast.StartEventWatcher(func(ev *v1.Event) { r.enqueue(item{ev: ev}) })
	}
	if cfg.Condition || cfg.Taint {
		r.node = newNodeSync(cfg, api, r.m, r.said, r.log)
	}
	return r
}

// Collectors are the reporter's metrics.
func (r *Reporter) Collectors() []prometheus.Collector { return r.m.collectors() }

// Publish hands the reporter the daemon's latest snapshot; it never
// blocks.
func (r *Reporter) Publish(s *kubelink.Snapshot) {
	r.latest.Store(s)
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Start starts the reporter's goroutines.
func (r *Reporter) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Add(1)
	go func() { defer r.wg.Done(); r.work(ctx) }()
	if r.cfg.Events {
		r.wg.Add(1)
		go func() { defer r.wg.Done(); r.send(ctx) }()
	}
	if r.node != nil {
		r.wg.Add(1)
		go func() { defer r.wg.Done(); r.node.run(ctx) }()
	}
	r.log.Info("reporting to the Kubernetes API server", zap.String("node", r.cfg.NodeName), zap.Bool("events", r.cfg.Events),
		zap.Bool("condition", r.cfg.Condition), zap.String("condition_type", r.cfg.ConditionType), zap.Bool("taint", r.cfg.Taint))
}

// Stop stops the goroutines, then, until ctx is done, sends the events
// still queued and, with ClearOnStop and clean, clears the condition and
// the taint (not clean: the daemon is gone, its problems may remain).
func (r *Reporter) Stop(ctx context.Context, clean bool) {
	r.stopMu.Lock()
	r.stop = true
	r.stopMu.Unlock()
	if r.cancel != nil {
		r.cancel()
	}
	r.wg.Wait()
	if r.cfg.Events {
		r.flush(ctx)
		r.bcast.Shutdown()
	}
	if r.node != nil && r.cfg.ClearOnStop && clean {
		r.node.clear(ctx)
	}
}

// work turns each published state into events and the node's wanted
// condition and taint.
func (r *Reporter) work(ctx context.Context) {
	complete := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
		s := r.latest.Load()
		if s == nil {
			continue
		}
		if r.cfg.Events {
			r.diffEvents(s.Findings, time.Now())
		}
		// The condition and the taint wait for every check's first
		// result: a problem not yet probed is not an absent one.
		complete = complete || s.Complete
		if r.node != nil && complete {
			r.node.want(wantFrom(s.Findings))
		}
	}
}

// saidErrors logs a request's failure once per change of reason, and once
// when it works again, not on every retry.
type saidErrors struct {
	mu   sync.Mutex
	log  *zap.Logger
	last map[string]string // request -> reason of its last failure
}

func (s *saidErrors) result(req, reason string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.last[req]
	if prev == reason {
		return
	}
	s.last[req] = reason
	if reason == "" {
		s.log.Info("Kubernetes API request works again", zap.String("request", req), zap.String("previous_error", prev))
		return
	}
	s.log.Warn("Kubernetes API request failed", zap.String("request", req), zap.String("reason", reason), zap.Error(err),
		zap.String("hint", hint(reason)))
}

// hint says what a failure's reason usually means.
func hint(reason string) string {
	switch reason {
	case "forbidden":
		return "the ServiceAccount's ClusterRole lacks this verb (see the chart's clusterrole.yaml)"
	case "timeout", "unreachable", "server_error":
		return "the API server is slow or down; retried, checks go on"
	}
	return ""
}
