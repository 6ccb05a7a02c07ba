package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// stalledServer is a live FUSE server that has stopped answering the way
// servers do in the field: it reads each request and waits on a backend
// that does not answer, so the task that made the request sleeps in
// request_wait_answer, where SIGKILL does not end it (issue 18).
type stalledServer struct {
	name string
	// start mounts a healthy server on dir and returns what stalls it.
	start func(t *testing.T, dir string) (stall func())
	// fstype of the mount; deep is set when statfs and stat still answer
	// once stalled, and only the deep request finds it.
	fstype string
	deep   bool
}

var stalledServers = []stalledServer{
	{name: "sshfs", fstype: "fuse.sshfs", start: func(t *testing.T, dir string) func() {
		if err := os.MkdirAll(dir+"-src/a", 0o755); err != nil {
			t.Fatal(err)
		}
		s := testenv.NewSSHFS(t, dir+"-src", dir)
		return s.Stall
	}},
	{name: "ceph-fuse-standin-hang", fstype: "fuse.ceph-fuse", start: func(t *testing.T, dir string) func() {
		p := fakeCeph(t, dir)
		return func() { sendSignal(t, p, syscall.SIGUSR1) }
	}},
	{name: "ceph-fuse-standin-mds-down", fstype: "fuse.ceph-fuse", deep: true, start: func(t *testing.T, dir string) func() {
		p := fakeCeph(t, dir)
		return func() { sendSignal(t, p, syscall.SIGHUP) }
	}},
}

