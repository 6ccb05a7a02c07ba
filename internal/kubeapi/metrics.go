package kubeapi

import (
	"context"
	"errors"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Requests to the API server, the request label of the metrics.
const (
	reqCreateEvent     = "create_event"
	reqPatchEvent      = "patch_event"
	reqGetPV           = "get_persistentvolume"
	reqPatchNodeStatus = "patch_node_status"
	reqGetNode         = "get_node"
	reqPatchNode       = "patch_node"
)

// metrics are the reporter's series, registered only when it is on.
type metrics struct {
	requests     *prometheus.CounterVec
	errs         *prometheus.CounterVec
	events       *prometheus.CounterVec
	queueLen     prometheus.GaugeFunc
	queueCap     prometheus.GaugeFunc
	taintChanges *prometheus.CounterVec
}

func newMetrics(qlen, qcap func() float64) *metrics {
	const ns, sub = "mountwatchd", "kube"
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "api_requests_total",
			Help: "Requests to the Kubernetes API server, by request."}, []string{"request"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "api_errors_total",
			Help: "Requests to the Kubernetes API server that failed, by request and reason (forbidden, not_found, conflict, invalid, timeout, unreachable, server_error, other)."},
			[]string{"request", "reason"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "events_total",
			Help: "Kubernetes events by outcome: sent (created or patched), skipped (client-go's per-object rate limit), dropped_queue_full (the oldest dropped from a full queue), rejected (refused by the API server, not retried), abandoned (still queued at stop)."},
			[]string{"outcome"}),
		queueLen: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "event_queue_length",
			Help: "Events waiting to be sent to the API server."}, qlen),
		queueCap: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "event_queue_capacity",
			Help: "The most events that wait; past it the oldest is dropped (--kube.event-queue)."}, qcap),
		taintChanges: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "taint_changes_total",
			Help: "Writes of the node's " + TaintKey + " taint, by operation (add, remove)."}, []string{"op"}),
	}
	for _, r := range []string{reqCreateEvent, reqPatchEvent, reqGetPV, reqPatchNodeStatus, reqGetNode, reqPatchNode} {
		m.requests.WithLabelValues(r)
	}
	for _, o := range []string{"sent", "skipped", "dropped_queue_full", "rejected", "abandoned"} {
		m.events.WithLabelValues(o)
	}
	m.taintChanges.WithLabelValues("add")
	m.taintChanges.WithLabelValues("remove")
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.errs, m.events, m.queueLen, m.queueCap, m.taintChanges}
}

// request counts one request and, when it failed, its error; it returns
// the error's reason ("" for none).
func (m *metrics) request(req string, err error) string {
	m.requests.WithLabelValues(req).Inc()
	if err == nil {
		return ""
	}
	r := errReason(err)
	m.errs.WithLabelValues(req, r).Inc()
	return r
}

// errReason is a bounded name for what went wrong with a request.
func errReason(err error) string {
	var ne net.Error
	switch {
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
		return "forbidden"
	case apierrors.IsNotFound(err):
		return "not_found"
	case apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
		return "conflict"
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		return "invalid"
	case errors.Is(err, context.DeadlineExceeded), apierrors.IsTimeout(err), apierrors.IsServerTimeout(err):
		return "timeout"
	case apierrors.IsTooManyRequests(err), apierrors.IsInternalError(err), apierrors.IsServiceUnavailable(err):
		return "server_error"
	case errors.As(err, &ne):
		return "unreachable"
	}
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		if c := se.Status().Code; c >= 500 {
			return "server_error"
		}
		return "other"
	}
	return "unreachable" // transport errors that are not net.Error (EOF, TLS)
}

// retryable reports whether a failed request may succeed later unchanged:
// the server was unreachable, slow or overloaded. A refusal (forbidden,
// invalid, not found) is not retried.
func retryable(reason string) bool {
	return reason == "timeout" || reason == "unreachable" || reason == "server_error"
}
