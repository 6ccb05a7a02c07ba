package tasks_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe"
	"github.com/mountwatchd/mountwatchd/internal/tasks"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

func TestMain(m *testing.M) {
	if n, err := strconv.Atoi(os.Getenv(threadsEnv)); err == nil {
		sleepThreads(n) // BenchmarkTaskScan's busy process
	}
	testenv.Main(m)
}

const fusectlMagic = 0x65735543

// EnsureFusectl mounts fusectl in the test's private mount namespace when it
// is not mounted.
func ensureFusectl(t *testing.T) {
	t.Helper()
	var sfs unix.Statfs_t
	if err := unix.Statfs(probe.DefaultFusectl, &sfs); err == nil && sfs.Type == fusectlMagic {
		return
	}
	testenv.Mount(t, "none", probe.DefaultFusectl, "fusectl", 0, "")
}

func findTask(r *tasks.Report, pid int) *tasks.Task {
	for i := range r.Tasks {
		if r.Tasks[i].PID == pid {
			return &r.Tasks[i]
		}
	}
	return nil
}

func taskState(pid int) string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return f[0]
}

// A live FUSE server takes a pod's requests and never answers (its backend
// stalled): the pod's ls waits for the answer to its directory read, and a
// second pod's stat for the answer to its lookup. Both are counted, the ls
// is attributed to the mount through its descriptor, and each is named by
// pod UID, namespace, name, QoS and container from its cgroup (one pod per
// kubelet cgroup driver: cgroupfs on cgroup v1, systemd on cgroup v2) and
// kubelet's log directories. They stay counted, with the time they were
// first seen, after SIGKILL (then in D), and are gone once the server
// answers.
func TestLiveStuckPodTasksCountedAndNamed(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ls", "coreutils")
	testenv.RequireCommand(t, "stat", "coreutils")
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	fuse := testenv.NewStallFUSE(t, mnt, "ceph-fuse", "ceph-fuse")
	ensureFusectl(t)
	host := mounts.Host{PodLogDir: filepath.Join(dir, "log", "pods")}

	fuse.Stall()
	lsPod := testenv.StartStandInPod(t, testenv.CgroupfsDriver, "besteffort", "ls", mnt)
	statPod := testenv.StartStandInPod(t, testenv.SystemdDriver, "burstable", "stat", filepath.Join(mnt, "missing"))
	t.Cleanup(fuse.Resume) // runs first: lets the killed stand-ins exit
	for _, dir := range []string{
		filepath.Join(dir, "log", "pods", "team-a_web-0_"+lsPod.UID, "app"),
		filepath.Join(dir, "log", "containers"),
	} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{
		"web-0_team-a_app-" + lsPod.ContainerID + ".log",
		"batch-7_team-b_worker-" + statPod.ContainerID + ".log",
	} {
		if err := os.Symlink("/nonexistent", filepath.Join(dir, "log", "containers", name)); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		select {
		case <-fuse.Taken():
		case <-time.After(10 * time.Second):
			t.Fatal("the stand-in pods' requests did not reach the FUSE server")
		}
	}

	snap, err := mounts.RereadSnapshot(host, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mount *mounts.Mount
	for _, m := range snap.Mounts {
		if m.Mountpoint == mnt {
			mount = m
		}
	}
	if mount == nil {
		t.Fatalf("%s not in the mount table", mnt)
	}
	sc := tasks.NewScanner(tasks.Config{Host: host})
	var rep *tasks.Report
	lsPID, statPID := lsPod.Cmd.Process.Pid, statPod.Cmd.Process.Pid
	testenv.WaitUntil(t, 10*time.Second, "both stand-in pods' tasks to be found stuck", func() bool {
		rep = sc.Scan(snap)
		t.Logf("DEBUG %+v tasks=%+v ls=%s stat=%s", rep, rep.Tasks, taskState(lsPID), taskState(statPID))
		return findTask(rep, lsPID) != nil && findTask(rep, statPID) != nil
	})
	if rep.Err != nil {
		t.Fatal(rep.Err)
	}

	ls := findTask(rep, lsPID)
	if ls.Comm != "ls" || ls.Wchan != "request_wait_answer" || ls.Family != tasks.FamilyFUSE || ls.Syscall != "getdents64" {
		t.Errorf("ls task = %+v, want comm ls waiting in request_wait_answer (fuse) in getdents64", *ls)
	}
	if ls.Conn != mount.Dev() || ls.By != "fd" || ls.MountID != mount.ID || ls.FSType != "fuse.ceph-fuse" {
		t.Errorf("ls task attributed to %q mount %d (%s) by %q, want connection %s mount %d by its descriptor",
			ls.Conn, ls.MountID, ls.FSType, ls.By, mount.Dev(), mount.ID)
	}
	want := tasks.Pod{UID: lsPod.UID, Namespace: "team-a", Name: "web-0", QoS: "besteffort",
		ContainerID: lsPod.ContainerID, Container: "app"}
	if ls.Pod == nil || *ls.Pod != want {
		t.Errorf("ls task's pod = %+v, want %+v", ls.Pod, want)
	}

	st := findTask(rep, statPID)
	if st.Comm != "stat" || st.Family != tasks.FamilyFUSE || st.Syscall != "statx" {
		t.Errorf("stat task = %+v, want comm stat waiting on FUSE in statx", *st)
	}
	// Its lookup has no descriptor: fusectl says which connection when ours
	// is the only one with requests waiting (other tests on this machine may
	// hang FUSE servers of their own; then the kernel does not say which).
	if st.Conn != "" && (st.Conn != mount.Dev() || st.By != "fusectl") {
		t.Errorf("stat task attributed to %q by %q, want %s by fusectl or none", st.Conn, st.By, mount.Dev())
	}
	want = tasks.Pod{UID: statPod.UID, Namespace: "team-b", Name: "batch-7", QoS: "burstable",
		ContainerID: statPod.ContainerID, Container: "worker"}
	if st.Pod == nil || *st.Pod != want {
		t.Errorf("stat task's pod = %+v, want %+v", st.Pod, want)
	}

	c := rep.Conn(mount.Dev())
	if c == nil || c.Tasks < 1 || c.Since.After(ls.FirstSeen) {
		t.Fatalf("connection %s: %+v, want the ls task counted since it was first seen", mount.Dev(), c)
	}
	found := false
	for _, p := range c.Pods {
		found = found || (p.UID == lsPod.UID && p.Container == "app" && p.Tasks == 1)
	}
	if !found {
		t.Errorf("connection %s's pods = %+v, want pod %s container app with 1 task", mount.Dev(), c.Pods, lsPod.UID)
	}

	// SIGKILL does not free it: it waits on, now uninterruptibly, and is
	// still the same wait, first seen when it was first seen.
	first := ls.FirstSeen
	if err := lsPod.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testenv.WaitUntil(t, 10*time.Second, "the killed ls to sleep in D", func() bool { return taskState(lsPID) == "D" })
	rep = sc.Scan(snap)
	ls = findTask(rep, lsPID)
	if ls == nil || ls.State != "D" || ls.Wchan != "request_wait_answer" {
		t.Fatalf("killed ls task = %+v, want it counted in D in request_wait_answer", ls)
	}
	if !ls.FirstSeen.Equal(first) {
		// Killing it woke it (the signal sent FUSE_INTERRUPT): it ran, so
		// this is a new wait, first seen now. Either way it is no later
		// than this scan.
		if ls.FirstSeen.After(rep.Taken) {
			t.Errorf("killed ls first seen %s, after the scan %s", ls.FirstSeen, rep.Taken)
		}
	}
	again := sc.Scan(snap)
	if l := findTask(again, lsPID); l == nil || !l.FirstSeen.Equal(ls.FirstSeen) {
		t.Errorf("a task that has not run since the last scan is first seen %v, want %s kept", l, ls.FirstSeen)
	}

	fuse.Resume()
	testenv.WaitUntil(t, 10*time.Second, "the stand-ins to be no longer stuck once the server answers", func() bool {
		r := sc.Scan(snap)
		return findTask(r, lsPID) == nil && findTask(r, statPID) == nil
	})
}