func fakeCeph(t *testing.T, dir string) *os.Process {
	if err := os.MkdirAll(dir+"-src/a", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"-src/a/f", []byte("data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return testenv.FakeCephFuse(t, dir+"-src", dir)
}

func sendSignal(t *testing.T, p *os.Process, s syscall.Signal) {
	t.Helper()
	if err := p.Signal(s); err != nil {
		t.Fatal(err)
	}
}

// TestStalledServer is issue 18 on each stalled server: --once returns its
// exit status and closes its output with stdout read through a pipe (as
// node-problem-detector reads it); three runs in a row leave at most one
// stuck helper for the connection, the later runs reporting it hung
// without probing it again; the daemon exits on SIGTERM with its own probe
// stuck; and where statfs and stat are still answered, the deep request is
// what finds the stall.
func TestStalledServer(t *testing.T) {
	testenv.RequireRoot(t)
	for _, s := range stalledServers {
		t.Run(s.name, func(t *testing.T) {
			mnt := filepath.Join(t.TempDir(), "mnt")
			stall := s.start(t, mnt)
			state := t.TempDir()
			args := []string{"--once", "--output=json", "--probe.timeout=500ms", "--once.timeout=3s", "--probe.state-dir=" + state}
			if r := onceThroughPipe(t, args...); r.code != 0 {
				t.Fatalf("healthy %s: exit %d\n%s%s", s.name, r.code, r.stdout, r.stderr)
			}
			stall()

			if s.deep {
				// statfs and stat alone: still answered, the stall unseen.
				r := onceThroughPipe(t, append(args[:len(args)-1:len(args)-1], "--probe.state-dir="+t.TempDir(), "--probe.shallow-fstypes="+s.fstype)...)
				if f := findingAt(decode(t, r), mnt); r.code != 0 || f != nil {
					t.Fatalf("without the deep request: exit %d, finding %+v; want 0 and none (statfs and stat are answered)\n%s", r.code, f, r.stderr)
				}
			}
			var first string
			for run := 1; run <= 3; run++ {
				r := onceThroughPipe(t, args...)
				d := decode(t, r)
				f := findingAt(d, mnt)
				if r.code != 1 || f == nil || f.Check != "hung_mount" {
					t.Fatalf("run %d: exit %d, finding %+v; want 1 and hung_mount on %s\n%s%s", run, r.code, f, mnt, r.stdout, r.stderr)
				}
				// Hung since the first run's probe: not probed again.
				since := blockedSince(t, r, mnt)
				if run == 1 {
					first = since
				} else if since != first || first == "" {
					t.Errorf("run %d: blocked since %q, want the first run's probe's start %q: the stuck connection was probed again", run, since, first)
				}
				if n := stuckProcesses(t); len(n) > 1 {
					t.Fatalf("after %d runs of --once, %d processes are stuck on the one connection, want at most 1: %v", run, len(n), n)
				}
			}
			if n := stuckProcesses(t); len(n) != 1 {
				t.Errorf("%d stuck processes after three runs, want the one helper: the probe never reached the server? %v", len(n), n)
			}

			// The daemon, with a state directory of its own: it probes,
			// its probe gets stuck, and SIGTERM still ends it.
			daemonStopsWithProbeStuck(t, mnt, t.TempDir())
		})
	}
}

// blockedSince is the blocked_since detail of the finding on mnt.
func blockedSince(t *testing.T, r result, mnt string) string {
	t.Helper()
	var d struct {
		Findings []struct {
			MountPoint string            `json:"mountpoint"`
			Details    map[string]string `json:"details"`
		} `json:"findings"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatal(err)
	}
	for _, f := range d.Findings {
		if f.MountPoint == mnt {
			return f.Details["blocked_since"]
		}
	}
	return ""
}

// onceThroughPipe runs the binary with stdout and stderr on pipes it reads
// to their end, as $(mountwatchd --once) and node-problem-detector do, and
// fails unless the process exits and both pipes close.
func onceThroughPipe(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	outW.Close()
	errW.Close()
	type read struct {
		b   []byte
		err error
	}
	outc, errc := make(chan read, 1), make(chan read, 1)
	go func() { b, err := io.ReadAll(outR); outc <- read{b, err} }()
	go func() { b, err := io.ReadAll(errR); errc <- read{b, err} }()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Far beyond --once.timeout: the bound says "it returned", not how fast.
	limit := time.After(30 * time.Second)
	var out, serr read
	var werr error
	for got := 0; got < 3; got++ {
		select {
		case out = <-outc:
		case serr = <-errc:
		case werr = <-exited:
		case <-limit:
			t.Fatalf("mountwatchd %v: no exit status or no end of its output 30s after start (a thread held by the server?); stuck: %v",
				args, stuckProcesses(t))
		}
	}
	outR.Close()
	errR.Close()
	code := 0
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		code = ee.ExitCode()
	} else if werr != nil {
		t.Fatal(werr)
	}
	return result{code, string(out.b), string(serr.b)}
}

// stuckProcesses are the processes of this test's mount namespace (the
// binaries the test ran, their helpers) with a thread in uninterruptible
// sleep, by PID with their name. It reads only /proc/<pid>/stat and
// /proc/<pid>/task/*/stat, never a blocked task's memory.
func stuckProcesses(t *testing.T) map[int]string {
	t.Helper()
	ours, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		for _, task := range tasks {
			// The thread's own namespace: a stuck helper's main thread
			// may have exited already.
			if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/task/%s/ns/mnt", pid, task.Name())); err != nil || ns != ours {
				continue
			}
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
			if err != nil {
				continue
			}
			s := string(b)
			open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
			if open < 0 || end < open {
				continue
			}
			if fields := strings.Fields(s[end+1:]); len(fields) > 0 && fields[0] == "D" {
				comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
				out[pid] = strings.TrimSpace(string(comm))
				break
			}
		}
	}
	return out
}

// daemonStopsWithProbeStuck runs the daemon until it reports mnt hung
// (its own probe stuck in a helper), then sends SIGTERM: it must exit,
// with status 0, within 5s.
func daemonStopsWithProbeStuck(t *testing.T, mnt, state string) {
	t.Helper()
	addr := testenv.FreeLoopbackAddr(t)
	cmd := exec.Command(binary(t), "--web.listen-address", addr, "--log.target=stderr", "--interval=1h",
		"--probe.interval=500ms", "--probe.timeout=300ms", "--probe.state-dir="+state)
	cmd.Env = testenv.CleanEnv()
	stderr := &testenv.SyncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	d := &daemonProc{t: t, cmd: cmd, base: "http://" + addr, stderr: stderr}
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
		}
	})
	testenv.WaitUntil(t, 30*time.Second, "the daemon to report "+mnt+" hung", func() bool {
		code, body := d.get("/metrics")
		return code == 200 && strings.Contains(body, `check="hung_mount"`) && strings.Contains(body, `mountpoint="`+mnt+`"`)
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("daemon exit on SIGTERM with a probe stuck: %v\n%s", err, stderr)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the daemon did not exit within 5s of SIGTERM with a probe of %s stuck; stuck processes %v\n%s", mnt, stuckProcesses(t), stderr)
	}
}
