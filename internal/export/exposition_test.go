package export

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// liveCollectors stand in for the per-scrape metrics (Go runtime, process,
// build info): fixed values, named to sort before, between and after the
// state's families.
func liveCollectors() []prometheus.Collector {
	var cs []prometheus.Collector
	for i, name := range []string{"aaa_live", "mountwatchd_build_info", "mountwatchd_problem_series_dropped_zz", "zzz_live"} {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "A live metric."})
		g.Set(float64(i))
		cs = append(cs, g)
	}
	return cs
}

func get(t *testing.T, h http.Handler, accept, encoding string) (body []byte, contentType string) {
	t.Helper()
	return getURL(t, h, "/metrics", accept, encoding)
}

func getURL(t *testing.T, h http.Handler, url, accept, encoding string) (body []byte, contentType string) {
	t.Helper()
	req := httptest.NewRequest("GET", url, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if encoding != "" {
		req.Header.Set("Accept-Encoding", encoding)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	body = rec.Body.Bytes()
	if rec.Header().Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body, err = io.ReadAll(zr); err != nil {
			t.Fatalf("gzip body of %q: %v", accept, err)
		}
	}
	return body, rec.Header().Get("Content-Type")
}

// The cached exposition is, format by format and with or without gzip, the
// body promhttp serves from one registry holding the state's collector and
// the live ones: the same negotiation, the same bytes, the dropped counter
// summed over scrapes the same way.
func TestExpositionSameAsPromhttp(t *testing.T) {
	st := benchState(2000, 300) // past the cap of 100: 200 dropped per scrape

	ref := prometheus.NewRegistry()
	ref.MustRegister(NewMetrics(func() *State { return st }, 100))
	ref.MustRegister(liveCollectors()...)
	want := promhttp.HandlerFor(ref, promhttp.HandlerOpts{EnableOpenMetrics: true})

	live := prometheus.NewRegistry()
	live.MustRegister(liveCollectors()...)
	e := NewExposition(100, live)
	e.Publish(st)

	for _, accept := range []string{
		"",
		"text/plain;version=0.0.4",
		"application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
		"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3",
	} {
		for _, enc := range []string{"", "gzip", "deflate, gzip;q=0.8", "gzip;q=0"} {
			wantBody, wantType := get(t, want, accept, enc)
			gotBody, gotType := get(t, e, accept, enc)
			if gotType != wantType {
				t.Errorf("Accept %q: Content-Type %q, promhttp %q", accept, gotType, wantType)
			}
			// promhttp's errors counter is in e's live registry only.
			gotBody = dropErrorsFamily(t, gotBody, gotType)
			if !bytes.Equal(gotBody, wantBody) {
				t.Errorf("Accept %q, Accept-Encoding %q: body differs from promhttp's (%d bytes, promhttp %d):\n%.2000s\n---- promhttp:\n%.2000s",
					accept, enc, len(gotBody), len(wantBody), gotBody, wantBody)
			}
		}
	}
	// name[] keeps the families named, cached and live alike, as promhttp
	// does; such a scrape builds its own response.
	const url = "/metrics?name[]=mountwatchd_problem&name[]=zzz_live&name[]=aaa_live&name[]=no_such_family"
	for _, enc := range []string{"", "gzip"} {
		wantBody, _ := getURL(t, want, url, "", enc)
		gotBody, _ := getURL(t, e, url, "", enc)
		if !bytes.Equal(gotBody, wantBody) || countLines(gotBody, "mountwatchd_problem{") != 100 || !bytes.Contains(gotBody, []byte("\nzzz_live 3\n")) {
			t.Errorf("name[] filter, Accept-Encoding %q: body differs from promhttp's or lacks a family named:\n%.2000s\n---- promhttp:\n%.2000s", enc, gotBody, wantBody)
		}
	}
}

// dropErrorsFamily removes promhttp_metric_handler_errors_total from a
// text or OpenMetrics body (it sorts last among the families here).
func dropErrorsFamily(t *testing.T, body []byte, contentType string) []byte {
	t.Helper()
	i := bytes.Index(body, []byte("# HELP promhttp_metric_handler_errors")) // OpenMetrics: no _total
	if i < 0 {
		if bytes.Contains(body, []byte("promhttp_metric_handler_errors_total")) {
			return bytes.Replace(body, protoFamily(t, body, "promhttp_metric_handler_errors_total"), nil, 1)
		}
		t.Fatalf("no promhttp_metric_handler_errors_total in the %s body", contentType)
	}
	j := bytes.Index(body[i:], []byte("\n# HELP zzz_live"))
	return append(body[:i:i], body[i+j+1:]...)
}

// protoFamily returns the length-delimited message of family name.
func protoFamily(t *testing.T, body []byte, name string) []byte {
	t.Helper()
	for off := 0; off < len(body); {
		n, k := uvarint(body[off:])
		msg := body[off : off+k+int(n)]
		if bytes.Contains(msg, []byte(name)) {
			return msg
		}
		off += k + int(n)
	}
	t.Fatalf("no %s message", name)
	return nil
}

func uvarint(b []byte) (uint64, int) {
	var x uint64
	for i, c := range b {
		x |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return x, i + 1
		}
	}
	return 0, 0
}

