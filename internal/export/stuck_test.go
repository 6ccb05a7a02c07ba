package export

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mountwatchd/mountwatchd/internal/tasks"
)

// stuckState is fixedState with a scan of the node's tasks: two tasks of a
// pod and one of the node (the kubelet's) stuck on the brief's ceph-fuse connection 0:39,
// and one stuck task the kernel does not attribute.
func stuckState(t *testing.T) *State {
	st := fixedState(t)
	since := time.Date(2026, 11, 22, 9, 55, 0, 0, time.UTC)
	st.Report.Tasks = &tasks.Report{Taken: since.Add(5 * time.Minute), Examined: 812, Stuck: 4, Unattributed: 1,
		Conns: map[string]*tasks.Conn{"0:39": {Dev: "0:39", Tasks: 3, Since: since, NodeTasks: 1,
			NodeList: []tasks.NodeTask{{Comm: "kubelet", PID: 812, Kubelet: true}},
			Pods: []tasks.PodTasks{{Pod: tasks.Pod{UID: "6f1c0d2e-9a7b-4c3d-8e5f-0a1b2c3d4e5f", Namespace: "shop", Name: "web-0",
				Container: "app"}, Tasks: 2}}}}}
	return st
}

// The stuck tasks are exposed per connection (labelled with its first
// mount's type and source) and for the node, and lint clean.
func TestMetricsStuckTasks(t *testing.T) {
	st := stuckState(t)
	want := `
# HELP mountwatchd_connection_stuck_tasks Tasks waiting in the kernel on this connection (major:minor) in the last probe run; a series per connection with tasks waiting.
# TYPE mountwatchd_connection_stuck_tasks gauge
mountwatchd_connection_stuck_tasks{connection="0:39",fstype="fuse.ceph-fuse",source="ceph-fuse"} 3
# HELP mountwatchd_connection_stuck_tasks_first_seen_timestamp_seconds When this process first saw the longest waiting of the connection's stuck tasks (Unix time); the kernel does not say when a wait began.
# TYPE mountwatchd_connection_stuck_tasks_first_seen_timestamp_seconds gauge
mountwatchd_connection_stuck_tasks_first_seen_timestamp_seconds{connection="0:39",fstype="fuse.ceph-fuse",source="ceph-fuse"} 1.7953413e+09
# HELP mountwatchd_stuck_tasks Tasks (threads) of the node found waiting in the kernel on a FUSE or network filesystem in the last probe run.
# TYPE mountwatchd_stuck_tasks gauge
mountwatchd_stuck_tasks 4
# HELP mountwatchd_stuck_tasks_unattributed Of mountwatchd_stuck_tasks, those whose connection the kernel does not say (no descriptor, and several FUSE connections with requests waiting).
# TYPE mountwatchd_stuck_tasks_unattributed gauge
mountwatchd_stuck_tasks_unattributed 1
# HELP mountwatchd_task_scan_success 1 if the last scan of the node's tasks examined every task, 0 if it failed or stopped at its cap.
# TYPE mountwatchd_task_scan_success gauge
mountwatchd_task_scan_success 1
`
	m := NewMetrics(func() *State { return st }, 100)
	if err := testutil.CollectAndCompare(m, strings.NewReader(want), "mountwatchd_connection_stuck_tasks",
		"mountwatchd_connection_stuck_tasks_first_seen_timestamp_seconds", "mountwatchd_stuck_tasks",
		"mountwatchd_stuck_tasks_unattributed", "mountwatchd_task_scan_success"); err != nil {
		t.Error(err)
	}
	lintMetrics(t, m)

	// A scan that failed says so, and exposes no counts that would read as
	// "nothing stuck".
	st.Report.Tasks = &tasks.Report{Err: errors.New("list /proc: permission denied")}
	out := string(exposition(t, NewMetrics(func() *State { return st }, 100)))
	if !strings.Contains(out, "mountwatchd_task_scan_success 0") || strings.Contains(out, "mountwatchd_stuck_tasks ") {
		t.Errorf("failed scan exposed as:\n%s", out)
	}
}

// The text report lists the connections with stuck tasks and their pods.
func TestTextStuckTasks(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteText(&buf, stuckState(t).Report); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Stuck tasks: 4 waiting in the kernel on FUSE or network filesystems (812 tasks examined; 1 on a connection the kernel does not name):",
		"  connection 0:39 (fuse.ceph-fuse): 3 tasks, first seen 2026-11-22T09:55:00Z; shop/web-0 (app): 2, not in a pod: 1 (kubelet PID 812, the kubelet)",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, buf.String())
		}
	}
}
