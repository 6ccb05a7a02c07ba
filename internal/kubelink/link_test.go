package kubelink

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/mountwatchd/mountwatchd/internal/finding"
)

// The test binary is also the helper the link starts: with
// $KUBELINK_FAKE_HELPER set it acts as mountwatchd-kube would on the pipe,
// in the way the variable names, and writes what it got into
// $KUBELINK_FAKE_LOG.
func TestMain(m *testing.M) {
	if mode := os.Getenv("KUBELINK_FAKE_HELPER"); mode != "" {
		os.Exit(fakeHelper(mode, os.Getenv("KUBELINK_FAKE_LOG")))
	}
	os.Exit(m.Run())
}

// fakeHelper modes: "echo" records each snapshot's findings count and the
// stop, and reports a counter of snapshots; "deaf" never reads its input;
// "exit" exits 3 after its first snapshot; "stubborn" reads but ignores
// the stop.
func fakeHelper(mode, logPath string) int {
	logf := func(format string, a ...any) {
		f, err := os.OpenFile(logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintf(f, format+"\n", a...)
			f.Close()
		}
	}
	logf("start %s", strings.Join(os.Args[1:], " "))
	if mode == "deaf" {
		select {}
	}
	in := NewReader(os.Stdin)
	n := 0
	for {
		s, stop, err := in.Next()
		switch {
		case stop && mode == "stubborn":
			logf("stop ignored")
			select {}
		case stop:
			logf("stop")
			return 0
		case errors.Is(err, io.EOF):
			logf("eof")
			return 0
		case err != nil:
			logf("error %v", err)
			return 1
		}
		n++
		logf("snapshot complete=%v findings=%d", s.Complete, len(s.Findings))
		text := fmt.Sprintf("# HELP mountwatchd_kube_fake_snapshots_total Snapshots the fake helper got.\n"+
			"# TYPE mountwatchd_kube_fake_snapshots_total counter\nmountwatchd_kube_fake_snapshots_total{mode=%q} %d\n", mode, n)
		if err := WriteMetrics(os.Stdout, []byte(text)); err != nil {
			return 1
		}
		if mode == "exit" {
			return 3
		}
	}
}

type fake struct {
	t   *testing.T
	log string
	reg *prometheus.Registry
	l   *Link
}