// stateSeries is the families of a text exposition that describe the
// State (mountwatchd_*, but the build info and the dropped counter, which
// are live), in order, as text.
func stateSeries(body []byte) string {
	var out strings.Builder
	for block := range strings.SplitAfterSeq(string(body), "\n# HELP ") {
		block = strings.TrimPrefix(block, "# HELP ")
		name, _, _ := strings.Cut(block, " ")
		if strings.HasPrefix(name, "mountwatchd_") && name != "mountwatchd_build_info" && name != "mountwatchd_problem_series_dropped_total" {
			out.WriteString(strings.TrimSuffix(block, "# HELP ")) // ends in "\n"
		}
	}
	return out.String()
}

// refSeries is stateSeries of promhttp's text exposition of st over the
// collector.
func refSeries(t *testing.T, st *State) string {
	t.Helper()
	ref := prometheus.NewRegistry()
	ref.MustRegister(NewMetrics(func() *State { return st }, DefaultMaxProblemSeries))
	body, _ := get(t, promhttp.HandlerFor(ref, promhttp.HandlerOpts{}), "", "")
	return stateSeries(body)
}

// daemonRegistry is the daemon's live registry: build info, the Go
// runtime's and the process's collectors (cmd/mountwatchd/daemon.go).
func daemonRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(versioncollector.NewCollector("mountwatchd"), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// The test: 20 concurrent scrapes of a state with 1,000 problems,
// served as the daemon serves them (its live registry, promhttp's
// instrumentation), get the same state series, exactly those promhttp
// serves over the collector; each gzip body as sent decodes with gzip(1)
// and is accepted by promtool. The full bodies also carry the live
// families (go_*, process_*, promhttp_*), which differ between builds, so
// they are compared only where they come from one build. After the next
// Publish every scrape serves the old state or the new one, whole, and
// soon the new one for good.
func TestExpositionConcurrentScrapes(t *testing.T) {
	promtool := testenv.RequireCommand(t, "promtool", "prometheus")
	gz := testenv.RequireCommand(t, "gzip", "gzip")
	live := daemonRegistry()
	e := NewExposition(DefaultMaxProblemSeries, live)
	old := benchState(5000, 1000)
	e.Publish(old)
	srv := httptest.NewServer(promhttp.InstrumentMetricHandler(live, e))
	defer srv.Close()
	oldRef := refSeries(t, old)
	if c := countLines([]byte(oldRef), "mountwatchd_problem{"); c != 1000 {
		t.Fatalf("reference: %d problem series, want 1000", c)
	}

	const n = 20
	_, raw, err := testenv.ScrapeLoad(srv.URL, n, 1, testenv.Served)
	if err != nil || len(raw) != n {
		t.Fatalf("%d gzip bodies, want %d: %v", len(raw), n, err)
	}
	distinct := map[string]bool{}
	for i, b := range raw {
		distinct[string(b)] = true
		cmd := exec.Command(gz, "-dc")
		cmd.Stdin = bytes.NewReader(b)
		plain, err := cmd.Output()
		if err != nil {
			t.Fatalf("scrape %d: gzip -dc: %v", i, err)
		}
		if got := stateSeries(plain); got != oldRef {
			t.Fatalf("scrape %d: state series differ from promhttp's over the collector (%d bytes, want %d)", i, len(got), len(oldRef))
		}
		cmd = exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(plain)
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("scrape %d: promtool check metrics: %v\n%s", i, err, msg)
		}
	}
	t.Logf("%d concurrent scrapes: %d distinct bodies (builds), identical state series", n, len(distinct))

	neu := benchState(5000, 999)
	newRef := refSeries(t, neu)
	e.Publish(neu)
	served := func() string {
		body, _ := get(t, e, "", "gzip")
		return stateSeries(body)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		got := served()
		if got == newRef {
			break
		}
		if got != oldRef {
			t.Fatal("served state series are neither the old state's nor the new one's")
		}
		if time.Now().After(deadline) {
			t.Fatal("the new state is not served 10 s after Publish")
		}
	}
	for range 20 {
		if served() != newRef {
			t.Fatal("an older state served again after the new one")
		}
	}
}

// gate is a Gatherer that holds its first Gather until released.
type gate struct {
	prometheus.Gatherer
	release chan struct{}
	calls   atomic.Int64
}

