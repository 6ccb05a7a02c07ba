package export

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/mountwatchd/mountwatchd/internal/check"
	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
	"github.com/mountwatchd/mountwatchd/internal/walk"
)

// fixedState is the brief's node with F1, plus probe and scan stats and every
// check id registered, at fixed times.
func fixedState(t *testing.T) *State {
	t.Helper()
	rep := fixedReport(t)
	rep.Probe = &probe.Stats{Connections: 3, Blocked: 1, NotProbed: 1, Probes: 42, Timeouts: 2}
	rep.Scan = &walk.Stats{Entries: 12345, Passes: 2, BudgetExhausted: 1, Complete: true}
	at := time.Date(2026, 11, 22, 10, 0, 5, 0, time.UTC)
	rep.Table = &finding.TableStats{Size: 14, MountMax: 100000, Growth: 3, FirstSize: 11, FirstTaken: at}
	// A running pod's CSI volume left unmounted: the series names the
	// volume's directory besides the filesystem the writes land on.
	rep.Findings = append(rep.Findings, finding.Finding{Check: check.UnmountedVolume, Severity: finding.Critical, MountID: 21,
		MountPoint: "/", FSType: "ext4", Source: "/dev/nvme0n1p1", Root: "/", Dev: "259:1",
		Path:      "/var/lib/kubelet/pods/7c3e1f0a-2b4d-4c6e-8f10-123456789abc/volumes/kubernetes.io~csi/pvc-3/mount",
		Directory: "/var/lib/kubelet/pods/7c3e1f0a-2b4d-4c6e-8f10-123456789abc/volumes/kubernetes.io~csi/pvc-3/mount",
		Kube: mounts.Kube{Kind: mounts.PodVolume, PodUID: "7c3e1f0a-2b4d-4c6e-8f10-123456789abc", PodNamespace: "shop", PodName: "web-0",
			VolumePlugin: mounts.CsiPlugin, Volume: "pvc-3", CSIDriver: "ebs.csi.aws.com", VolumeHandle: "vol-0a1b"},
		FirstSeen: at})
	st := &State{Report: rep, TableReads: 17, TableReadErrors: 1, TableEvents: 9, TableReadOK: true, LastComplete: at}
	kinds := map[finding.ID]finding.Kind{
		check.DeletedRoot: finding.TableCheck, check.StaleMount: finding.ProbeCheck, check.HungMount: finding.ProbeCheck,
		check.ShadowedMount: finding.TableCheck, check.OpaquePropagation: finding.ScanCheck, check.StrayOverlayXattr: finding.ScanCheck,
		check.UnmountedVolume: finding.ProbeCheck, check.MountLeak: finding.TableCheck,
	}
	for _, id := range []finding.ID{check.DeletedRoot, check.StaleMount, check.HungMount, check.ShadowedMount,
		check.OpaquePropagation, check.StrayOverlayXattr, check.UnmountedVolume, check.MountLeak} {
		cs := CheckState{ID: id, Kind: kinds[id], Runs: 17, Duration: 1500 * time.Microsecond, LastRun: at, Status: finding.StatusOK}
		if id == check.DeletedRoot {
			cs.Status = finding.StatusProblems
		}
		if id == check.HungMount {
			cs.Errors, cs.Status = 1, finding.StatusError
		}
		if id == check.StrayOverlayXattr {
			cs.Runs, cs.Duration, cs.LastRun, cs.Status = 0, 0, time.Time{}, ""
		}
		st.Checks = append(st.Checks, cs)
	}
	return st
}

func exposition(t testing.TB, c prometheus.Collector) []byte {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// The exposition of a fixed state is a golden file that promtool and
// client_golang's linter both accept.
func TestMetricsGolden(t *testing.T) {
	st := fixedState(t)
	m := NewMetrics(func() *State { return st }, 100)
	out := exposition(t, m)
	golden(t, "metrics.prom", out)
	lintMetrics(t, NewMetrics(func() *State { return st }, 100))
}

// lintMetrics fails the test unless client_golang's linter and promtool
// both accept m's exposition.
func lintMetrics(t *testing.T, m *collector) {
	t.Helper()
	problems, err := testutil.CollectAndLint(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	promtool := testenv.RequireCommand(t, "promtool", "prometheus")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(exposition(t, m))
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, msg)
	}
}

