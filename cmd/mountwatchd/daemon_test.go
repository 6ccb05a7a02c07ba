package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/mountwatchd/mountwatchd/internal/check"
	"github.com/mountwatchd/mountwatchd/internal/export"
	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

type daemonProc struct {
	t      testing.TB
	cmd    *exec.Cmd
	base   string
	stderr *testenv.SyncBuffer
}

// startDaemon runs the built binary as a daemon on a loopback port and waits
// until /healthz answers 200. When the test ends it sends SIGTERM and
// expects a clean exit 0.
func startDaemon(t testing.TB, env []string, args ...string) *daemonProc {
	t.Helper()
	return launchDaemon(t, env, func(code int) bool { return code == http.StatusOK }, args...)
}

// launchDaemon is startDaemon waiting until /healthz answers a code ready
// accepts (any answer at all, for a daemon expected to be unhealthy).
func launchDaemon(t testing.TB, env []string, ready func(code int) bool, args ...string) *daemonProc {
	t.Helper()
	addr := testenv.FreeLoopbackAddr(t)
	cmd := exec.Command(binary(t), append([]string{"--web.listen-address", addr}, args...)...)
	cmd.Env = env
	if cmd.Env == nil {
		cmd.Env = testenv.CleanEnv()
	}
	d := &daemonProc{t: t, cmd: cmd, base: "http://" + addr, stderr: &testenv.SyncBuffer{}}
	cmd.Stderr = d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("daemon did not stop cleanly on SIGTERM: %v\n%s", err, d.stderr)
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("daemon did not stop within 15s of SIGTERM\n%s", d.stderr)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, _ := d.get("/healthz"); code != 0 && ready(code) {
			return d
		}
		select {
		case err := <-exited:
			t.Fatalf("daemon exited: %v\n%s", err, d.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not healthy within 30s\n%s", d.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *daemonProc) get(path string) (int, string) {
	c := http.Client{Timeout: 20 * time.Second}
	resp, err := c.Get(d.base + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (d *daemonProc) metrics() string {
	d.t.Helper()
	code, body := d.get("/metrics")
	if code != http.StatusOK {
		d.t.Fatalf("/metrics: %d %s", code, body)
	}
	return body
}

// value is the value of the first exposition line starting with series;
// a series with labels, name{a="x",b="y" (closed or not), matches the
// first line of that name carrying each complete label pair it gives,
// whatever other labels the line has (a label added to a family does not
// change what a test looks for).
func value(body, series string) (float64, bool) {
	name, want, withLabels := strings.Cut(series, "{")
	wanted := testenv.ExpositionLabels(want)
	for _, l := range strings.Split(body, "\n") {
		if withLabels {
			n, rest, ok := strings.Cut(l, "{")
			if !ok || n != name || !testenv.HasLabels(testenv.ExpositionLabels(rest), wanted) {
				continue
			}
		} else if !strings.HasPrefix(l, series) {
			continue
		}
		v, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
		return v, err == nil
	}
	return 0, false
}

func (d *daemonProc) value(series string) float64 {
	d.t.Helper()
	v, _ := value(d.metrics(), series)
	return v
}

// brokenPodVolume is the brief's F1 on a real FUSE mount: a directory of a
// ceph-fuse-typed bindfs mount, bind-mounted as a CSI pod volume, deleted
// through the FUSE mount. repair unmounts the broken bind mount.
type brokenPodVolume struct {
	dir, mnt, kubelet, logs string
	server                  *os.Process
	uid                     string
}

func newBrokenPodVolume(t *testing.T, dir, uid string) *brokenPodVolume {
	t.Helper()
	b := &brokenPodVolume{dir: dir, kubelet: dir + "/var/lib/kubelet", logs: dir + "/var/log/pods", uid: uid}
	if err := os.MkdirAll(dir+"/backing/volumes/csi/vol2", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(b.logs+"/shop_web-0_"+uid, 0o755); err != nil {
		t.Fatal(err)
	}
	b.server = testenv.Bindfs(t, dir+"/backing", dir+"/cephfs", "subtype=ceph-fuse")
	b.mnt = testenv.KubeletPodVolume(t, b.kubelet, uid, "pvc-1", "cephfs.csi.ceph.com", "0001-0011-vol2")
	testenv.Bind(t, dir+"/cephfs/volumes/csi/vol2", b.mnt)
	if err := os.RemoveAll(dir + "/cephfs/volumes/csi/vol2"); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *brokenPodVolume) flags() []string {
	return []string{"--path.kubelet", b.kubelet, "--path.pod-logs", b.logs}
}

func (b *brokenPodVolume) repair(t *testing.T) {
	t.Helper()
	if err := syscall.Unmount(b.mnt, 0); err != nil {
		t.Fatalf("repair: unmount %s: %v", b.mnt, err)
	}
}

// criticalDeletedBaseline is how many critical deleted_root problems this
// namespace has before a test breaks anything (0 on a clean machine).
func criticalDeletedBaseline(t *testing.T) int {
	t.Helper()
	d := decode(t, mountwatchd(t, "--once", "--output=json"))
	n := 0
	for _, f := range d.Findings {
		if f.Check == check.DeletedRoot && f.Severity == finding.Critical {
			n++
		}
	}
	return n
}

// A real Prometheus scrapes the daemon on a node with a broken FUSE-backed
// pod volume: its API returns the problem series with the pod's labels and
// the count; after the mount is repaired the series is gone and the count
// is back to where it was (0 on a clean machine).
func TestDaemonPrometheusScrapesProblemAndRepair(t *testing.T) {
	testenv.RequireRoot(t)
	base := criticalDeletedBaseline(t)
	const uid = "0d5f7a8e-4b1c-4e7e-9a63-3c2a1f0e9b11"
	b := newBrokenPodVolume(t, t.TempDir(), uid)
	d := startDaemon(t, nil, append(b.flags(), "--interval=200ms", "--log.target=stderr")...)
	prom := testenv.StartPrometheus(t, strings.TrimPrefix(d.base, "http://"))

	series := fmt.Sprintf(`mountwatchd_problem{mountpoint=%q}`, b.mnt)
	var got []testenv.PromSample
	testenv.WaitUntil(t, 60*time.Second, "the problem series in Prometheus", func() bool {
		got = prom.Query(t, series)
		return len(got) == 1
	})
	// csi_driver routes the alert to the storage team (issue 30 item 5).
	want := map[string]string{"check": "deleted_root", "severity": "critical", "fstype": "fuse.ceph-fuse", "pod_uid": uid,
		"pod_namespace": "shop", "pod_name": "web-0", "volume": "pvc-1", "job": "mountwatchd",
		"csi_driver": "cephfs.csi.ceph.com", "directory": b.mnt}
	for k, v := range want {
		if got[0].Metric[k] != v {
			t.Errorf("label %s = %q, want %q (%v)", k, got[0].Metric[k], v, got[0].Metric)
		}
	}
	count := `mountwatchd_problems{check="deleted_root",severity="critical"}`
	if c := prom.Query(t, count); len(c) != 1 || c[0].Float() != float64(base+1) {
		t.Errorf("%s = %v, want %d", count, c, base+1)
	}
	if c := prom.Query(t, `mountwatchd_problem_first_seen_timestamp_seconds{mountpoint="`+b.mnt+`"}`); len(c) != 1 ||
		c[0].Float() < float64(time.Now().Add(-5*time.Minute).Unix()) {
		t.Errorf("first seen: %v", c)
	}
	for _, healthy := range []string{`mountwatchd_problems{check="deleted_root",severity="info"}`, `up{job="mountwatchd"}`} {
		if c := prom.Query(t, healthy); len(c) != 1 {
			t.Errorf("%s: %v", healthy, c)
		}
	}

	b.repair(t)
	testenv.WaitUntil(t, 60*time.Second, "the series to go and the count to drop", func() bool {
		c := prom.Query(t, count)
		return len(prom.Query(t, series)) == 0 && len(c) == 1 && c[0].Float() == float64(base)
	})

	// promtool accepts the live exposition too.
	promtool := testenv.RequireCommand(t, "promtool", "prometheus")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(d.metrics())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics on /metrics: %v\n%s", err, out)
	}
}

// --- journald ---------------------------------------------------------------

// A real journald receives exactly one "appeared" and one "cleared" entry
// for a problem, with its fields, priority and MESSAGE_ID, while the daemon
// read the table many times in between. When journald dies, entries go to
// stderr as JSON and the daemon keeps running.
func TestDaemonJournaldOneEntryPerChange(t *testing.T) {
	testenv.RequireRoot(t)
	journalDir, journald := testenv.StartJournald(t)
	const uid = "5e1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
	b := newBrokenPodVolume(t, t.TempDir(), uid)
	d := startDaemon(t, nil, append(b.flags(), "--interval=50ms")...) // --log.target=auto: stderr is a pipe, the journal answers

	reads := func() float64 { return d.value("mountwatchd_mount_table_reads_total ") }
	testenv.WaitUntil(t, 20*time.Second, "the problem", func() bool {
		v, _ := value(d.metrics(), fmt.Sprintf(`mountwatchd_problem{check="deleted_root",fstype="fuse.ceph-fuse",mountpoint=%q`, b.mnt))
		return v == 1
	})
	r := reads()
	testenv.WaitUntil(t, 30*time.Second, "20 more reads of the table", func() bool { return reads() >= r+20 })
	b.repair(t)
	testenv.WaitUntil(t, 20*time.Second, "the problem to clear", func() bool {
		return !strings.Contains(d.metrics(), b.mnt)
	})
	r = reads()
	testenv.WaitUntil(t, 30*time.Second, "20 more reads of the table", func() bool { return reads() >= r+20 })

	var entries []map[string]any
	testenv.WaitUntil(t, 20*time.Second, "two journal entries", func() bool {
		entries = testenv.JournalEntries(t, journalDir, "MOUNT_POINT="+b.mnt)
		return len(entries) >= 2
	})
	if len(entries) != 2 {
		t.Fatalf("%d journal entries for %s, want 2 (appeared, cleared):\n%v", len(entries), b.mnt, entries)
	}
	common := map[string]string{"CHECK": "deleted_root", "SEVERITY": "critical", "FSTYPE": "fuse.ceph-fuse",
		"SOURCE": b.dir + "/backing", "POD_UID": uid, "POD_NAMESPACE": "shop", "POD_NAME": "web-0",
		"VOLUME": "pvc-1", "MESSAGE_ID": export.MessageIDs[check.DeletedRoot], "SYSLOG_IDENTIFIER": "mountwatchd"}
	for i, want := range []struct{ event, prio string }{{"appeared", "2"}, {"cleared", "5"}} {
		e := entries[i]
		if e["EVENT"] != want.event || e["PRIORITY"] != want.prio {
			t.Errorf("entry %d: EVENT %v PRIORITY %v, want %s %s", i, e["EVENT"], e["PRIORITY"], want.event, want.prio)
		}
		for k, v := range common {
			if e[k] != v {
				t.Errorf("entry %d (%s): %s = %v, want %q", i, want.event, k, e[k], v)
			}
		}
		if msg, _ := e["MESSAGE"].(string); !strings.Contains(msg, want.event) || !strings.Contains(msg, b.mnt) {
			t.Errorf("entry %d MESSAGE %q", i, msg)
		}
	}
	if ids := testenv.JournalEntries(t, journalDir, "MESSAGE_ID="+export.MessageIDs[check.DeletedRoot], "MOUNT_POINT="+b.mnt); len(ids) != 2 {
		t.Errorf("journalctl MESSAGE_ID=... finds %d entries, want 2", len(ids))
	}
	if strings.Contains(d.stderr.String(), "mount problem") {
		t.Errorf("problem entries went to stderr although journald was up:\n%s", d.stderr)
	}

	// journald goes away: the next problem is logged to stderr as JSON and
	// the daemon stays healthy.
	if err := journald.Kill(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitUntil(t, 10*time.Second, "journald to be gone", func() bool { return journald.Signal(syscall.Signal(0)) != nil })
	dir2 := t.TempDir()
	testenv.Tmpfs(t, dir2+"/t")
	if err := os.Mkdir(dir2+"/t/src", 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Bind(t, dir2+"/t/src", dir2+"/bind")
	if err := os.Remove(dir2 + "/t/src"); err != nil {
		t.Fatal(err)
	}
	testenv.WaitUntil(t, 20*time.Second, "the new problem on stderr", func() bool {
		return strings.Contains(d.stderr.String(), `"mount_point":"`+dir2+`/bind"`)
	})
	for _, l := range strings.Split(d.stderr.String(), "\n") {
		if strings.Contains(l, dir2+"/bind") && !json.Valid([]byte(l)) {
			t.Errorf("stderr fallback line is not JSON: %s", l)
		}
	}
	if code, body := d.get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz %d %s after journald died", code, body)
	}
}

// --- systemd notify ---------------------------------------------------------

// A NOTIFY_SOCKET made by the test receives READY=1, STATUS= with the
// summary and, with WATCHDOG_USEC set, WATCHDOG=1 repeatedly.
func TestDaemonSystemdNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var mu sync.Mutex
	var got []string
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			mu.Lock()
			got = append(got, string(buf[:n]))
			mu.Unlock()
		}
	}()
	all := func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(got, "\n")
	}
	startDaemon(t, testenv.CleanEnv("NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=400000"), "--log.target=stderr", "--interval=1h")
	testenv.WaitUntil(t, 30*time.Second, "READY=1, STATUS= and 3 WATCHDOG=1", func() bool {
		s := all()
		return strings.Contains(s, "READY=1") && strings.Contains(s, "STATUS=") && strings.Count(s, "WATCHDOG=1") >= 3
	})
	s := all()
	if !strings.Contains(s, "STATUS=OK: ") && !strings.Contains(s, "STATUS=UNKNOWN") && !strings.Contains(s, " mount problem") {
		t.Errorf("STATUS is not the summary line:\n%s", s)
	}
	if strings.Count(s, "READY=1") != 1 {
		t.Errorf("READY=1 sent more than once:\n%s", s)
	}
}

// --- hung FUSE --------------------------------------------------------------

// With the FUSE server of a broken mount stopped (every stat on it would
// block), 100 concurrent scrapes all answer and /healthz stays healthy.
// The scrapes start once the daemon has read the table: /healthz is 200
// from the start (the start grace), while /metrics serves the empty State
// with mountwatchd_mount_table_read_success 0 until the first read.
func TestDaemonHungFUSEScrapesAnswer(t *testing.T) {
	testenv.RequireRoot(t)
	b := newBrokenPodVolume(t, t.TempDir(), "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d")
	if err := b.server.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.server.Signal(syscall.SIGCONT) })
	d := startDaemon(t, nil, append(b.flags(), "--interval=100ms", "--log.target=stderr")...)
	testenv.WaitUntil(t, 20*time.Second, "the first read of the table", func() bool {
		return d.value("mountwatchd_mount_table_read_success ") == 1
	})

	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := "/metrics"
			if i%10 == 0 {
				path = "/healthz"
			}
			code, body := d.get(path)
			switch {
			case code != http.StatusOK:
				errs <- fmt.Errorf("%s: %d %s", path, code, body)
			case path == "/metrics" && !strings.Contains(body, b.mnt):
				reads, _ := value(body, "mountwatchd_mount_table_reads_total ")
				errs <- fmt.Errorf("/metrics lacks the problem on the hung mount (after %v reads of the table)", reads)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	r := d.value("mountwatchd_mount_table_reads_total ")
	testenv.WaitUntil(t, 20*time.Second, "the loop to keep reading", func() bool { return d.value("mountwatchd_mount_table_reads_total ") > r+5 })
	if code, body := d.get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz %d %s", code, body)
	}
}

