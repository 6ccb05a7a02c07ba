package probe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe/probetest"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// TestMain makes the test binary a probe helper when HelperFS starts it,
// and runs the tests in a private mount namespace.
func TestMain(m *testing.M) {
	if len(os.Args) == 2 && os.Args[1] == HelperArg {
		os.Exit(ServeHelper(os.Stdin, os.Stdout))
	}
	testenv.Main(m)
}

// liveTable is the live snapshot of our own namespace.
func liveTable(t *testing.T) *mounts.Snapshot {
	t.Helper()
	s, err := mounts.RereadSnapshot(mounts.Host{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// stalledStandIn is the ceph-fuse stand-in on a fresh directory, taking
// each request and blocking in its handler: a live server waiting on its
// backend. release makes it answer again.
func stalledStandIn(t *testing.T) (mnt string, release func()) {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(dir+"/src/a", 0o755); err != nil {
		t.Fatal(err)
	}
	p := testenv.FakeCephFuse(t, dir+"/src", dir+"/mnt")
	if err := p.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	return dir + "/mnt", func() { _ = p.Signal(syscall.SIGUSR2) }
}

// fuseWaiters are our own threads waiting on a FUSE server: in
// request_wait_answer or another fuse_* wait (not the server side's
// fuse_dev_*), asleep in S or D. A request the server has read first waits
// interruptibly (S), so the state alone says nothing; and a thread of ours
// in D for a moment of disk I/O is not a probe.
func fuseWaiters(t *testing.T) int {
	t.Helper()
	tasks, _ := os.ReadDir("/proc/self/task")
	n := 0
	for _, task := range tasks {
		w, err := os.ReadFile("/proc/self/task/" + task.Name() + "/wchan")
		if err != nil {
			continue
		}
		wchan := strings.TrimSpace(string(w))
		if wchan == "request_wait_answer" || (strings.HasPrefix(wchan, "fuse_") && !strings.HasPrefix(wchan, "fuse_dev_")) {
			n++
		}
	}
	return n
}

// A probe held by a live FUSE server in request_wait_answer holds a helper
// process, never a thread of ours; the helper is retired, a record says
// which thread is stuck, that thread has only the capabilities a probe
// needs, and the helper holds no descriptor of ours. Once the server
// answers, the record goes, the helper exits and the next round answers.
func TestHelperFSStuckProbeHoldsOnlyItsHelper(t *testing.T) {
	testenv.RequireRoot(t)
	mnt, release := stalledStandIn(t)
	t.Cleanup(release)
	state := t.TempDir()
	fs := NewHelperFS(HelperConfig{StateDir: state})
	p := NewProber(Config{Timeout: 300 * time.Millisecond}, fs)
	s := liveTable(t)
	var id int
	for _, m := range s.Mounts {
		if m.Mountpoint == mnt {
			id = m.ID
		}
	}
	r := p.Round(context.Background(), s)
	if res := r.Results[id]; res.State != Hung {
		t.Fatalf("stalled stand-in: %+v, want hung", res)
	}
	if n := fuseWaiters(t); n != 0 {
		t.Errorf("%d of our threads wait on the FUSE server: the probe ran in our process", n)
	}
	// Retired once its probe was abandoned; its successor may be started
	// already, for the next run.
	if st := fs.Stats(); st.Retired != 1 || st.Started < 1 || st.Started > 2 {
		t.Errorf("helpers %+v, want the one retired once its probe was abandoned (and at most its successor started)", st)
	}

	files, _ := filepath.Glob(filepath.Join(state, "stuck-*.json"))
	if len(files) != 1 {
		t.Fatalf("records %v, want one", files)
	}
	b, _ := os.ReadFile(files[0])
	var rec stuckRecord
	if err := jsonUnmarshal(b, &rec); err != nil || rec.TID == 0 || !rec.holds() {
		t.Fatalf("record %s: %+v %v", b, rec, err)
	}
	// The stuck thread keeps CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH only.
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", rec.PID, rec.TID))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%016x", uint64(1)<<unixCapSysPtrace|uint64(1)<<unixCapDacReadSearch)
	for _, l := range strings.Split(string(status), "\n") {
		if k, v, ok := strings.Cut(l, ":\t"); ok && (k == "CapEff" || k == "CapPrm") && v != want {
			t.Errorf("stuck probe thread %s=%s, want %s (CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH)", k, v, want)
		}
	}
	// It waits for the server's answer (interruptibly until a signal
	// comes, uninterruptibly after).
	if wchan, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/wchan", rec.PID, rec.TID)); string(wchan) != "request_wait_answer" {
		t.Errorf("the recorded thread waits in %q, not request_wait_answer", wchan)
	}
	// Its standard descriptors: two pipes of ours and /dev/null, never our
	// caller's output; and no socket or terminal of ours inherited.
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", rec.PID))
	for _, fd := range fds {
		l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", rec.PID, fd.Name()))
		switch fd.Name() {
		case "0", "1":
			if !strings.HasPrefix(l, "pipe:") {
				t.Errorf("helper fd %s is %s, want a pipe", fd.Name(), l)
			}
		case "2":
			if l != "/dev/null" {
				t.Errorf("helper stderr is %s, want /dev/null", l)
			}
		default:
			if strings.HasPrefix(l, "socket:") || strings.HasPrefix(l, "/dev/pts") || strings.HasPrefix(l, "pipe:") {
				t.Errorf("helper fd %s is %s: inherited", fd.Name(), l)
			}
		}
	}

	// Another HelperFS on the same state directory (a later run of
	// --once) reports it hung since the first probe, and probes nothing.
	fs2 := NewHelperFS(HelperConfig{StateDir: state})
	r2 := NewProber(Config{Timeout: 300 * time.Millisecond}, fs2).Round(context.Background(), liveTable(t))
	if res := r2.Results[id]; res.State != Hung || !res.Since.Equal(rec.Since) {
		t.Errorf("a later run: %+v, want hung since %s", res, rec.Since)
	}
	if st := fs2.Stats(); st.Started != 0 {
		t.Errorf("a later run started %d helpers, want none: the stuck connection is the only probed one", st.Started)
	}

	release()
	testenv.WaitUntil(t, 20*time.Second, "the stuck probe to return and its helper to exit", func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d/task/%d", rec.PID, rec.TID))
		return os.IsNotExist(err) && p.Stats().Blocked == 0
	})
	if _, err := os.Stat(files[0]); !os.IsNotExist(err) {
		t.Errorf("record %s still there once the probe returned", files[0])
	}
	if res := p.Round(context.Background(), liveTable(t)).Results[id]; res.State != OK {
		t.Errorf("after the server answered: %+v", res)
	}
	if _, ok := fs2.Stuck(mountDev(t, s, id)); ok {
		t.Error("the record still holds once the probe returned")
	}
}