func countLines(out []byte, prefix string) int {
	n := 0
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// Before the first read every check and severity still has a count of 0,
// so an alert on mountwatchd_problems > 0 has a series to evaluate.
func TestMetricsCountsAlwaysPresent(t *testing.T) {
	st := &State{Checks: []CheckState{{ID: check.DeletedRoot}, {ID: check.StaleMount, Kind: finding.ProbeCheck}}}
	out := exposition(t, NewMetrics(func() *State { return st }, 10))
	if n := countLines(out, "mountwatchd_problems{"); n != 2*len(finding.Severities) {
		t.Errorf("%d count series, want %d:\n%s", n, 2*len(finding.Severities), out)
	}
	if !strings.Contains(string(out), `mountwatchd_problems{check="stale_mount",severity="critical"} 0`) {
		t.Errorf("no zero count for stale_mount:\n%s", out)
	}
	out = exposition(t, NewMetrics(func() *State { return nil }, 10))
	if countLines(out, "mountwatchd_problem{") != 0 {
		t.Errorf("problem series without a state:\n%s", out)
	}
}

// The same mount point mounted twice (two mount ids, same labels) gives one
// series, first seen the earliest; past the cap the least severe are dropped
// and counted.
func TestMetricsDedupeAndCap(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := func(id int, mp string, sev finding.Severity, seen time.Time) finding.Finding {
		return finding.Finding{Check: check.DeletedRoot, Severity: sev, MountID: id, MountPoint: mp, FSType: "tmpfs", Source: "none", FirstSeen: seen}
	}
	rep := &finding.Report{Snapshot: &mounts.Snapshot{}, Findings: []finding.Finding{
		f(10, "/a", finding.Critical, t0.Add(time.Hour)),
		f(11, "/a", finding.Critical, t0), // the same labels again
		f(12, "/b", finding.Warning, t0),
		f(13, "/c\n\xff", finding.Info, t0), // hostile name: escaped, valid UTF-8
	}}
	st := &State{Report: rep, Checks: []CheckState{{ID: check.DeletedRoot}}}

	out := string(exposition(t, NewMetrics(func() *State { return st }, 10)))
	if n := countLines([]byte(out), "mountwatchd_problem{"); n != 3 {
		t.Errorf("%d problem series, want 3 (deduplicated):\n%s", n, out)
	}
	if !strings.Contains(out, `mountwatchd_problem_first_seen_timestamp_seconds{check="deleted_root",csi_driver="",directory="/a",fstype="tmpfs",mountpoint="/a",`) ||
		!strings.Contains(out, fmt.Sprintf("} %g\n", float64(t0.Unix()))) {
		t.Errorf("first seen of the duplicate is not the earliest:\n%s", out)
	}
	if !strings.Contains(out, `mountpoint="/c\\x0a\\xff"`) {
		t.Errorf("hostile mount point not escaped:\n%s", out)
	}
	if !strings.Contains(out, `mountwatchd_problems{check="deleted_root",severity="critical"} 2`) {
		t.Errorf("count of critical problems is not 2 (one per finding):\n%s", out)
	}

	m := NewMetrics(func() *State { return st }, 1)
	for range 2 {
		out = string(exposition(t, m))
	}
	if n := countLines([]byte(out), "mountwatchd_problem{"); n != 1 || !strings.Contains(out, `mountpoint="/a"`) {
		t.Errorf("cap 1: want only the critical /a series:\n%s", out)
	}
	if !strings.Contains(out, "mountwatchd_problem_series_dropped 2\n") || !strings.Contains(out, "mountwatchd_problem_series_dropped_total 4\n") {
		t.Errorf("dropped series not counted (2 now, 4 over two scrapes):\n%s", out)
	}
}

// benchState is a node with n mounts and p problems.
func benchState(n, p int) *State {
	s := &mounts.Snapshot{Live: true}
	rep := &finding.Report{Snapshot: s}
	types := []string{"overlay", "tmpfs", "fuse.ceph-fuse", "ext4", "proc", "nsfs"}
	for i := range n {
		m := &mounts.Mount{}
		m.ID, m.FSType = i, types[i%len(types)]
		m.Mountpoint = fmt.Sprintf("/var/lib/kubelet/pods/%08d-0000-0000-0000-000000000000/volumes/kubernetes.io~csi/pvc-%d/mount", i/10, i)
		s.Mounts = append(s.Mounts, m)
	}
	for i := range p {
		m := s.Mounts[i*(n/p)]
		f := finding.Finding{Check: check.DeletedRoot, Severity: finding.Critical, MountID: m.ID, MountPoint: m.Mountpoint,
			FSType: m.FSType, Source: "ceph-fuse", FirstSeen: time.Unix(1_790_000_000, 0)}
		f.PodUID, f.PodNamespace, f.PodName, f.Volume = fmt.Sprintf("%08d", i), "ns", fmt.Sprintf("pod-%d", i), fmt.Sprintf("pvc-%d", i)
		rep.Findings = append(rep.Findings, f)
	}
	return &State{Report: rep, Checks: []CheckState{{ID: check.DeletedRoot}}}
}

// BenchmarkScrape is one scrape (collect and encode) of 20,000 mounts and
// 2,000 problems through the collector, beside a baseline: the same series
// kept in plain GaugeVecs that a conventional exporter would update.
func BenchmarkScrape(b *testing.B) {
	st := benchState(20000, 2000)
	encode := func(b *testing.B, g prometheus.Gatherer) {
		mfs, err := g.Gather()
		if err != nil {
			b.Fatal(err)
		}
		var buf bytes.Buffer
		enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(int64(buf.Len()))
	}
	b.Run("collector", func(b *testing.B) {
		reg := prometheus.NewRegistry()
		reg.MustRegister(NewMetrics(func() *State { return st }, 5000))
		for b.Loop() {
			encode(b, reg)
		}
	})
	// The exposition of one published state, served again (gzip, as
	// Prometheus and Go's client ask): what a scrape costs now.
	b.Run("exposition-cached-gzip", func(b *testing.B) {
		e := NewExposition(5000, prometheus.NewRegistry())
		e.Publish(st)
		req := httptest.NewRequest("GET", "/metrics", nil)
		req.Header.Set("Accept-Encoding", "gzip")
		for b.Loop() {
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			b.SetBytes(int64(rec.Body.Len()))
		}
	})
	b.Run("baseline-gaugevec", func(b *testing.B) {
		reg := prometheus.NewRegistry()
		problem := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mountwatchd_problem", Help: "h"}, problemLabels)
		seen := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mountwatchd_problem_first_seen_timestamp_seconds", Help: "h"}, problemLabels)
		mounts := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mountwatchd_mounts", Help: "h"}, []string{"fstype"})
		reg.MustRegister(problem, seen, mounts)
		for _, f := range st.Report.Findings {
			l := []string{string(f.Check), string(f.Severity), f.MountPoint, f.FSType, f.Source, f.PodUID, f.PodNamespace, f.PodName, f.Volume}
			problem.WithLabelValues(l...).Set(1)
			seen.WithLabelValues(l...).Set(float64(f.FirstSeen.Unix()))
		}
		for _, m := range st.Report.Snapshot.Mounts {
			mounts.WithLabelValues(m.FSType).Inc()
		}
		for b.Loop() {
			encode(b, reg)
		}
	})
}

// BenchmarkScrapeConcurrent is the scrape figure in-process: p50
// and p99 of /metrics with 1,000 problems, for 1 and 20 concurrent
// scrapers over loopback, served by the Exposition beside the baseline in
// the same run, promhttp.HandlerFor over the collector (which collects and
// encodes on every scrape); both with the daemon's live collectors (Go
// runtime, process, build info), and both scraped once before the timed
// rounds (the daemon encodes a State before it serves it once scrapers
// have asked for its format). Each iteration is two rounds of 5 scrapes per
// scraper: p50-ms and p99-ms time what the server serves (the scrapers ask
// for gzip themselves, with DisableCompression: request to the last byte of
// the gzip body), decoded-p50-ms and decoded-p99-ms also time the Go
// client's gunzip of it, which on a shared machine competes with the
// server for the same cores. The served bodies are gunzipped and parsed
// after the load, outside the timed windows.
func BenchmarkScrapeConcurrent(b *testing.B) {
	st := benchState(10000, 1000)
	handlers := map[string]http.Handler{}
	ref := daemonRegistry()
	ref.MustRegister(NewMetrics(func() *State { return st }, DefaultMaxProblemSeries))
	handlers["baseline-collector"] = promhttp.HandlerFor(ref, promhttp.HandlerOpts{})
	e := NewExposition(DefaultMaxProblemSeries, daemonRegistry())
	e.Publish(st)
	handlers["exposition"] = e
	for _, name := range []string{"baseline-collector", "exposition"} {
		for _, workers := range []int{1, 20} {
			b.Run(fmt.Sprintf("%s/scrapers=%d", name, workers), func(b *testing.B) {
				srv := httptest.NewServer(handlers[name])
				defer srv.Close()
				if _, _, err := testenv.ScrapeLoad(srv.URL, 1, 1, testenv.Served); err != nil {
					b.Fatal(err)
				}
				lat := map[testenv.ScrapeMode][]time.Duration{}
				var bodies [][]byte
				for b.Loop() {
					for _, mode := range []testenv.ScrapeMode{testenv.Served, testenv.Decoded} {
						l, bs, err := testenv.ScrapeLoad(srv.URL, workers, 5, mode)
						if err != nil {
							b.Fatal(err)
						}
						lat[mode] = append(lat[mode], l...)
						bodies = append(bodies, bs...)
					}
				}
				b.StopTimer()
				if _, err := testenv.CheckScrapes(bodies, "mountwatchd_problem", 1000); err != nil {
					b.Fatal(err)
				}
				for mode, prefix := range map[testenv.ScrapeMode]string{testenv.Served: "", testenv.Decoded: "decoded-"} {
					l := lat[mode]
					slices.Sort(l)
					b.ReportMetric(float64(testenv.Quantile(l, 0.5).Microseconds())/1000, prefix+"p50-ms")
					b.ReportMetric(float64(testenv.Quantile(l, 0.99).Microseconds())/1000, prefix+"p99-ms")
				}
			})
		}
	}
}