// --- change events ----------------------------------------------------------

// With --interval=1h, a deleted-root mount made after start shows in
// /metrics within seconds, and goes when unmounted: the kernel's change
// event on mountinfo drives the re-read, not the interval.
func TestDaemonMountChangeEvent(t *testing.T) {
	testenv.RequireRoot(t)
	d := startDaemon(t, nil, "--interval=1h", "--log.target=stderr")
	reads := d.value("mountwatchd_mount_table_reads_total ")

	dir := t.TempDir()
	testenv.Tmpfs(t, dir+"/t")
	if err := os.Mkdir(dir+"/t/src", 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Bind(t, dir+"/t/src", dir+"/bind")
	if err := os.Remove(dir + "/t/src"); err != nil {
		t.Fatal(err)
	}
	series := fmt.Sprintf(`mountwatchd_problem{check="deleted_root",fstype="tmpfs",mountpoint=%q`, dir+"/bind")
	testenv.WaitUntil(t, 10*time.Second, "the new problem in /metrics", func() bool { _, ok := value(d.metrics(), series); return ok })
	if ev := d.value("mountwatchd_mount_table_change_events_total "); ev < 1 {
		t.Errorf("no change event counted (%v)", ev)
	}
	if err := syscall.Unmount(dir+"/bind", 0); err != nil {
		t.Fatal(err)
	}
	testenv.WaitUntil(t, 10*time.Second, "the problem to go", func() bool { _, ok := value(d.metrics(), series); return !ok })
	if now := d.value("mountwatchd_mount_table_reads_total "); now <= reads {
		t.Errorf("reads %v -> %v", reads, now)
	}
}

// Nothing changes and the interval is long: the daemon does not read the
// table again (no busy loop, no polling of its own).
func TestDaemonIdleDoesNoWork(t *testing.T) {
	testenv.RequireRoot(t) // a private namespace, so no other test's mounts change the table
	d := startDaemon(t, nil, "--interval=1h", "--log.target=stderr")
	// Every read must answer a change the kernel reported: the test
	// binary's namespace is shared with what other tests leave behind (a
	// FUSE server exiting late unmounts), and a re-read for a real change
	// is the daemon's job, not work done idle.
	r, c := d.value("mountwatchd_mount_table_reads_total "), d.value("mountwatchd_mount_table_change_events_total ")
	time.Sleep(2 * time.Second) // a window to observe idleness, not a timing assertion
	reads := d.value("mountwatchd_mount_table_reads_total ") - r
	changes := d.value("mountwatchd_mount_table_change_events_total ") - c
	if reads > changes {
		t.Errorf("the table was read %v times in an idle 2s with --interval=1h, with %v changes reported by the kernel", reads, changes)
	}
	if _, ok := value(d.metrics(), "mountwatchd_last_complete_check_timestamp_seconds "); !ok {
		t.Error("no last complete check time")
	}
}

// The kubelet root itself is on a FUSE mount whose server is stopped, so
// classifying the table (reading vol_data.json, the pod log directory)
// blocks. The loop gives up on that read after its timeout, keeps serving
// and stays healthy, starts no second blocked read, and checks again once
// the server answers. SIGTERM still stops the daemon with the read blocked.
func TestDaemonHungKubeletRoot(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	const uid = "3b2a1c0d-9e8f-4a7b-8c6d-5e4f3a2b1c0d"
	kubelet := dir + "/kubelet"
	testenv.Tmpfs(t, dir+"/t")
	for _, d := range []string{dir + "/t/src", dir + "/kb"} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	server := testenv.Bindfs(t, dir+"/kb", kubelet)
	mnt := testenv.KubeletPodVolume(t, kubelet, uid, "pvc-1", "cephfs.csi.ceph.com", "h1")
	testenv.Bind(t, dir+"/t/src", mnt)
	if err := os.Remove(dir + "/t/src"); err != nil {
		t.Fatal(err)
	}
	if err := server.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Signal(syscall.SIGCONT) })

	d := startDaemon(t, nil, "--path.kubelet", kubelet, "--path.pod-logs", dir+"/kb-logs", "--interval=200ms", "--log.target=stderr")
	testenv.WaitUntil(t, 30*time.Second, "a read error counted", func() bool { return d.value("mountwatchd_mount_table_read_errors_total ") >= 2 })
	if !strings.Contains(d.stderr.String(), "took more than") {
		t.Errorf("the blocked read is not logged:\n%s", d.stderr)
	}
	// The loop goes on, but the node's table cannot be read: not healthy.
	if code, body := d.get("/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "mount table cannot be read") {
		t.Errorf("/healthz %d %s with a blocked read, want 503 saying the table cannot be read", code, body)
	}
	if v := d.value("mountwatchd_mount_table_read_success "); v != 0 {
		t.Errorf("mountwatchd_mount_table_read_success %v with a blocked read", v)
	}
	if n := strings.Count(d.stderr.String(), "cannot read the mount table"); n > 2 {
		t.Errorf("read error logged %d times (want once per distinct error)", n)
	}

	if err := server.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	series := fmt.Sprintf(`mountwatchd_problem{check="deleted_root",fstype="tmpfs",mountpoint=%q,pod_name="",pod_namespace="",pod_uid=%q`, mnt, uid)
	testenv.WaitUntil(t, 30*time.Second, "the problem once the server answers", func() bool { _, ok := value(d.metrics(), series); return ok })
	if !strings.Contains(d.stderr.String(), "mount table readable again") {
		t.Errorf("recovery not logged:\n%s", d.stderr)
	}
	if code, body := d.get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz %d %s once the table is read again", code, body)
	}
}

