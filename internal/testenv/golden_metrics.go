package testenv

import (
	"bytes"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// GoldenMetrics gathers reg (pedantically: every series checked against
// its description) and compares its text exposition with the file at path,
// as Golden does.
func GoldenMetrics(t testing.TB, path string, update bool, cs ...prometheus.Collector) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(cs...)
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
	Golden(t, path, b.Bytes(), update)
}
