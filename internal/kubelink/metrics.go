package kubelink

import "github.com/prometheus/client_golang/prometheus"

// linkMetrics are the daemon's own series about the helper.
type linkMetrics struct {
	up        prometheus.Gauge
	starts    prometheus.Counter
	snapshots *prometheus.CounterVec
}

func newLinkMetrics() *linkMetrics {
	const ns, sub = "mountwatchd", "kube"
	m := &linkMetrics{
		up: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "helper_up",
			Help: "1 while " + HelperName + ", the process that talks to the API server, runs."}),
		starts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "helper_starts_total",
			Help: "Starts of " + HelperName + " (more than one: it exited and was restarted; the daemon logs why)."}),
		snapshots: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "snapshots_total",
			Help: "The daemon's states handed to " + HelperName + ": sent, or superseded by a newer one before it took them (it was slow or restarting)."},
			[]string{"outcome"}),
	}
	m.snapshots.WithLabelValues("sent")
	m.snapshots.WithLabelValues("superseded")
	return m
}

func (m *linkMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.up, m.starts, m.snapshots}
}