// A daemon whose table cannot be read (--target.pid of a process that does
// not exist, or that exited) is unhealthy and says so where an alert looks:
// /healthz 503 with the reason, mountwatchd_mount_table_read_success 0 and
// every check_success 0, instead of "200 ok" and 0 problems.
func TestDaemonUnreadableTableUnhealthy(t *testing.T) {
	// Never readable: unhealthy from the start, read_success present as 0
	// and no check ever succeeded.
	d := launchDaemon(t, nil, func(int) bool { return true }, "--target.pid=999999999", "--log.target=stderr")
	testenv.WaitUntil(t, 30*time.Second, "a failed read", func() bool { return d.value("mountwatchd_mount_table_read_errors_total ") >= 1 })
	if code, body := d.get("/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "/proc/999999999/mountinfo") {
		t.Errorf("/healthz %d %q with --target.pid=999999999", code, body)
	}
	m := d.metrics()
	if v, ok := value(m, "mountwatchd_mount_table_read_success "); !ok || v != 0 {
		t.Errorf("mountwatchd_mount_table_read_success %v (present %v), want 0", v, ok)
	}
	if v, ok := value(m, `mountwatchd_check_success{check="deleted_root"`); !ok || v != 0 {
		t.Errorf("check_success of deleted_root %v (present %v), want 0", v, ok)
	}

	// Readable, then the target exits (needs a mount namespace: root).
	testenv.RequireRoot(t)
	node := testenv.NewNode(t, "true")
	d = launchDaemon(t, nil, func(int) bool { return true }, "--target.pid", strconv.Itoa(node.PID), "--interval=200ms", "--log.target=stderr")
	testenv.WaitUntil(t, 30*time.Second, "the first read", func() bool { return d.value("mountwatchd_mount_table_read_success ") == 1 })
	if code, body := d.get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz %d %s while the namespace exists", code, body)
	}
	node.Kill()
	testenv.WaitUntil(t, 30*time.Second, "a failed read", func() bool { return d.value("mountwatchd_mount_table_read_errors_total ") >= 1 })
	code, body := d.get("/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "mount table cannot be read") || !strings.Contains(body, "/mountinfo") {
		t.Errorf("/healthz %d %q after the target exited, want 503 naming the table", code, body)
	}
	if v := d.value("mountwatchd_mount_table_read_success "); v != 0 {
		t.Errorf("mountwatchd_mount_table_read_success %v after the target exited", v)
	}
}