func startFake(t *testing.T, mode string, cfg Config) *fake {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f := &fake{t: t, log: filepath.Join(t.TempDir(), "helper.log"), reg: prometheus.NewRegistry()}
	t.Setenv("KUBELINK_FAKE_HELPER", mode)
	t.Setenv("KUBELINK_FAKE_LOG", f.log)
	f.l, err = Start(cfg, LinkConfig{Helper: exe, LogArgs: []string{"--log.level=debug"}, Log: zap.NewNop()}, f.reg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fake) lines() []string {
	b, _ := os.ReadFile(f.log)
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func (f *fake) waitLine(want string, n int) {
	f.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		c := 0
		for _, l := range f.lines() {
			if strings.HasPrefix(l, want) {
				c++
			}
		}
		if c >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.t.Fatalf("the helper did not log %q %d times within 20s; it logged:\n%s", want, n, strings.Join(f.lines(), "\n"))
}

func (f *fake) gather(name string) string {
	f.t.Helper()
	var b bytes.Buffer
	fams, err := f.reg.Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, fam := range fams {
		if fam.GetName() == name {
			_ = json.NewEncoder(&b).Encode(fam)
		}
	}
	return b.String()
}

var enabled = Config{Events: true, NodeName: "node-1", ConditionType: DefaultConditionType, Timeout: time.Second, Heartbeat: time.Minute, QueueSize: 10}

func findings(sevs ...finding.Severity) []finding.Finding {
	var out []finding.Finding
	for i, s := range sevs {
		out = append(out, finding.Finding{Check: "stale_mount", Severity: s, MountID: i + 1})
	}
	return out
}

// The helper gets the flags, each snapshot (warning and worse only), and
// the stop; its metrics are the daemon's.
func TestLinkSendsSnapshotsAndRelaysMetrics(t *testing.T) {
	f := startFake(t, "echo", enabled)
	f.waitLine("start --kube.condition-type=MountProblem --kube.node-name=node-1 --kube.timeout=1s --kube.heartbeat=1m0s --kube.event-queue=10 --kube.events --log.level=debug", 1)
	f.l.Publish(NewSnapshot(findings(finding.Info, finding.Warning, finding.Critical), false))
	f.waitLine("snapshot complete=false findings=2", 1)
	f.l.Publish(NewSnapshot(nil, true))
	f.waitLine("snapshot complete=true findings=0", 1)
	testWait(t, "the helper's counter relayed", func() bool {
		return strings.Contains(f.gather("mountwatchd_kube_fake_snapshots_total"), `"value":2`)
	})
	if got := testutil.ToFloat64(f.l.m.up); got != 1 {
		t.Errorf("helper_up = %v while it runs", got)
	}
	f.l.Stop()
	f.waitLine("stop", 1)
	if got := testutil.ToFloat64(f.l.m.up); got != 0 {
		t.Errorf("helper_up = %v after Stop", got)
	}
	if got := testutil.ToFloat64(f.l.m.starts); got != 1 {
		t.Errorf("helper_starts_total = %v, want 1", got)
	}
}

// A helper that never reads holds nothing of the daemon: Publish returns
// at once however many states pile up, each one not taken is counted,
// and Stop kills it past its bound.
func TestLinkNeverBlocksOnADeafHelper(t *testing.T) {
	f := startFake(t, "deaf", enabled)
	f.waitLine("start", 1)
	big := make([]finding.Finding, 2000) // more than a pipe holds
	for i := range big {
		big[i] = finding.Finding{Check: "hung_mount", Severity: finding.Critical, Message: strings.Repeat("x", 200), MountID: i}
	}
	done := make(chan struct{})
	go func() {
		for range 50 {
			f.l.Publish(NewSnapshot(big, true))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked behind a helper that does not read")
	}
	if got := testutil.ToFloat64(f.l.m.snapshots.WithLabelValues("superseded")); got < 40 {
		t.Errorf("superseded = %v after 50 states to a deaf helper, want nearly all", got)
	}
	stopped := make(chan struct{})
	go func() { f.l.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("Stop did not return within 20s (bound: 2×timeout+1s)")
	}
}

// A helper that exits is started again and gets the latest state.
func TestLinkRestartsAnExitedHelper(t *testing.T) {
	saved := firstRestartDelay
	firstRestartDelay = 50 * time.Millisecond
	t.Cleanup(func() { firstRestartDelay = saved })
	f := startFake(t, "exit", enabled)
	f.l.Publish(NewSnapshot(findings(finding.Critical), true))
	f.waitLine("start", 2)
	f.waitLine("snapshot complete=true findings=1", 2)
	testWait(t, "two starts counted", func() bool { return testutil.ToFloat64(f.l.m.starts) >= 2 })
	f.l.Stop()
}

// A helper that ignores the stop is killed within the bound.
func TestLinkKillsAStubbornHelper(t *testing.T) {
	f := startFake(t, "stubborn", enabled)
	f.l.Publish(NewSnapshot(nil, true))
	f.waitLine("snapshot", 1)
	began := time.Now()
	f.l.Stop()
	f.waitLine("stop ignored", 1)
	if since := time.Since(began); since > time.Minute {
		t.Errorf("Stop took %v", since)
	}
}

func TestStartRefusesBadSettings(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Events: true, Timeout: time.Second, Heartbeat: time.Second, QueueSize: 1}, "--kube.node-name"},
		{Config{Taint: true, NodeName: "n", Timeout: 0, Heartbeat: time.Second, QueueSize: 1}, "--kube.timeout=0s"},
		{Config{Condition: true, NodeName: "n", Timeout: time.Second, Heartbeat: time.Second, QueueSize: 1}, "--kube.condition-type"},
		{Config{Events: true, NodeName: "n", Timeout: time.Second, Heartbeat: time.Second, QueueSize: -1}, "--kube.event-queue=-1"},
	} {
		_, err := Start(c.cfg, LinkConfig{Helper: "/nonexistent"}, prometheus.NewRegistry())
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one naming %s", c.cfg, err, c.want)
		}
	}
	_, err := Start(enabled, LinkConfig{Helper: "/nonexistent/mountwatchd-kube"}, prometheus.NewRegistry())
	if err == nil || !strings.Contains(err.Error(), "--kube.helper") {
		t.Errorf("a missing helper: %v", err)
	}
}

func testWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A helper that exits just as the daemon stops: Stop returns within its
// bound however the two meet (the relay's end was once awaited twice, and
// Stop then hung).
func TestLinkStopAsTheHelperExits(t *testing.T) {
	for i := range 40 {
		f := startFake(t, "exit", enabled)
		f.l.Publish(NewSnapshot(nil, true))
		f.waitLine("snapshot", 1)
		time.Sleep(time.Duration(i%8) * 250 * time.Microsecond)
		stopped := make(chan struct{})
		go func() { f.l.Stop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: Stop did not return within 20s of the helper exiting", i)
		}
	}
}
