package testenv

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Prometheus is a real Prometheus server, scraping one target every 500ms,
// for tests that check what a scraper sees.
type Prometheus struct {
	// Base is its URL (http://127.0.0.1:<port>).
	Base string
}

// StartPrometheus runs prometheus (the Debian package) on a free loopback
// port, scraping target as job mountwatchd, and waits until it is ready. It
// stops when the test ends.
func StartPrometheus(t *testing.T, target string) *Prometheus {
	t.Helper()
	bin := RequireCommand(t, "prometheus", "prometheus")
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 500ms
  scrape_timeout: 400ms
scrape_configs:
  - job_name: mountwatchd
    static_configs:
      - targets: [%q]
`, target)
	if err := os.WriteFile(dir+"/prometheus.yml", []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := FreeLoopbackAddr(t)
	var logs SyncBuffer
	cmd := exec.Command(bin, "--config.file="+dir+"/prometheus.yml", "--storage.tsdb.path="+dir+"/data",
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	p := &Prometheus{Base: "http://" + addr}
	WaitUntil(t, 60*time.Second, "prometheus ready", func() bool {
		resp, err := http.Get(p.Base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// PromSample is one sample of an instant query's result.
type PromSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// Query runs the instant query q and returns its samples; an error fails
// the test.
func (p *Prometheus) Query(t *testing.T, q string) []PromSample {
	t.Helper()
	resp, err := http.Get(p.Base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Result []PromSample `json:"result"`
		} `json:"data"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Status != "success" {
		t.Fatalf("query %s: %v %s", q, err, r.Error)
	}
	return r.Data.Result
}

// Float is the sample's value.
func (s PromSample) Float() float64 {
	v, _ := strconv.ParseFloat(fmt.Sprint(s.Value[1]), 64)
	return v
}
