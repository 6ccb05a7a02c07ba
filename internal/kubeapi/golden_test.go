package kubeapi

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/mountwatchd/mountwatchd/internal/kubelink"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The reporter's series, as mountwatchd-kube sends them to the daemon
// (after one request that failed): testdata/metrics.prom, which the
// packaging tests read to know every name an alert may use.
func TestMetricsGolden(t *testing.T) {
	r := New(Config{Config: kubelink.Config{Events: true, Condition: true, Taint: true, NodeName: testNode}}, nil)
	r.m.request(reqCreateEvent, context.DeadlineExceeded)
	r.m.request(reqPatchNodeStatus, errors.New("EOF"))
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(r.Collectors()...)
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
