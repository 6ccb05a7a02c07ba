package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/remedy"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// hungPodVolume is the field's hang on a pod volume: an sshfs CSI pod
// volume whose sshd session is frozen (sshfs read each request and waits),
// with a stand-in pod whose two tasks wait on it in the kernel, one of
// them SIGKILLed and still in D.
type hungPodVolume struct {
	mnt, kubelet, logs string
	sshfs              *testenv.SSHFS
	pod                *testenv.StandInPod
	tasks              []int // the pod's tasks stuck on the volume
	killed             int   // the one SIGKILLed
}

// newHungPodVolume mounts the volume and returns it healthy; hang freezes
// it and starts the pod.
func newHungPodVolume(t *testing.T, dir string) *hungPodVolume {
	t.Helper()
	testenv.RequireRoot(t)
	v := &hungPodVolume{kubelet: filepath.Join(dir, "kubelet"), logs: filepath.Join(dir, "log", "pods")}
	uid := testenv.NewPodUID(t)
	v.mnt = testenv.KubeletPodVolume(t, v.kubelet, uid, "pvc-1", "sshfs.csi.example.com", "vol-1")
	src := filepath.Join(dir, "src")
	for _, sub := range []string{"a", "b"} {
		if err := os.MkdirAll(filepath.Join(src, sub), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, sub, "f"), []byte("never read before\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(v.logs, "team-a_web-0_"+uid), 0o755); err != nil {
		t.Fatal(err)
	}
	v.sshfs = testenv.NewSSHFS(t, src, v.mnt)
	var sfs unix.Statfs_t
	if err := unix.Statfs("/sys/fs/fuse/connections", &sfs); err != nil || sfs.Type != 0x65735543 {
		testenv.Mount(t, "none", "/sys/fs/fuse/connections", "fusectl", 0, "")
	}
	return v
}

// hang starts the pod, which opens a file of the volume, freezes the
// server, then has the pod look up a new name and read the file (never
// read before: no cache answers): its two tasks wait on the server (the
// lookup in request_wait_answer, the read on the page it waits for), and
// the one whose request sshfs read is SIGKILLed: it stays in D.
func (v *hungPodVolume) hang(t *testing.T) {
	t.Helper()
	trigger := filepath.Join(t.TempDir(), "go")
	v.pod = testenv.StartStandInPod(t, testenv.CgroupfsDriver, "burstable", "sh", "-c",
		`exec 3<"$0/b/f"; while [ ! -e "$1" ]; do sleep 0.05; done; cat "$0/a/new" & cat <&3 & wait`, v.mnt, trigger)
	t.Cleanup(v.sshfs.Resume) // before the pod's cleanup: lets it exit
	// The shell holds the file open once its descriptor 3 names it; a
	// count of descriptors would also count whatever the test inherited.
	file := filepath.Join(v.mnt, "b", "f")
	testenv.WaitUntil(t, 20*time.Second, "the pod to open "+file, func() bool {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/3", v.pod.Cmd.Process.Pid))
		return err == nil && target == file
	})
	v.sshfs.Stall()
	if err := os.WriteFile(trigger, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.WaitUntil(t, 20*time.Second, "the pod's two tasks waiting on the server", func() bool {
		v.tasks = nil
		for _, pid := range testenv.Descendants(v.pod.Cmd.Process.Pid) {
			if waitsOnFUSE(pid) {
				v.tasks = append(v.tasks, pid)
			}
		}
		if len(v.tasks) != 2 && testing.Verbose() {
			for _, pid := range testenv.Descendants(v.pod.Cmd.Process.Pid) {
				b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", pid))
				t.Logf("pod task %d: state %s, wchan %s", pid, procState(pid), b)
			}
		}
		return len(v.tasks) == 2
	})
	for _, pid := range v.tasks {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", pid)); string(b) == "request_wait_answer" {
			v.killed = pid
		}
	}
	if v.killed == 0 {
		t.Fatalf("no task of the pod waits in request_wait_answer: %v", v.tasks)
	}
	if err := syscall.Kill(v.killed, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if s := procState(v.killed); s != "D" {
		t.Fatalf("the SIGKILLed task is in state %q, want D: the server did not read its request", s)
	}
}

// waitsOnFUSE reports whether pid waits in the kernel: for a FUSE
// server's answer (interruptibly, S, until a signal; then D), or in D.
func waitsOnFUSE(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", pid))
	return err == nil && (string(b) == "request_wait_answer" || procState(pid) == "D")
}

// stuck are the pod's tasks still in the kernel.
func (v *hungPodVolume) stuck() []int {
	var out []int
	for _, pid := range v.tasks {
		if waitsOnFUSE(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// procState is the state letter of /proc/<pid>/stat, "" once it is gone.
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

func (v *hungPodVolume) flags(state string) []string {
	return []string{"--path.kubelet", v.kubelet, "--path.pod-logs", v.logs, "--probe.state-dir=" + state,
		"--interval=1h", "--probe.interval=300ms", "--probe.timeout=200ms"}
}

// remediationEntries are the journal's remediation decisions on conn.
func remediationEntries(t *testing.T, dir, conn string) []map[string]any {
	t.Helper()
	return testenv.JournalEntries(t, dir, "MESSAGE_ID="+remedy.MessageID, "CONNECTION="+conn)
}

// Issue 28's first case: the daemon with remediation on and a short
// threshold aborts the hung connection once; every stuck task exits (the
// SIGKILLed one too), the finding turns from hung to stale, the pod
// volume's umount returns, the journal holds one entry and the counter 1.
func TestRemediationAbortsHungConnection(t *testing.T) {
	journalDir, _ := testenv.StartJournald(t)
	v := newHungPodVolume(t, t.TempDir())
	conn := connectionOf(t, v.mnt)
	state := t.TempDir()
	d := startDaemon(t, nil, append(v.flags(state), "--log.target=journald", "--remediation.mode=on", "--remediation.hung-for=10s")...)
	testenv.WaitUntil(t, 30*time.Second, "the healthy volume probed", func() bool { return d.probeRuns("hung_mount") >= 2 })
	v.hang(t)

	aborted := `mountwatchd_remediation_actions_total{action="abort",fstype="fuse.sshfs",result="aborted"} 1`
	testenv.WaitUntil(t, 30*time.Second, "the abort counted", func() bool { return strings.Contains(d.metrics(), aborted) })
	testenv.WaitUntil(t, 20*time.Second, "every stuck task of the pod to exit", func() bool { return len(v.stuck()) == 0 })
	if s := procState(v.killed); s != "" && s != "Z" {
		t.Errorf("the SIGKILLed task is in state %s after the abort, want gone", s)
	}
	awaitProblems(t, d, filepath.Dir(filepath.Dir(v.mnt)), "hung turned stale", map[string]bool{"stale_mount " + v.mnt: true})
	runs := d.probeRuns("hung_mount")
	testenv.WaitUntil(t, 30*time.Second, "three more probe runs", func() bool { return d.probeRuns("hung_mount") >= runs+3 })
	body := d.metrics()
	if !strings.Contains(body, aborted) || strings.Count(body, "mountwatchd_remediation_actions_total{") != 1 {
		t.Errorf("after more probe runs, want the one abort counted and nothing else:\n%s", grepLines(body, "mountwatchd_remediation_actions_total"))
	}
	var entries []map[string]any
	testenv.WaitUntil(t, 10*time.Second, "the journal entry", func() bool {
		entries = remediationEntries(t, journalDir, conn)
		return len(entries) >= 1
	})
	if len(entries) != 1 {
		for _, e := range entries {
			t.Logf("entry: %v %v %v", e["RESULT"], e["REASON"], e["__REALTIME_TIMESTAMP"])
		}
		t.Fatalf("%d remediation journal entries, want 1", len(entries))
	}
	e := entries[0]
	for k, want := range map[string]string{"RESULT": "aborted", "MODE": "on", "ACTION": "abort", "FSTYPE": "fuse.sshfs", "MOUNT_POINT": v.mnt, "PRIORITY": "4"} {
		if e[k] != want {
			t.Errorf("journal %s=%v, want %q", k, e[k], want)
		}
	}
	if n, _ := strconv.Atoi(fmt.Sprint(e["STUCK_TASKS"])); n < 1 {
		t.Errorf("journal STUCK_TASKS=%v, want the pod's task on the volume's descriptor at least", e["STUCK_TASKS"])
	}
	if !strings.Contains(fmt.Sprint(e["STUCK_TASK_LIST"]), "cat") || !strings.Contains(fmt.Sprint(e["POD_VOLUMES"]), "team-a/web-0") {
		t.Errorf("journal entry lacks the stuck tasks or the pod volume: %v", e)
	}

	done := make(chan error, 1)
	go func() { done <- unix.Unmount(v.mnt, 0) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("umount %s: %v", v.mnt, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("umount %s did not return within 20s of the abort", v.mnt)
	}
}

func grepLines(body, prefix string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// An SRE on the broken node: --once in dry-run says what it would do and
// changes nothing; --once on does it now (the threshold, which one look
// cannot observe, is not applied unless given, and the report says so);
// the text and JSON reports show it; a later --once does not repeat it.
func TestOnceRemediation(t *testing.T) {
	v := newHungPodVolume(t, t.TempDir())
	conn := connectionOf(t, v.mnt)
	state := t.TempDir()
	v.hang(t)
	args := []string{"--once", "--output=json", "--path.kubelet", v.kubelet, "--path.pod-logs", v.logs, "--probe.state-dir=" + state,
		"--probe.timeout=500ms", "--once.timeout=5s"}
	type doc struct {
		Findings []struct {
			Check      string            `json:"check"`
			MountPoint string            `json:"mountpoint"`
			Details    map[string]string `json:"details"`
		} `json:"findings"`
		Remediation []struct {
			Mode, Result, Connection, Reason string
		} `json:"remediation"`
	}
	once := func(extra ...string) (doc, result) {
		t.Helper()
		r := mountwatchd(t, append(append([]string{}, args...), extra...)...)
		var d doc
		if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
			t.Fatalf("exit %d, not JSON: %v\n%s%s", r.code, err, r.stdout, r.stderr)
		}
		return d, r
	}
	d, r := once("--remediation.mode=dry-run")
	if len(d.Remediation) != 1 || d.Remediation[0].Result != "would_abort" || d.Remediation[0].Connection != conn {
		t.Fatalf("dry-run --once: remediation %+v, want would_abort of %s\n%s", d.Remediation, conn, r.stderr)
	}
	if !strings.Contains(d.Remediation[0].Reason, "--remediation.hung-for not applied") {
		t.Errorf("dry-run --once does not say the threshold was not applied: %q", d.Remediation[0].Reason)
	}
	dry := mountwatchd(t, append(append([]string{"--once"}, args[2:]...), "--remediation.mode=dry-run")...)
	if !strings.Contains(dry.stdout, "Remediation (dry-run): abort of connection "+conn) || !strings.Contains(dry.stdout, "would_abort") {
		t.Errorf("the text report of dry-run --once does not show the decision:\n%s", dry.stdout)
	}
	if len(v.stuck()) != 2 {
		t.Fatalf("after dry-run --once, stuck tasks %v, want both still stuck", v.stuck())
	}
	// The threshold, when given, is applied to what --once can see: the
	// probe stuck since the first run (its record).
	d, _ = once("--remediation.mode=on", "--remediation.hung-for=1h")
	if len(d.Remediation) != 0 || len(v.stuck()) != 2 {
		t.Fatalf("--once with --remediation.hung-for=1h: remediation %+v, stuck %v; want nothing done", d.Remediation, v.stuck())
	}
	d, r = once("--remediation.mode=on")
	if len(d.Remediation) != 1 || d.Remediation[0].Result != "aborted" {
		t.Fatalf("--once on: remediation %+v, want aborted\n%s", d.Remediation, r.stderr)
	}
	hung := false
	for _, f := range d.Findings {
		if f.Check == "hung_mount" && f.MountPoint == v.mnt {
			hung = f.Details["aborted_at"] != ""
		}
	}
	if !hung {
		t.Errorf("the hung finding does not say when it was aborted: %+v", d.Findings)
	}
	testenv.WaitUntil(t, 20*time.Second, "every stuck task to exit", func() bool { return len(v.stuck()) == 0 })
	// The first runs' probes, stuck until the abort, return too; their
	// helpers may take a moment to exit on a loaded machine.
	waitStuckProbesGone(t, state)
	text := mountwatchd(t, append(append([]string{"--once"}, args[2:]...), "--remediation.mode=on")...)
	if !strings.Contains(text.stdout, "stale_mount") || !strings.Contains(text.stdout, "aborted_at: ") {
		t.Errorf("the text report after the abort lacks the stale finding with aborted_at:\n%s%s", text.stdout, text.stderr)
	}
	if strings.Contains(text.stdout, "Remediation (on)") {
		t.Errorf("a later --once decided again about the aborted connection:\n%s\n%s", text.stdout, text.stderr)
	}
}
