package tasks

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

// The fixtures under testdata/proc were captured from stand-in pods stuck on
// a FUSE server that took their requests (live_test.go's setup): 8603 is a
// pod's ls (cgroupfs driver, cgroup v1) in getdents64 on the mount's root,
// 8618 another pod's stat (systemd driver, cgroup v2) looking up a new name.
// The others are made from them, one shape each (see the comments in
// fixtureScan's table). testdata/host-mountinfo is the table they were
// captured under, with an nfs4 mount added.

func fixtureSnapshot(t *testing.T) *mounts.Snapshot {
	t.Helper()
	s, err := mounts.ReadCapturedTable("testdata/host-mountinfo", mounts.Host{KubeletRoot: mounts.DefaultKubeletRoot})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func fixtureConfig(t *testing.T, procfs, fusectl string) Config {
	t.Helper()
	abs, err := filepath.Abs("testdata/root/var/log/pods")
	if err != nil {
		t.Fatal(err)
	}
	return Config{Host: mounts.Host{Procfs: procfs, PodLogDir: abs}, Fusectl: fusectl, fusectlAnyDir: true}
}

func byTID(r *Report) map[int]Task {
	out := map[int]Task{}
	for _, t := range r.Tasks {
		out[t.TID] = t
	}
	return out
}

func TestScanFixtures(t *testing.T) {
	sc := NewScanner(fixtureConfig(t, "testdata/proc", "testdata/fusectl-two"))
	r := sc.Scan(fixtureSnapshot(t))
	// 9030 is a task in D whose wait channel the kernel hides (as from a
	// reader without CAP_SYS_PTRACE): unreadable, and the report says why.
	if r.Err != nil || r.Unreadable != 1 || len(r.Errors) != 1 || !strings.Contains(r.Errors[0], "9030/task/9030/wchan: hidden") {
		t.Fatalf("scan: %v, unreadable %d %v; want only 9030's hidden wchan", r.Err, r.Unreadable, r.Errors)
	}
	got := byTID(r)
	lsPod := Pod{UID: "e6043daa-adf1-6368-5562-b0cd59aa2890", Namespace: "team-a", Name: "web-0", QoS: "besteffort",
		ContainerID: "1017fb1d7221faf00e18cf85d0bf54609e37bf32d2eaa5f875e62394ce65c7e0", Container: "app"}
	statPod := Pod{UID: "daebeb8d-530f-dafc-31ed-d7cb4dc397c3", Namespace: "team-b", Name: "batch-7", QoS: "burstable",
		ContainerID: "29240fd6c734669cf7b23f8da6321d56e3fbf33304916f440058c3920f9eee2b", Container: "worker"}
	nfsPod := Pod{UID: "11111111-2222-3333-4444-555555555555", QoS: "guaranteed",
		ContainerID: "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"}
	for _, tc := range []struct {
		tid                       int
		what                      string
		state, wchan, sys, family string
		conn, by                  string
		mountID                   int
		pod                       *Pod
	}{
		{8603, "a pod's ls, S in request_wait_answer, getdents64 on fd 3 (mount 111)",
			"S", "request_wait_answer", "getdents64", FamilyFUSE, "0:43", "fd", 111, &lsPod},
		{8618, "a pod's stat looking up a name: no descriptor, and two FUSE connections have requests waiting",
			"S", "request_wait_answer", "statx", FamilyFUSE, "", "", 0, &statPod},
		{9001, "a container's ls: its descriptor's mount 2222 is in its own namespace's table, on connection 0:43",
			"D", "request_wait_answer", "getdents64", FamilyFUSE, "0:43", "fd", 0, &lsPod},
		{9003, "an ls waiting for the directory lock (iterate_dir) with its descriptor on a FUSE mount",
			"D", "iterate_dir", "getdents64", FamilyFUSE, "0:43", "fd", 111, &lsPod},
		{9011, "an NFS read (rpc_wait_bit_killable) on fd 7 of an nfs4 mount, thread of process 9010, guaranteed pod",
			"D", "rpc_wait_bit_killable", "read", FamilyNFS, "0:77", "fd", 300, &nfsPod},
		{9020, "an NFS wait with no descriptor: counted, not attributed, on the node",
			"D", "nfs_wait_bit_killable", "statx", FamilyNFS, "", "", 0, nil},
	} {
		g, ok := got[tc.tid]
		if !ok {
			t.Errorf("%d (%s): not found stuck", tc.tid, tc.what)
			continue
		}
		if g.State != tc.state || g.Wchan != tc.wchan || g.Syscall != tc.sys || g.Family != tc.family ||
			g.Conn != tc.conn || g.By != tc.by || g.MountID != tc.mountID {
			t.Errorf("%d (%s):\n got %+v", tc.tid, tc.what, g)
		}
		switch {
		case tc.pod == nil && g.Pod != nil:
			t.Errorf("%d (%s): pod %+v, want none", tc.tid, tc.what, *g.Pod)
		case tc.pod != nil && (g.Pod == nil || *g.Pod != *tc.pod):
			t.Errorf("%d (%s): pod %+v, want %+v", tc.tid, tc.what, g.Pod, *tc.pod)
		}
	}
	for tid, why := range map[int]string{
		100:  "mountwatchd itself",
		101:  "mountwatchd's own stuck probe, in a helper named like it",
		102:  "mountwatchd's probe helper named mountwatchd-prb (its hang is the probe's finding)",
		2:    "a kernel thread in a fuse_* wait",
		9002: "a stat in D behind a stuck lookup (d_alloc_parallel), with nothing to say which mount",
		9004: "the FUSE server waiting for requests (fuse_dev_do_read)",
		9005: "a task that exited while listed",
	} {
		if g, ok := got[tid]; ok {
			t.Errorf("%d (%s) counted: %+v", tid, why, g)
		}
	}
	if r.Stuck != 6 || len(r.Tasks) != 6 || r.Unattributed != 2 {
		t.Errorf("stuck %d, listed %d, unattributed %d; want 6, 6, 2", r.Stuck, len(r.Tasks), r.Unattributed)
	}
	c := r.Conn("0:43")
	if c == nil || c.Tasks != 3 || c.NodeTasks != 0 || len(c.Pods) != 1 || c.Pods[0].Pod != lsPod || c.Pods[0].Tasks != 3 {
		t.Errorf("connection 0:43 = %+v, want 3 tasks of pod web-0", c)
	}
	if c := r.Conn("0:77"); c == nil || c.Tasks != 1 || len(c.Pods) != 1 || c.Pods[0].UID != nfsPod.UID {
		t.Errorf("connection 0:77 = %+v, want 1 task of the guaranteed pod", c)
	}
}

// With one FUSE connection waiting, a FUSE wait without a descriptor is
// that connection's.
func TestScanFusectlAttributesTheOnlyWaitingConnection(t *testing.T) {
	r := NewScanner(fixtureConfig(t, "testdata/proc", "testdata/fusectl-one")).Scan(fixtureSnapshot(t))
	g := byTID(r)[8618]
	if g.Conn != "0:43" || g.By != "fusectl" {
		t.Errorf("stat task attributed to %q by %q, want 0:43 by fusectl", g.Conn, g.By)
	}
	if r.Unattributed != 1 { // the NFS one
		t.Errorf("unattributed %d, want 1", r.Unattributed)
	}
}

// copyTree copies the fixtures so a test can change them.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, to)
		case fi.IsDir():
			return os.MkdirAll(to, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// A task is first seen when a scan first finds it; later scans keep that
// time while it has not run (its context switch counts are unchanged), and
// start again when it ran in between (a new wait, such as the next of many
// slow requests).
func TestScanFirstSeen(t *testing.T) {
	proc := copyTree(t, "testdata/proc")
	sc := NewScanner(fixtureConfig(t, proc, "testdata/fusectl-two"))
	snap := fixtureSnapshot(t)
	first := byTID(sc.Scan(snap))
	time.Sleep(10 * time.Millisecond)
	second := byTID(sc.Scan(snap))
	for _, tid := range []int{8603, 8618, 9011} {
		if !second[tid].FirstSeen.Equal(first[tid].FirstSeen) {
			t.Errorf("%d: first seen %s, then %s; want it kept", tid, first[tid].FirstSeen, second[tid].FirstSeen)
		}
	}
	c1 := sc.Scan(snap).Conn("0:43")
	if !c1.Since.Equal(first[8603].FirstSeen) {
		t.Errorf("connection 0:43 stuck since %s, want its oldest task's %s", c1.Since, first[8603].FirstSeen)
	}

	// 8603 ran (one more voluntary switch); 9011 exited and its TID was
	// reused by a new task (another start time).
	status := filepath.Join(proc, "8603/task/8603/status")
	data, err := os.ReadFile(status)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i := strings.Index(s, "voluntary_ctxt_switches:\t")
	j := i + len("voluntary_ctxt_switches:\t")
	k := j + strings.IndexByte(s[j:], '\n')
	if err := os.WriteFile(status, []byte(s[:j]+"999999"+s[k:]), 0o644); err != nil {
		t.Fatal(err)
	}
	stat := filepath.Join(proc, "9010/task/9011/stat")
	data, err = os.ReadFile(stat)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(data))
	f[21] = "99999999"
	if err := os.WriteFile(stat, []byte(strings.Join(f, " ")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	third := byTID(sc.Scan(snap))
	for _, tid := range []int{8603, 9011} {
		if !third[tid].FirstSeen.After(first[tid].FirstSeen) {
			t.Errorf("%d: first seen %s after it ran or was replaced, want later than %s", tid, third[tid].FirstSeen, first[tid].FirstSeen)
		}
	}
	if !third[8618].FirstSeen.Equal(first[8618].FirstSeen) {
		t.Errorf("8618: first seen changed though it did not run")
	}
}

// The caps: at most MaxTasks examined (the report says so) and MaxReported
// listed, the longest stuck first; every stuck task is still counted.
func TestScanBounded(t *testing.T) {
	cfg := fixtureConfig(t, "testdata/proc", "testdata/fusectl-two")
	cfg.MaxReported = 2
	r := NewScanner(cfg).Scan(fixtureSnapshot(t))
	if len(r.Tasks) != 2 || r.Stuck != 6 {
		t.Errorf("listed %d of %d, want 2 of 6", len(r.Tasks), r.Stuck)
	}
	cfg.MaxTasks = 3
	r = NewScanner(cfg).Scan(fixtureSnapshot(t))
	if !r.Truncated || r.Examined != 3 {
		t.Errorf("examined %d, truncated %v; want 3, true", r.Examined, r.Truncated)
	}
}

// A procfs that cannot be listed is the scan's error, not an empty node.
func TestScanNoProcfs(t *testing.T) {
	r := NewScanner(Config{Host: mounts.Host{Procfs: "testdata/nonexistent"}}).Scan(nil)
	if r.Err == nil || !strings.Contains(r.Err.Error(), "testdata/nonexistent") {
		t.Errorf("err = %v, want one naming the procfs", r.Err)
	}
}

// ScanFor makes one scan per key, and never more than one in flight.
func TestScanForSharesAndBounds(t *testing.T) {
	sc := NewScanner(fixtureConfig(t, "testdata/proc", "testdata/fusectl-two"))
	snap := fixtureSnapshot(t)
	key := new(int)
	a := sc.ScanFor(context.Background(), key, snap)
	if b := sc.ScanFor(context.Background(), key, snap); a != b {
		t.Error("a second ScanFor with the same key scanned again")
	}
	if c := sc.ScanFor(context.Background(), new(int), snap); c == a {
		t.Error("ScanFor with a new key returned the old scan")
	}
	inFlight := &flight{key: new(int), start: time.Now(), done: make(chan struct{})}
	sc.mu.Lock()
	sc.flying = inFlight
	sc.mu.Unlock()
	r := sc.ScanFor(context.Background(), new(int), snap)
	if r.Err == nil || !strings.Contains(r.Err.Error(), "has not returned") {
		t.Errorf("with a scan in flight: %v, want an error saying an earlier scan has not returned", r.Err)
	}
	if sc.Last() != r {
		t.Error("Last is not what the last ScanFor returned")
	}

	// The checks of one run, at once (--once): one waits for the scan the
	// other is making, and both see it.
	got := make(chan *Report, 1)
	go func() { got <- sc.ScanFor(context.Background(), inFlight.key, snap) }()
	want := &Report{}
	sc.mu.Lock()
	inFlight.r = want // the scan returns; flying stays set, so the waiter is
	sc.mu.Unlock()    // answered by the flight, whenever it asks
	close(inFlight.done)
	if r := <-got; r != want {
		t.Errorf("a ScanFor of the key in flight returned %+v, not the scan it waited for", r)
	}
}

// With no FUSE request waiting and no network filesystem mounted nothing
// can be stuck, and the node's tasks are not read; with an NFS mount they
// are, and its stuck task is found.
func TestScanSkipsAnIdleNode(t *testing.T) {
	data, err := os.ReadFile("testdata/host-mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for l := range strings.SplitSeq(strings.TrimSpace(string(data)), "\n") {
		if !strings.Contains(l, " - nfs4 ") {
			lines = append(lines, l)
		}
	}
	local := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(local, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	noNet, err := mounts.ReadCapturedTable(local, mounts.Host{KubeletRoot: mounts.DefaultKubeletRoot})
	if err != nil {
		t.Fatal(err)
	}
	r := NewScanner(fixtureConfig(t, "testdata/proc", "testdata/fusectl-idle")).Scan(noNet)
	if r.Skipped == "" || r.Examined != 0 || r.Stuck != 0 || r.Err != nil {
		t.Errorf("idle FUSE-only node: skipped %q, examined %d, stuck %d, err %v; want skipped, nothing read", r.Skipped, r.Examined, r.Stuck, r.Err)
	}
	r = NewScanner(fixtureConfig(t, "testdata/proc", "testdata/fusectl-idle")).Scan(fixtureSnapshot(t))
	if r.Skipped != "" || byTID(r)[9011].Family != FamilyNFS {
		t.Errorf("with an NFS mount: skipped %q, tasks %+v; want the NFS reader found", r.Skipped, r.Tasks)
	}
	// With FUSE idle only D tasks are read: the S waiters of the fixtures
	// (8603, 8618), which cannot exist without a request waiting, are not.
	if _, ok := byTID(r)[8603]; ok {
		t.Error("an S task's wait channel was read with no FUSE request waiting")
	}
}

// With a state file, a new Scanner (the next --once) keeps the first-seen
// times of the tasks an earlier one saw stuck, for tasks that did not run
// since; a file of another boot is ignored, and an unusable one is an error
// in the report, not a failed scan.
func TestScanStateFileAcrossProcesses(t *testing.T) {
	state := filepath.Join(t.TempDir(), "stuck-tasks.json")
	cfg := fixtureConfig(t, "testdata/proc", "testdata/fusectl-two")
	cfg.StateFile = state
	snap := fixtureSnapshot(t)
	first := byTID(NewScanner(cfg).Scan(snap))
	time.Sleep(10 * time.Millisecond)
	r := NewScanner(cfg).Scan(snap)
	if len(r.Errors) != 1 { // 9030's hidden wait channel only
		t.Errorf("errors %v", r.Errors)
	}
	second := byTID(r)
	for _, tid := range []int{8603, 8618, 9011} {
		if !second[tid].FirstSeen.Equal(first[tid].FirstSeen) {
			t.Errorf("%d: first seen %s by the first scanner, %s by the next; want it kept", tid, first[tid].FirstSeen, second[tid].FirstSeen)
		}
	}

	data, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	other := strings.Replace(string(data), "3f9c2a1e-7b4d-4e8a-9c1f-2d3e4f5a6b7c", "00000000-0000-4000-8000-000000000000", 1)
	if err := os.WriteFile(state, []byte(other), 0o600); err != nil {
		t.Fatal(err)
	}
	third := byTID(NewScanner(cfg).Scan(snap))
	if !third[8603].FirstSeen.After(first[8603].FirstSeen) {
		t.Error("a state file of another boot was believed")
	}

	if err := os.WriteFile(state, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = NewScanner(cfg).Scan(snap)
	if r.Err != nil || r.Stuck != 6 || !strings.Contains(strings.Join(r.Errors, "\n"), "stuck-task state") {
		t.Errorf("corrupt state file: err %v, stuck %d, errors %v; want the scan, and the file's error noted", r.Err, r.Stuck, r.Errors)
	}
	cfg.StateFile = filepath.Join(t.TempDir(), "missing-dir", "x.json")
	if r := NewScanner(cfg).Scan(snap); r.Err != nil || r.Stuck != 6 || len(r.Errors) != 2 {
		t.Errorf("state file in a missing directory: err %v, stuck %d, errors %v", r.Err, r.Stuck, r.Errors)
	}
}
