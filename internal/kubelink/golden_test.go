package kubelink

import (
	"bytes"
	"flag"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The daemon's own series about mountwatchd-kube: testdata/metrics.prom,
// which the packaging tests read to know every name an alert may use.
func TestMetricsGolden(t *testing.T) {
	m := newLinkMetrics()
	m.starts.Inc()
	m.up.Set(1)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m.collectors()...)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, f := range fams {
		if _, err := expfmt.MetricFamilyToText(&b, f); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Golden(t, filepath.Join("testdata", "metrics.prom"), b.Bytes(), *update)
}