// The daemon cannot start: a taken port or a bad interval exits 2 with the
// reason, instead of running without its endpoint.
func TestDaemonCannotStart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r := mountwatchd(t, "--web.listen-address", l.Addr().String(), "--log.target=stderr")
	if r.code != 2 || !strings.Contains(r.stderr, "address already in use") {
		t.Errorf("port taken: exit %d\n%s", r.code, r.stderr)
	}
	r = mountwatchd(t, "--interval=0s")
	if r.code != 2 || !strings.Contains(r.stderr, "--interval") {
		t.Errorf("--interval=0s: exit %d\n%s", r.code, r.stderr)
	}
}

// The DaemonSet case: the daemon watches another mount namespace through
// --target.pid. A deleted-root mount made there after the daemon started is
// reported within seconds with --interval=1h: the change event of
// /proc/<pid>/mountinfo is that namespace's.
func TestDaemonOtherNamespaceChangeEvent(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	node := testenv.NewNode(t, "mount -t tmpfs node-tmpfs "+dir)

	d := startDaemon(t, nil, "--target.pid", strconv.Itoa(node.PID), "--interval=1h", "--log.target=stderr")
	node.Run(fmt.Sprintf("mkdir -p %[1]s/src %[1]s/bind && mount --bind %[1]s/src %[1]s/bind && rmdir %[1]s/src", dir))
	series := fmt.Sprintf(`mountwatchd_problem{check="deleted_root",fstype="tmpfs",mountpoint=%q`, dir+"/bind")
	testenv.WaitUntil(t, 10*time.Second, "the other namespace's new problem", func() bool { _, ok := value(d.metrics(), series); return ok })
	if data, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(data), dir+"/bind") {
		t.Error("the node's mount is in the test's own namespace: the test proves nothing")
	}
}

