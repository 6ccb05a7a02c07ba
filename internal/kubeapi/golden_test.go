package kubeapi

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/mountwatchd/mountwatchd/internal/kubelink"
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
	golden(t, filepath.Join("testdata", "metrics.prom"), b.Bytes())
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/kubeapi -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test ./internal/kubeapi -update):\n%s", path, got)
	}
}
