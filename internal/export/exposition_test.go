package export

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

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
	req := httptest.NewRequest("GET", "/metrics", nil)
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

// The test: 20 concurrent scrapes of a state with 1,000 problems get
// the same body, which promtool accepts; after the next Publish the new
// state is what is served. The gzip body also decodes with gzip(1).
func TestExpositionConcurrentScrapes(t *testing.T) {
	promtool := testenv.RequireCommand(t, "promtool", "prometheus")
	gz := testenv.RequireCommand(t, "gzip", "gzip")
	live := prometheus.NewRegistry()
	e := NewExposition(DefaultMaxProblemSeries, live)
	e.Publish(benchState(5000, 1000))
	srv := httptest.NewServer(e)
	defer srv.Close()

	scrape := func(c *http.Client) []byte {
		resp, err := c.Get(srv.URL)
		if err != nil {
			t.Error(err)
			return nil
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body) // the client asked for gzip and decodes it
		if err != nil {
			t.Error(err)
		}
		return b
	}
	const n = 20
	bodies := make([][]byte, n)
	var start, done sync.WaitGroup
	start.Add(1)
	for i := range n {
		done.Add(1)
		go func() {
			defer done.Done()
			c := &http.Client{Transport: &http.Transport{}}
			start.Wait()
			bodies[i] = scrape(c)
		}()
	}
	start.Done()
	done.Wait()
	for i, b := range bodies {
		if !bytes.Equal(b, bodies[0]) {
			t.Fatalf("scrape %d: %d bytes differ from scrape 0's %d", i, len(b), len(bodies[0]))
		}
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(b)
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("scrape %d: promtool check metrics: %v\n%s", i, err, msg)
		}
	}
	if c := countLines(bodies[0], "mountwatchd_problem{"); c != 1000 {
		t.Fatalf("%d problem series, want 1000", c)
	}

	// gzip(1) decodes the single-member stream made of cached segments.
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := (&http.Transport{}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("Content-Encoding %q, want gzip", resp.Header.Get("Content-Encoding"))
	}
	cmd := exec.Command(gz, "-dc")
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.Output()
	if err != nil || !bytes.Equal(out, bodies[0]) {
		t.Fatalf("gzip -dc: %v; %d bytes, want the %d of the decoded scrape", err, len(out), len(bodies[0]))
	}

	e.Publish(benchState(5000, 999))
	if c := countLines(scrape(http.DefaultClient), "mountwatchd_problem{"); c != 999 {
		t.Fatalf("after publishing a state with 999 problems: %d problem series", c)
	}
}