// --web.config.file turns on TLS and basic auth for /metrics and /healthz
// (the exporter toolkit's web configuration).
func TestDaemonWebConfigTLSBasicAuth(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSignedCert(t)
	if err := os.WriteFile(dir+"/cert.pem", certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/key.pem", keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("tls_server_config:\n  cert_file: %s/cert.pem\n  key_file: %s/key.pem\nbasic_auth_users:\n  prom: %s\n", dir, dir, hash)
	if err := os.WriteFile(dir+"/web.yml", []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	addr := testenv.FreeLoopbackAddr(t)
	cmd := exec.Command(binary(t), "--web.listen-address", addr, "--web.config.file", dir+"/web.yml", "--log.target=stderr", "--interval=1h")
	cmd.Env = testenv.CleanEnv()
	var stderr testenv.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(path, user, pass string) int {
		req, _ := http.NewRequest("GET", "https://"+addr+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	testenv.WaitUntil(t, 30*time.Second, "the TLS endpoint", func() bool { return get("/healthz", "prom", "s3cret") == http.StatusOK })
	if code := get("/metrics", "prom", "s3cret"); code != http.StatusOK {
		t.Errorf("/metrics with credentials: %d", code)
	}
	if code := get("/metrics", "", ""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without credentials: %d, want 401", code)
	}
	if code := get("/metrics", "prom", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("/metrics with a wrong password: %d, want 401", code)
	}
	if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP served metrics although TLS is configured")
		}
	}
}

// selfSignedCert is a certificate for 127.0.0.1, valid for an hour.
func selfSignedCert(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mountwatchd-test"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// The daemon collects at GOGC=50 unless the environment says otherwise.
func TestDaemonGCPercent(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	t.Setenv("GOGC", "")
	os.Unsetenv("GOGC")
	collectSooner()
	if got := debug.SetGCPercent(100); got != daemonGCPercent {
		t.Errorf("GOGC unset: the daemon collects at %d, want %d", got, daemonGCPercent)
	}
	t.Setenv("GOGC", "200")
	collectSooner()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC=200 in the environment: collectSooner changed GOGC to %d", got)
	}
}
