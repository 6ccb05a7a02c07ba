package check

import (
	"strings"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/probe"
	"github.com/mountwatchd/mountwatchd/internal/probe/probetest"
	"github.com/mountwatchd/mountwatchd/internal/tasks"
)

// hung_mount counts fusectl's waiting requests in English: "1 request is",
// "2 requests are" (issue 31 item 5).
func TestHungMessageCountsRequests(t *testing.T) {
	s := probetest.Table(t, probetest.NewFS(), probetest.FuseLine(10, 40, "/", "/mnt/cephfs"))
	m := s.ByMountpoint("/mnt/cephfs")[0]
	res := probe.Result{State: probe.Hung, Since: time.Now(), Path: m.Mountpoint}
	for waiting, want := range map[string]string{"1": "1 request is waiting on it.", "2": "2 requests are waiting on it."} {
		msg := hungMessage(newConnIndex(s), m, res, time.Second, waiting, probe.DefaultFusectl)
		if !strings.Contains(msg, want) || strings.Contains(msg, "1 requests") {
			t.Errorf("waiting %s: message lacks %q: %s", waiting, want, msg)
		}
	}
}

// A stuck task outside any pod is named by command name and PID, the
// kubelet's said so, the rest counted (issue 30 item 4).
func TestStuckPodsNamesNodeTasks(t *testing.T) {
	c := &tasks.Conn{Tasks: 7, NodeTasks: 7, NodeList: []tasks.NodeTask{
		{Comm: "kubelet", PID: 812, Kubelet: true}, {Comm: "rsync", PID: 4242},
	}}
	want := "not in a pod: 7 (kubelet PID 812, the kubelet; rsync PID 4242; 5 more)"
	if got := stuckPods(c); got != want {
		t.Errorf("stuckPods = %q, want %q", got, want)
	}
}