func (g *gate) Gather() ([]*dto.MetricFamily, error) {
	if g.calls.Add(1) == 1 {
		<-g.release
	}
	return g.Gatherer.Gather()
}

// Scrapes that arrive while one builds its response wait for it and are
// served its bytes (one gather of the live families for all), and each is
// still counted by promhttp's instrumentation: in flight while it waits,
// in promhttp_metric_handler_requests_total once served.
func TestExpositionCoalescedScrapesCounted(t *testing.T) {
	live := prometheus.NewRegistry()
	e := NewExposition(DefaultMaxProblemSeries, live)
	e.Publish(benchState(2000, 100))
	g := &gate{Gatherer: live, release: make(chan struct{})}
	e.live = g
	srv := httptest.NewServer(promhttp.InstrumentMetricHandler(live, e))
	defer srv.Close()

	const n = 10
	type result struct {
		bodies [][]byte
		err    error
	}
	done := make(chan result)
	go func() {
		_, bodies, err := testenv.ScrapeLoad(srv.URL, n, 1, testenv.Served)
		done <- result{bodies, err}
	}()
	for deadline := time.Now().Add(10 * time.Second); e.joined.Load() < n-1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			close(g.release)
			t.Fatalf("%d of %d scrapes joined the first one's build in 10 s", e.joined.Load(), n-1)
		}
	}
	close(g.release)
	r := <-done
	if r.err != nil || len(r.bodies) != n {
		t.Fatalf("%d bodies, want %d: %v", len(r.bodies), n, r.err)
	}
	if c := g.calls.Load(); c != 1 {
		t.Errorf("the live families were gathered %d times for %d concurrent scrapes, want once", c, n)
	}
	for i, b := range r.bodies {
		if !bytes.Equal(b, r.bodies[0]) {
			t.Fatalf("scrape %d: body differs from scrape 0's", i)
		}
	}
	plain := gunzip(t, r.bodies[0])
	if v := metric(t, plain, "promhttp_metric_handler_requests_in_flight"); v != n {
		t.Errorf("shared body: %v requests in flight, want all %d", v, n)
	}
	// promhttp counts a request once its handler returns, which may be
	// just after the client has the whole body: read the counter from the
	// registry (a scrape would count itself) until the last one lands.
	served := func() float64 {
		fams, err := live.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() != "promhttp_metric_handler_requests_total" {
				continue
			}
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "code" && l.GetValue() == "200" {
						return m.GetCounter().GetValue()
					}
				}
			}
		}
		return 0
	}
	testenv.WaitUntil(t, 10*time.Second, "every coalesced scrape counted", func() bool { return served() >= n })
	if v := served(); v != n {
		t.Errorf(`promhttp_metric_handler_requests_total{code="200"} %v after %d coalesced scrapes, want %d`, v, n, n)
	}
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return plain
}

// metric is the value of the text exposition's line for series.
func metric(t *testing.T, body []byte, series string) float64 {
	t.Helper()
	for l := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return f
		}
	}
	t.Fatalf("no %s in the exposition", series)
	return 0
}

// A State published while scrapers are asking is gathered and encoded, in
// the formats they asked for, before any scrape is served it, so no scrape
// waits for that encoding; States published in quick succession are served
// in order, the last one in the end.
func TestExpositionPublishEncodesBeforeServing(t *testing.T) {
	e := NewExposition(DefaultMaxProblemSeries, prometheus.NewRegistry())
	e.Publish(benchState(2000, 10))
	if body, _ := get(t, e, "", "gzip"); countLines(body, "mountwatchd_problem{") != 10 {
		t.Fatal("first state not served")
	}
	k := encodingKey{format: expfmt.NegotiateAccept(http.Header{}, e.formats...), gzip: true}
	last := 0
	for p := 11; p <= 30; p++ {
		e.Publish(benchState(2000, p))
		body, _ := get(t, e, "", "gzip")
		n := countLines(body, "mountwatchd_problem{")
		if n < last || n > p {
			t.Fatalf("after publishing %d problems: %d served, after %d before", p, n, last)
		}
		last = n
	}
	e.Publish(benchState(2000, 31)) // not scraped until served
	for deadline := time.Now().Add(10 * time.Second); e.cur.Load() != e.latest.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the last state published is not served 10 s later")
		}
	}
	cur := e.cur.Load()
	cur.mu.Lock()
	enc := cur.encodings[k]
	cur.mu.Unlock()
	if enc == nil || len(enc.names) == 0 {
		t.Fatal("the state served was not encoded before it was served, in the format scrapes ask for")
	}
	if body, _ := get(t, e, "", "gzip"); countLines(body, "mountwatchd_problem{") != 31 {
		t.Fatal("the last state is not what is served")
	}
}
