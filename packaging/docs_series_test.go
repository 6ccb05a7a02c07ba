package packaging

import (
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mountwatchd/mountwatchd/internal/export"
	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

// problemSeries matches an example problem series and captures its labels.
var problemSeries = regexp.MustCompile(`^(mountwatchd_problem|mountwatchd_problem_first_seen_timestamp_seconds)\{([^}]*)\}`)

// labelNames are the names of a series' labels, in the order written.
func labelNames(labels string) []string {
	var names []string
	for _, m := range regexp.MustCompile(`([a-z_]+)="(?:[^"\\]|\\.)*"`).FindAllStringSubmatch(labels, -1) {
		names = append(names, m[1])
	}
	return names
}

// exportedProblemLabels are the labels of a problem series as the exporter
// prints it today.
func exportedProblemLabels(t *testing.T) []string {
	t.Helper()
	e := export.NewExposition(10, prometheus.NewRegistry())
	e.Publish(&export.State{Report: &finding.Report{Snapshot: &mounts.Snapshot{},
		Findings: []finding.Finding{{Check: "deleted_root", Severity: finding.Warning, MountPoint: "/m"}}}})
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if m := problemSeries.FindStringSubmatch(line); m != nil && m[1] == "mountwatchd_problem" {
			return labelNames(m[2])
		}
	}
	t.Fatalf("the exporter printed no mountwatchd_problem series:\n%s", rec.Body.String())
	return nil
}

// The example series of every check's page and of docs/metrics.md carry
// the labels the exporter prints today, in its order: a page written
// before a label was added (directory, csi_driver) fails here.
func TestDocsProblemSeriesLabels(t *testing.T) {
	want := exportedProblemLabels(t)
	pages, err := filepath.Glob(filepath.Join(top, "docs", "checks", "*.md"))
	if err != nil || len(pages) == 0 {
		t.Fatalf("no check pages: %v", err)
	}
	pages = append(pages, filepath.Join(top, "docs", "metrics.md"))
	for _, p := range pages {
		rel, _ := filepath.Rel(top, p)
		series := 0
		for i, line := range strings.Split(readDoc(t, rel), "\n") {
			m := problemSeries.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			series++
			if got := labelNames(m[2]); !slices.Equal(got, want) {
				t.Errorf("%s:%d: %s has the labels %q, the exporter prints %q", rel, i+1, m[1], got, want)
			}
		}
		if series == 0 && strings.Contains(rel, "checks") {
			t.Errorf("%s shows no problem series", rel)
		}
	}
}
