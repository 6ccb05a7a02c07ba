package kubeapi

import (
	"context"
	"errors"
	"flag"
	"path/filepath"
	"testing"

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
	testenv.GoldenMetrics(t, filepath.Join("testdata", "metrics.prom"), *update, r.Collectors()...)
}