func mountDev(t *testing.T, s *mounts.Snapshot, id int) string {
	for _, m := range s.Mounts {
		if m.ID == id {
			return m.Dev()
		}
	}
	t.Fatalf("no mount %d", id)
	return ""
}

// A record whose process exited, or whose PID now belongs to another
// process or thread, never says a probe is stuck, and is removed.
func TestStuckRecordStale(t *testing.T) {
	dir := t.TempDir()
	self, err := procStart("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	for name, rec := range map[string]stuckRecord{
		"exited":        {PID: 1 << 22, PStart: 1, Since: time.Now()},
		"pid reused":    {PID: os.Getpid(), PStart: self + 1, Since: time.Now()},
		"thread reused": {PID: os.Getpid(), PStart: self, TID: os.Getpid(), TStart: self + 1, Since: time.Now()},
	} {
		path, err := recordPath(dir, "0:99")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := jsonMarshal(rec)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, ok := readRecord(dir, "0:99"); ok {
			t.Errorf("%s: the record holds", name)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("%s: the record was not removed", name)
		}
	}
	// A thread of this process that the Go runtime parked: alive, with the
	// recorded start time, but back from whatever it did (an aborted
	// probe's helper, for a moment before it exits).
	parkedTID, parkedStart := 0, uint64(0)
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, e := range tasks {
		w, _ := os.ReadFile("/proc/self/task/" + e.Name() + "/wchan")
		if strings.HasPrefix(string(w), "futex_") {
			parkedTID, _ = strconv.Atoi(e.Name())
			parkedStart, _ = procStart("/proc/self/task/" + e.Name() + "/stat")
			break
		}
	}
	testenv.Require(t, parkedTID != 0, "a thread of the test parked in futex_* (wchan names kernel functions)")
	path, _ := recordPath(dir, "0:97")
	b, _ := jsonMarshal(stuckRecord{PID: os.Getpid(), PStart: self, TID: parkedTID, TStart: parkedStart, Since: time.Now()})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := readRecord(dir, "0:97"); ok {
		t.Errorf("a record of a thread parked in the Go runtime (tid %d) holds", parkedTID)
	}
	if _, err := recordPath(dir, "../x"); err == nil {
		t.Error("a connection name with a path in it was accepted")
	}
	// And one that holds: this very thread's process.
	path, _ = recordPath(dir, "0:98")
	b, _ = jsonMarshal(stuckRecord{PID: os.Getpid(), PStart: self, Since: time.Unix(100, 0)})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if since, ok := readRecord(dir, "0:98"); !ok || since.Unix() != 100 {
		t.Errorf("a live record: %v %v", since, ok)
	}
}

var (
	jsonMarshal   = json.Marshal
	jsonUnmarshal = json.Unmarshal
)

const (
	unixCapSysPtrace     = unix.CAP_SYS_PTRACE
	unixCapDacReadSearch = unix.CAP_DAC_READ_SEARCH
)

// A helper that cannot start is our failure, named, never a finding: the
// connection is not probed and the round's error says why.
func TestHelperFSCannotStart(t *testing.T) {
	fs := NewHelperFS(HelperConfig{Exe: filepath.Join(t.TempDir(), "missing")})
	s := probetest.Table(t, probetest.NewFS(), probetest.FuseLine(10, 40, "/", "/mnt/cephfs"))
	r := NewProber(Config{Timeout: time.Second}, fs).Round(context.Background(), s)
	if res := r.Results[10]; res.State != NotProbed || !errors.Is(res.Err, ErrHelper) {
		t.Errorf("result %+v, want not probed with ErrHelper", res)
	}
	if err := r.NamespaceErr(); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("round error %v, want the helper's start error naming the binary", err)
	}
}
