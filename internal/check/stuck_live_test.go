package check

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe"
	"github.com/mountwatchd/mountwatchd/internal/tasks"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

type stuckPodVolume struct {
	*testenv.StuckPodVolume
	host mounts.Host
}

func newStuckPodVolume(t *testing.T, stallAll bool) *stuckPodVolume {
	t.Helper()
	v := testenv.NewStuckPodVolume(t, t.TempDir(), stallAll)
	return &stuckPodVolume{v, mounts.Host{KubeletRoot: v.KubeletRoot, PodLogDir: v.PodLogs}}
}

func hungAt(found []finding.Finding, mp string) *finding.Finding {
	for i := range found {
		if found[i].Check == HungMount && found[i].MountPoint == mp {
			return &found[i]
		}
	}
	return nil
}

// The hang that the probe does not see: the server answers statfs and
// getattr (the probe), and holds a pod's directory read, on a type whose
// probe makes no deep request (--probe.shallow-fstypes, as for an object
// store, whose listing is costly). Once the pod's task has waited longer
// than StuckAfter, hung_mount is reported on the pod volume, naming the
// stuck pod and container; before that, and once the server answers, it is
// not.
func TestLiveHungByStuckTasksWhileProbeAnswered(t *testing.T) {
	v := newStuckPodVolume(t, false)
	const after = 500 * time.Millisecond
	p := probe.NewProber(probe.Config{Timeout: 2 * time.Second, ShallowFSTypes: []string{"fuse.*"}}, probe.SysFS{})
	sc := tasks.NewScanner(tasks.Config{Host: v.host})
	runner := &Runner{Prober: p, Checks: []Check{StaleMountCheck{Tasks: sc}, HungMountCheck{Tasks: sc, StuckAfter: after}}}

	s := liveSnapshot(t, v.host)
	rep := runner.Run(context.Background(), s)
	if f := hungAt(rep.Findings, v.Mnt); f != nil {
		t.Fatalf("hung_mount before the task waited %s: %+v", after, *f)
	}
	if res := p.Latest().Results[s.ByMountpoint(v.Mnt)[0].ID]; res.State != probe.OK {
		t.Fatalf("probe of the stalled mount: %v, want it answered (the server answers statfs)", res.State)
	}
	if rep.Tasks == nil || rep.Tasks.Conn(s.ByMountpoint(v.Mnt)[0].Dev()) == nil {
		t.Fatalf("the report's task scan %+v does not count the stand-in's task on the volume's connection", rep.Tasks)
	}

	var f *finding.Finding
	testenv.WaitUntil(t, 20*time.Second, "hung_mount once the pod's task waited past the threshold", func() bool {
		rep = runner.Run(context.Background(), liveSnapshot(t, v.host))
		f = hungAt(rep.Findings, v.Mnt)
		return f != nil
	})
	if f.Severity != finding.Critical || f.Details["probe"] != "ok" || f.Details["stuck_tasks"] != "1" || f.Details["stuck_after"] != after.String() {
		t.Errorf("finding details %v, want probe ok, 1 stuck task, stuck_after %s", f.Details, after)
	}
	if want := "team-a/stand-in (container " + v.Pod.ContainerID[:12] + "): 1"; f.Details["stuck_pods"] != want {
		t.Errorf("stuck_pods %q, want %q", f.Details["stuck_pods"], want)
	}
	if _, err := time.Parse(time.RFC3339, f.Details["stuck_since"]); err != nil {
		t.Errorf("stuck_since %q: %v", f.Details["stuck_since"], err)
	}
	if f.PodUID != v.VolumePodUID || f.PodName != v.PodName || f.Volume != "pvc-1" {
		t.Errorf("finding names pod %s/%s volume %s, want the volume's pod %s and pvc-1", f.PodUID, f.PodName, f.Volume, v.VolumePodUID)
	}
	if !strings.Contains(f.Message, "was answered") || !strings.Contains(f.Message, "first seen by mountwatchd") {
		t.Errorf("message does not say the probe was answered and since when the task waits (first seen by us): %s", f.Message)
	}
	for _, x := range rep.Findings {
		if x.Check == StaleMount {
			t.Errorf("stale_mount on a server that answers: %+v", x)
		}
	}

	v.FUSE.Resume()
	testenv.WaitUntil(t, 20*time.Second, "hung_mount to clear once the server answers", func() bool {
		return hungAt(runner.Run(context.Background(), liveSnapshot(t, v.host)).Findings, v.Mnt) == nil
	})
}

// A server that answers nothing: the probe times out, and hung_mount says
// how many tasks of which pods wait on the connection and since when.
func TestLiveHungFindingCountsStuckPods(t *testing.T) {
	v := newStuckPodVolume(t, true)
	p := probe.NewProber(probe.Config{Timeout: 300 * time.Millisecond}, probe.SysFS{})
	sc := tasks.NewScanner(tasks.Config{Host: v.host})
	found, err := runProbed(p, HungMountCheck{Tasks: sc}, liveSnapshot(t, v.host))
	if err != nil {
		t.Fatal(err)
	}
	f := hungAt(found, v.Mnt)
	if f == nil {
		t.Fatalf("no hung_mount on %s: %+v", v.Mnt, found)
	}
	if f.Details["stuck_tasks"] != "1" || !strings.HasPrefix(f.Details["stuck_pods"], "team-a/stand-in (container ") {
		t.Errorf("details %v, want 1 stuck task of team-a/stand-in", f.Details)
	}
	if !strings.Contains(f.Message, "1 task is waiting on it in the kernel") {
		t.Errorf("message does not count the stuck task: %s", f.Message)
	}
	v.FUSE.Resume()
	waitUnblocked(t, p)
}
