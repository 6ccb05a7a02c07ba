package testenv

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// ScrapeMode is what a timed scrape covers.
type ScrapeMode int

const (
	// Served times what the server serves: the scraper asks for gzip itself
	// on a Transport with DisableCompression, so the window is from the
	// request to the last byte of the body as sent, and the raw (gzip)
	// bodies are kept for checking afterwards.
	Served ScrapeMode = iota
	// Decoded also times the client's work on the body: Go's transparent
	// gzip asks for it and decompresses it inside the window, as a Go
	// scraper (and Prometheus) does.
	Decoded
)

func (m ScrapeMode) String() string {
	if m == Served {
		return "served"
	}
	return "decoded"
}

// ScrapeLoad starts workers scrapers together, each GETting url each times
// back to back on its own connection, and returns every latency, sorted,
// and in Served mode every raw body (in Decoded mode none).
func ScrapeLoad(url string, workers, each int, mode ScrapeMode) ([]time.Duration, [][]byte, error) {
	var mu sync.Mutex
	var lat []time.Duration
	var bodies [][]byte
	var failed error
	var start, done sync.WaitGroup
	start.Add(1)
	for range workers {
		done.Go(func() {
			tr := &http.Transport{DisableCompression: mode == Served}
			defer tr.CloseIdleConnections()
			c := &http.Client{Timeout: 30 * time.Second, Transport: tr}
			start.Wait()
			for range each {
				body, t, err := scrapeOnce(c, url, mode)
				mu.Lock()
				if err != nil && failed == nil {
					failed = err
				}
				lat = append(lat, t)
				if mode == Served {
					bodies = append(bodies, body)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	start.Done()
	done.Wait()
	slices.Sort(lat)
	return lat, bodies, failed
}

func scrapeOnce(c *http.Client, url string, mode ScrapeMode) ([]byte, time.Duration, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return nil, 0, err
	}
	if mode == Served {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	t0 := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return nil, time.Since(t0), err
	}
	var buf bytes.Buffer
	if resp.ContentLength > 0 {
		buf.Grow(int(resp.ContentLength) + 1) // +1: ReadFrom's check for EOF
	}
	_, err = buf.ReadFrom(resp.Body)
	t := time.Since(t0)
	body := buf.Bytes()
	resp.Body.Close()
	switch {
	case err != nil:
		return nil, t, fmt.Errorf("scrape %s: %w", url, err)
	case resp.StatusCode != http.StatusOK:
		return nil, t, fmt.Errorf("scrape %s: status %s", url, resp.Status)
	case mode == Served && resp.Header.Get("Content-Encoding") != "gzip":
		return nil, t, fmt.Errorf("scrape %s: asked for gzip, got Content-Encoding %q", url, resp.Header.Get("Content-Encoding"))
	}
	return body, t, nil
}

// Quantile is the q-quantile (0 ≤ q < 1) of sorted latencies, 0 if none.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(float64(len(sorted))*q)]
}

// CheckScrapes gunzips and parses (text format) every distinct body of a
// Served ScrapeLoad and requires family in each with at least series
// series; it returns how many bodies were distinct. Identical bodies (a
// server's coalesced responses) are checked once.
func CheckScrapes(bodies [][]byte, family string, series int) (int, error) {
	seen := map[string]bool{}
	for i, b := range bodies {
		if seen[string(b)] {
			continue
		}
		seen[string(b)] = true
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return len(seen), fmt.Errorf("body %d: %w", i, err)
		}
		plain, err := io.ReadAll(zr)
		if err != nil {
			return len(seen), fmt.Errorf("body %d: gunzip: %w", i, err)
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		mfs, err := p.TextToMetricFamilies(bytes.NewReader(plain))
		if err != nil {
			return len(seen), fmt.Errorf("body %d: parse: %w", i, err)
		}
		if n := len(mfs[family].GetMetric()); n < series {
			return len(seen), fmt.Errorf("body %d: %d %s series, want at least %d", i, n, family, series)
		}
	}
	return len(seen), nil
}
