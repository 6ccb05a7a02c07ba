package main

import (
	"encoding/json"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// These tests read the report as a script does (plain JSON, the exposition
// text), so they build and run against any version of the binary. They
// assert counts per connection: other tests on the machine may leave tasks
// stuck on servers of their own.

func connectionOf(t *testing.T, mnt string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(mnt, &st); err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(int(unix.Major(st.Dev))) + ":" + strconv.Itoa(int(unix.Minor(st.Dev)))
}

// --once on a pod volume whose server answers the probe (statfs, getattr)
// and holds a pod's directory read: the report counts the stuck task, on
// the volume's connection, and names the stand-in pod and its container.
//
// Then as a DaemonSet sees the node (--target.pid of a process in another
// mount namespace, made after the volume was mounted): the stand-in's
// descriptor is on a mount of our namespace, not in the node's table, and
// is found in the task's own mount table; the pod is named through
// /proc/<pid>/root.
func TestOnceCountsStuckPodTasks(t *testing.T) {
	v := testenv.NewStuckPodVolume(t, t.TempDir(), false)
	node := testenv.NewNode(t, "true")
	for _, target := range []string{"0", strconv.Itoa(node.PID)} {
		t.Run("target.pid="+target, func(t *testing.T) { onceCountsStuckPodTasks(t, v, target) })
	}
}

func onceCountsStuckPodTasks(t *testing.T, v *testenv.StuckPodVolume, target string) {
	conn := connectionOf(t, v.Mnt)
	r := mountwatchd(t, "--once", "--output=json", "--target.pid", target, "--path.kubelet", v.KubeletRoot, "--path.pod-logs", v.PodLogs)
	var doc struct {
		Tasks *struct {
			Stuck int `json:"stuck"`
			Tasks []struct {
				PID     int    `json:"pid"`
				Comm    string `json:"comm"`
				Wchan   string `json:"wchan"`
				Syscall string `json:"syscall"`
				Conn    string `json:"connection"`
				By      string `json:"attributed_by"`
				Pod     *struct {
					UID         string `json:"pod_uid"`
					Namespace   string `json:"pod_namespace"`
					Name        string `json:"pod_name"`
					ContainerID string `json:"container_id"`
				} `json:"pod"`
			} `json:"tasks"`
			Conns map[string]struct {
				Tasks int `json:"tasks"`
			} `json:"connections"`
		} `json:"stuck_tasks"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("exit %d, not JSON: %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if doc.Tasks == nil {
		t.Fatalf("the report has no stuck_tasks (exit %d):\n%s", r.code, r.stdout)
	}
	if doc.Tasks.Conns[conn].Tasks != 1 {
		t.Errorf("connection %s: %+v, want 1 stuck task", conn, doc.Tasks.Conns)
	}
	found := false
	for _, task := range doc.Tasks.Tasks {
		if task.PID != v.Pod.Cmd.Process.Pid {
			continue
		}
		found = true
		if task.Comm != "ls" || task.Wchan != "request_wait_answer" || task.Syscall != "getdents64" || task.Conn != conn || task.By != "fd" {
			t.Errorf("stand-in's task %+v, want ls in request_wait_answer, getdents64 on connection %s by its descriptor", task, conn)
		}
		if p := task.Pod; p == nil || p.UID != v.Pod.UID || p.Namespace != "team-a" || p.Name != "stand-in" || p.ContainerID != v.Pod.ContainerID {
			t.Errorf("stand-in's pod %+v, want team-a/stand-in %s container %s", p, v.Pod.UID, v.Pod.ContainerID)
		}
	}
	if !found {
		t.Errorf("stand-in's task %d not listed: %+v", v.Pod.Cmd.Process.Pid, doc.Tasks.Tasks)
	}
	text := mountwatchd(t, "--once", "--target.pid", target, "--path.kubelet", v.KubeletRoot, "--path.pod-logs", v.PodLogs)
	if !strings.Contains(text.stdout, "Stuck tasks: ") || !strings.Contains(text.stdout, "  connection "+conn+" (fuse.ceph-fuse): 1 task") {
		t.Errorf("the text report does not count the stuck tasks:\n%s", text.stdout)
	}
}

// The daemon on the same node, with a small --probe.stuck-after: the probe
// is answered, yet once the pod's task has waited past the threshold the
// volume is reported hung, and the connection's stuck tasks are exposed;
// both clear once the server answers.
func TestDaemonHungByStuckTasks(t *testing.T) {
	v := testenv.NewStuckPodVolume(t, t.TempDir(), false)
	conn := connectionOf(t, v.Mnt)
	// No deep request for this type (as for an object store): the probe is
	// answered, and only the tasks waiting on the server say it is stuck.
	d := startDaemon(t, nil, "--path.kubelet", v.KubeletRoot, "--path.pod-logs", v.PodLogs, "--probe.interval=200ms",
		"--probe.stuck-after=1s", "--probe.shallow-fstypes=fuse.*", "--log.target=stderr")
	hungAt := func(body string) bool {
		for _, l := range strings.Split(body, "\n") {
			if strings.HasPrefix(l, `mountwatchd_problem{check="hung_mount",`) && strings.Contains(l, `mountpoint="`+v.Mnt+`"`) &&
				strings.Contains(l, `severity="critical"`) {
				return true
			}
		}
		return false
	}
	stuck := `mountwatchd_connection_stuck_tasks{connection="` + conn + `",fstype="fuse.ceph-fuse",source="ceph-fuse"} 1`
	var body string
	testenv.WaitUntil(t, 30*time.Second, "hung_mount on the pod volume and its stuck task in /metrics", func() bool {
		body = d.metrics()
		return hungAt(body) && strings.Contains(body, stuck)
	})
	if !strings.Contains(body, `mountwatchd_connection_stuck_tasks_first_seen_timestamp_seconds{connection="`+conn+`"`) {
		t.Errorf("/metrics lacks when the connection's tasks were first seen")
	}

	v.FUSE.Resume()
	testenv.WaitUntil(t, 30*time.Second, "hung_mount and the stuck task to clear once the server answers", func() bool {
		body = d.metrics()
		return !hungAt(body) && !strings.Contains(body, `mountwatchd_connection_stuck_tasks{connection="`+conn+`"`)
	})
}

// What the scan of stuck tasks needs: a pod's task of another user (uid
// 65534) is counted and named with the DaemonSet's capabilities; without
// CAP_SYS_PTRACE the kernel hides its wait channel, and the report says
// the task could not be read and why instead of counting nothing silently.
func TestStuckTasksLeastPrivilege(t *testing.T) {
	setpriv := testenv.RequireCommand(t, "setpriv", "util-linux")
	v := testenv.NewStuckPodVolume(t, t.TempDir(), false, setpriv, "--reuid=65534", "--regid=65534", "--clear-groups")
	// No deep request (as for an object store), so that the probe is answered.
	args := []string{"--once", "--output=json", "--path.kubelet", v.KubeletRoot, "--path.pod-logs", v.PodLogs, "--probe.shallow-fstypes=fuse.*"}
	type scan struct {
		Tasks *struct {
			Stuck      int      `json:"stuck"`
			Unreadable int      `json:"unreadable"`
			Errors     []string `json:"errors"`
			Tasks      []struct {
				PID int `json:"pid"`
				Pod *struct {
					UID string `json:"pod_uid"`
				} `json:"pod"`
			} `json:"tasks"`
		} `json:"stuck_tasks"`
	}
	run := func(caps []string) scan {
		t.Helper()
		// Exit 0: the probe is answered, and --once never reaches --probe.stuck-after.
		out, err := exec.Command(setpriv, append(append(slices.Clone(caps), binary(t)), args...)...).Output()
		if err != nil {
			t.Fatalf("setpriv %v mountwatchd: %v\n%s", caps, err, out)
		}
		var s scan
		if err := json.Unmarshal(out, &s); err != nil || s.Tasks == nil {
			t.Fatalf("setpriv %v: no stuck_tasks (%v):\n%s", caps, err, out)
		}
		return s
	}
	s := run(capsOnly(keptCaps...))
	found := false
	for _, task := range s.Tasks.Tasks {
		found = found || (task.PID == v.Pod.Cmd.Process.Pid && task.Pod != nil && task.Pod.UID == v.Pod.UID)
	}
	if !found {
		t.Errorf("with %v: the stand-in's task (uid 65534) is not counted with its pod: %+v", keptCaps, s.Tasks)
	}
	s = run(capsOnly(without("sys_ptrace")...))
	for _, task := range s.Tasks.Tasks {
		if task.PID == v.Pod.Cmd.Process.Pid {
			t.Errorf("without CAP_SYS_PTRACE the stand-in's task was counted: %+v", task)
		}
	}
	if s.Tasks.Unreadable == 0 || !strings.Contains(strings.Join(s.Tasks.Errors, "\n"), "needs CAP_SYS_PTRACE") {
		t.Errorf("without CAP_SYS_PTRACE: unreadable %d, errors %q; want the hidden wait channel named", s.Tasks.Unreadable, s.Tasks.Errors)
	}
}
