package check

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe"
	"github.com/mountwatchd/mountwatchd/internal/tasks"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// fusectlPresent mounts fusectl in the test's namespace when it is not
// there; fusectlAbsent hides it under an empty tmpfs, as on a node or in
// a container where it is not mounted: an empty directory.
func fusectlPresent(t *testing.T) {
	var sfs unix.Statfs_t
	if unix.Statfs(probe.DefaultFusectl, &sfs) != nil || sfs.Type != 0x65735543 {
		testenv.Mount(t, "none", probe.DefaultFusectl, "fusectl", 0, "")
	}
}

func fusectlAbsent(t *testing.T) {
	testenv.Mount(t, "none", probe.DefaultFusectl, "tmpfs", 0, "size=64k")
}

// stuckPodOn starts a stand-in pod (namespace team, name name) whose stat of
// a missing name in its own CSI volume, on a stalled FUSE server, is taken
// and held by the server: a lookup, with no descriptor to say which
// connection it waits on.
func stuckPodOn(t *testing.T, h mounts.Host, name string) (*testenv.StandInPod, *testenv.StallFUSE, string) {
	t.Helper()
	gate := filepath.Join(t.TempDir(), "go")
	mnt := new(string)
	pod := testenv.StartStandInPod(t, testenv.CgroupfsDriver, "burstable", "sh", "-c",
		`while [ ! -e "$0" ]; do sleep 0.02; done; exec stat "$(cat "$0")/missing"`, gate)
	*mnt = testenv.KubeletPodVolume(t, h.KubeletRoot, pod.UID, "pvc-"+name, "cephfs.csi.ceph.com", "vol-"+name)
	mkdirs(t, filepath.Join(h.PodLogDir, "team_"+name+"_"+pod.UID))
	fuse := testenv.NewStallFUSE(t, *mnt, "ceph-fuse", "ceph-fuse")
	fuse.Stall()
	if err := os.WriteFile(gate, []byte(*mnt), 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case <-fuse.Taken():
	case <-time.After(10 * time.Second):
		t.Fatalf("pod %s's stat did not reach its FUSE server", name)
	}
	return pod, fuse, *mnt
}

// Two hung FUSE connections (ceph-fuse with its MDS frozen, as the issue
// measured it), a stand-in pod's task stuck on each in a lookup (no
// descriptor names the connection), and the probe helpers' own requests
// held on both; and a third connection on which a process outside any pod,
// named kubelet, waits in a directory read. Each pod's task is attributed
// to its own volume's connection, the helpers are never counted, and the
// task outside a pod is named by its command name and PID as the kubelet's.
// The same with fusectl mounted, and with it absent (an empty directory),
// where the scan runs because the probe found the connections hung.
func TestLiveStuckTasksOnTwoHungConnections(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "stat", "coreutils")
	ls := testenv.RequireCommand(t, "ls", "coreutils")
	for _, fusectl := range []string{"present", "absent"} {
		t.Run("fusectl "+fusectl, func(t *testing.T) {
			if fusectl == "present" {
				fusectlPresent(t)
			} else {
				fusectlAbsent(t)
			}
			dir := t.TempDir()
			h := mounts.Host{KubeletRoot: filepath.Join(dir, "kubelet"), PodLogDir: filepath.Join(dir, "log", "pods")}
			podA, fuseA, mntA := stuckPodOn(t, h, "a")
			podB, fuseB, mntB := stuckPodOn(t, h, "b")

			// A node process named kubelet reading a third hung directory.
			mntC := filepath.Join(dir, "node-mnt")
			fuseC := testenv.NewStallFUSE(t, mntC, "ceph-fuse", "ceph-fuse")
			fuseC.Stall()
			kubelet := filepath.Join(dir, "bin", "kubelet")
			mkdirs(t, filepath.Dir(kubelet))
			testenv.Run(t, "cp", ls, kubelet)
			cmd := exec.Command(kubelet, mntC)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			select {
			case <-fuseC.Taken():
			case <-time.After(10 * time.Second):
				t.Fatal("the kubelet-named ls did not reach its FUSE server")
			}
			for _, f := range []*testenv.StallFUSE{fuseA, fuseB, fuseC} {
				t.Cleanup(f.Resume) // first: lets the stuck tasks and probes return
			}

			fusectlErr := probe.EnsureFusectl(probe.DefaultFusectl, false)
			if (fusectlErr == nil) != (fusectl == "present") {
				t.Fatalf("fusectl %s, but EnsureFusectl says %v", fusectl, fusectlErr)
			}
			p := probe.NewProber(probe.Config{Timeout: 500 * time.Millisecond}, probe.NewHelperFS(probe.HelperConfig{}))
			sc := tasks.NewScanner(tasks.Config{Host: h})
			runner := &Runner{Prober: p, Checks: []Check{HungMountCheck{Tasks: sc, FusectlErr: fusectlErr}}}
			var rep *finding.Report
			var got map[string]finding.Finding
			testenv.WaitUntil(t, 20*time.Second, "hung_mount on the three connections, with their stuck tasks", func() bool {
				rep = runner.Run(context.Background(), liveSnapshot(t, h))
				got = byMountpoint(rep.Findings)
				return got[mntA].Details["stuck_tasks"] != "" && got[mntB].Details["stuck_tasks"] != "" && got[mntC].Details["stuck_tasks"] != ""
			})
			for mnt, pod := range map[string]*testenv.StandInPod{mntA: podA, mntB: podB} {
				f := got[mnt]
				name := "a"
				if pod == podB {
					name = "b"
				}
				want := fmt.Sprintf("team/%s (container %s): 1", name, pod.ContainerID[:12])
				if f.Details["stuck_tasks"] != "1" || f.Details["stuck_pods"] != want {
					t.Errorf("%s: stuck_tasks %q stuck_pods %q; want 1, %q (the helpers' probes not counted)",
						mnt, f.Details["stuck_tasks"], f.Details["stuck_pods"], want)
				}
			}
			fc := got[mntC]
			want := fmt.Sprintf("not in a pod: 1 (kubelet PID %d, the kubelet)", cmd.Process.Pid)
			if fc.Details["stuck_tasks"] != "1" || fc.Details["stuck_pods"] != want || !strings.Contains(fc.Message, want) {
				t.Errorf("node connection: stuck_tasks %q stuck_pods %q; want 1, %q\n%s", fc.Details["stuck_tasks"], fc.Details["stuck_pods"], want, fc.Message)
			}
			for _, task := range rep.Tasks.Tasks {
				if task.Comm == probe.HelperName || task.Comm == "exe" {
					t.Errorf("a probe helper's task counted as stuck: %+v", task)
				}
			}
			// (Other stuck tasks of the machine, outside this test's
			// namespace, may stay unattributed: not counted here.)
			for _, f := range []*testenv.StallFUSE{fuseA, fuseB, fuseC} {
				f.Resume()
			}
			waitUnblocked(t, p)
		})
	}
}
