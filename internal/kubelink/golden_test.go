package kubelink

import (
	"flag"
	"path/filepath"
	"testing"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The daemon's own series about mountwatchd-kube: testdata/metrics.prom,
// which the packaging tests read to know every name an alert may use.
func TestMetricsGolden(t *testing.T) {
	m := newLinkMetrics()
	m.starts.Inc()
	m.up.Set(1)
	testenv.GoldenMetrics(t, filepath.Join("testdata", "metrics.prom"), *update, m.collectors()...)
}
