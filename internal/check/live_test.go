package check

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

func liveSnapshot(t *testing.T, h mounts.Host) *mounts.Snapshot {
	t.Helper()
	s, err := mounts.RereadSnapshot(h, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mkdirs(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func byMountpoint(found []finding.Finding) map[string]finding.Finding {
	out := map[string]finding.Finding{}
	for _, f := range found {
		out[f.MountPoint] = f
	}
	return out
}

// waitUnblocked waits until every blocked probe of p has returned.
func waitUnblocked(t *testing.T, p *probe.Prober) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for p.Stats().Blocked != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d probes still blocked 20s after the servers resumed", p.Stats().Blocked)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// bindfs killed with SIGKILL: stale_mount on the mount and on two bind
// mounts of it, from one probe of the connection.
func TestLiveStaleBindfsKilled(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	mkdirs(t, dir+"/src/a", dir+"/src/b")
	server := testenv.Bindfs(t, dir+"/src", dir+"/fuse")
	testenv.Bind(t, dir+"/fuse/a", dir+"/bind-a")
	testenv.Bind(t, dir+"/fuse/b", dir+"/bind-b")
	testenv.Tmpfs(t, dir+"/tmp")
	if err := server.Kill(); err != nil {
		t.Fatal(err)
	}
	_, _ = server.Wait()

	p := probe.NewProber(probe.Config{Timeout: 5 * time.Second}, probe.SysFS{})
	s := liveSnapshot(t, mounts.Host{})
	found, err := runProbed(p, StaleMountCheck{}, s)
	if err != nil {
		t.Fatal(err)
	}
	got := byMountpoint(found)
	for _, mp := range []string{dir + "/fuse", dir + "/bind-a", dir + "/bind-b"} {
		f, ok := got[mp]
		if !ok {
			t.Errorf("no stale_mount for %s: %+v", mp, found)
			continue
		}
		if f.Severity != finding.Critical || f.Details["errno"] != "ENOTCONN" || f.Details["mounts_on_connection"] != "3" {
			t.Errorf("%s: %s %v", mp, f.Severity, f.Details)
		}
	}
	if len(found) != 3 {
		t.Errorf("%d findings, want 3: %+v", len(found), found)
	}
	fuse := got[dir+"/fuse"]
	if n := p.Stats().Probes; n != uint64(p.Latest().Stats.Connections) {
		t.Errorf("%d probes for %d connections: the dead connection was probed more than once", n, p.Latest().Stats.Connections)
	}
	if !strings.Contains(fuse.Message, "ENOTCONN") || !strings.Contains(fuse.Message, "Fix:") {
		t.Errorf("message: %s", fuse.Message)
	}
}

// bindfs stopped with SIGSTOP: hung_mount within the timeout, with the
// waiting count from fusectl; after SIGCONT the finding clears.
func TestLiveHungBindfsStopped(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	mkdirs(t, dir+"/src/a", dir+"/fusectl")
	server := testenv.Bindfs(t, dir+"/src", dir+"/fuse")
	testenv.Bind(t, dir+"/fuse/a", dir+"/bind-a")
	if err := probe.EnsureFusectl(probe.DefaultFusectl, true); err != nil {
		t.Fatalf("fusectl: %v", err)
	}
	if err := server.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Signal(syscall.SIGCONT) })

	p := probe.NewProber(probe.Config{Timeout: time.Second}, probe.SysFS{})
	hung := HungMountCheck{Fusectl: probe.DefaultFusectl}
	done := make(chan []finding.Finding, 1)
	go func() {
		found, _ := runProbed(p, hung, liveSnapshot(t, mounts.Host{}))
		done <- found
	}()
	var found []finding.Finding
	select {
	case found = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("hung_mount blocked on the stopped FUSE server")
	}
	got := byMountpoint(found)
	for _, mp := range []string{dir + "/fuse", dir + "/bind-a"} {
		f, ok := got[mp]
		if !ok || f.Severity != finding.Critical {
			t.Fatalf("no critical hung_mount for %s: %+v", mp, found)
		}
		if w := f.Details["fuse_waiting"]; w == "" || w == "0" || strings.HasPrefix(w, "unknown") {
			t.Errorf("%s: fuse_waiting %q, want the count of stuck requests", mp, w)
		}
	}
	if st := p.Stats(); st.Blocked != 1 {
		t.Errorf("%d probes blocked, want 1 for one hung connection", st.Blocked)
	}

	if err := server.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitUnblocked(t, p)
	found, _ = runProbed(p, hung, liveSnapshot(t, mounts.Host{}))
	if f, ok := byMountpoint(found)[dir+"/fuse"]; ok {
		t.Errorf("hung_mount did not clear after SIGCONT: %+v", f)
	}
}

// 50 stopped FUSE servers: repeated checks never hold more blocked probe
// threads than there are hung connections (or the cap), and the number does
// not grow from check to check.
func TestLiveFiftyStoppedServers(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	const n = 50
	var servers []*os.Process
	for i := range n {
		src := fmt.Sprintf("%s/src%d", dir, i)
		mkdirs(t, src)
		servers = append(servers, testenv.Bindfs(t, src, fmt.Sprintf("%s/fuse%d", dir, i)))
	}
	for _, s := range servers {
		if err := s.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}
	resumed := false
	resume := func() {
		if !resumed {
			for _, s := range servers {
				_ = s.Signal(syscall.SIGCONT)
			}
			resumed = true
		}
	}
	t.Cleanup(resume)

	threads0 := testenv.Threads(t)
	check := func(p *probe.Prober, rounds, wantBlocked int) {
		t.Helper()
		var first int
		for i := range rounds {
			r := p.Round(context.Background(), liveSnapshot(t, mounts.Host{}))
			hung := 0
			for _, res := range r.Results {
				if res.State == probe.Hung {
					hung++
				}
			}
			threads := testenv.Threads(t)
			if i == 0 {
				first = threads
			}
			if st := p.Stats(); st.Blocked != wantBlocked || hung != wantBlocked {
				t.Errorf("round %d: %d blocked, %d hung mounts, want %d", i, st.Blocked, hung, wantBlocked)
			}
			// A few threads of slack for the runtime's own; never one per round.
			if threads > first+4 {
				t.Errorf("round %d: %d threads, %d after the first round: blocked threads grow", i, threads, first)
			}
			t.Logf("round %d: %d threads (%d before any probe), %d blocked", i, threads, threads0, p.Stats().Blocked)
		}
	}

	capped := probe.NewProber(probe.Config{Timeout: 250 * time.Millisecond, MaxBlocked: 10}, probe.SysFS{})
	check(capped, 3, 10)
	if nb := capped.Latest().Stats.NotProbed; nb != n-10 {
		t.Errorf("capped prober: %d connections not probed, want %d", nb, n-10)
	}

	full := probe.NewProber(probe.Config{Timeout: 250 * time.Millisecond, MaxBlocked: 64}, probe.SysFS{})
	check(full, 4, n)
	if threads := testenv.Threads(t); threads > threads0+10+n+8 {
		t.Errorf("%d threads with %d+%d probes blocked, started from %d", threads, 10, n, threads0)
	}

	resume()
	waitUnblocked(t, capped)
	waitUnblocked(t, full)
}

// The ceph-fuse stand-in under a kubelet-shaped tree: it dies, and every
// mount of the connection is stale with the ceph-fuse message; then a new
// FUSE mount is made over the dead staging mount: shadowed_mount, and the
// pod bind mounts are still reported stale.
func TestLiveCephFuseDiesThenShadowed(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	kubelet := dir + "/var/lib/kubelet"
	staging := kubelet + "/plugins/kubernetes.io/csi/cephfs.csi.ceph.com/9f2c/globalmount"
	const uid = "6a1b2c3d-0000-4000-8000-00000000abcd"
	pvc1 := testenv.KubeletPodVolume(t, kubelet, uid, "pvc-1", "cephfs.csi.ceph.com", "vol-1")
	pvc2 := testenv.KubeletPodVolume(t, kubelet, uid, "pvc-2", "cephfs.csi.ceph.com", "vol-2")
	mkdirs(t, dir+"/backing/volumes/csi/vol1", dir+"/backing/volumes/csi/vol2", dir+"/backing2")
	ceph := testenv.FakeCephFuse(t, dir+"/backing", staging)
	testenv.Bind(t, staging+"/volumes/csi/vol1", pvc1)
	testenv.Bind(t, staging+"/volumes/csi/vol2", pvc2)
	h := mounts.Host{KubeletRoot: kubelet, PodLogDir: dir + "/logs"}

	p := probe.NewProber(probe.Config{Timeout: 5 * time.Second}, probe.SysFS{})
	runner := &Runner{Checks: []Check{StaleMountCheck{}, HungMountCheck{}, ShadowedMountCheck{}}, Prober: p}
	if rep := runner.Run(context.Background(), liveSnapshot(t, h)); len(rep.Findings) != 0 {
		t.Fatalf("healthy ceph-fuse reported: %+v", rep.Findings)
	}

	// Hold the staging mount's root: once the server is dead its path can no
	// longer be looked up, and this is how a new mount gets stacked on it.
	over, err := os.OpenFile(staging, unix.O_PATH, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	if err := ceph.Signal(syscall.SIGTERM); err != nil { // dies holding the mount
		t.Fatal(err)
	}
	_, _ = ceph.Wait()
	rep := runner.Run(context.Background(), liveSnapshot(t, h))
	got := byMountpoint(rep.Findings)
	for _, mp := range []string{staging, pvc1, pvc2} {
		if f, ok := got[mp]; !ok || f.Check != StaleMount || f.Severity != finding.Critical {
			t.Fatalf("no critical stale_mount for %s: %+v", mp, rep.Findings)
		}
	}
	f := got[pvc1]
	if f.PodUID != uid || f.Volume != "pvc-1" || f.CSIDriver != "cephfs.csi.ceph.com" || f.Details["pod_volumes"] != "2" ||
		f.Details["staging"] != staging {
		t.Errorf("pod volume finding: %+v %v", f.Kube, f.Details)
	}
	if !strings.Contains(f.Message, "ceph-fuse staging mount is "+staging) || !strings.Contains(f.Message, "2 pod volumes") {
		t.Errorf("message does not name the staging mount and the pod volumes: %s", f.Message)
	}
	// What kubelet and the runtime print for it, attributed (issue 31).
	for _, want := range []string{
		`CreateContainerError: failed to generate container "..." spec: failed to generate spec: failed to stat "` + pvc1 +
			`": stat ` + pvc1 + `: transport endpoint is not connected (containerd's error)`,
		`FailedMount event: MountVolume.SetUp failed for volume "pvc-1" : rpc error: code = Internal desc = stat ` + staging +
			`: transport endpoint is not connected`,
		"kubelet 1.34, containerd 1.6, ceph-csi v3.6.2",
		"Fix: delete the pods that use the volume",
	} {
		if !strings.Contains(f.Message, want) {
			t.Errorf("message lacks %q: %s", want, f.Message)
		}
	}
	if rep.Probe == nil || rep.Probe.Blocked != 0 {
		t.Errorf("probe stats %+v", rep.Probe)
	}

	// A new FUSE mount over the dead one at the same mount point.
	testenv.FakeCephFuseOver(t, dir+"/backing2", over)
	rep = runner.Run(context.Background(), liveSnapshot(t, h))
	var shadowed, stalePods int
	for _, f := range rep.Findings {
		switch {
		case f.Check == ShadowedMount && f.MountPoint == staging:
			shadowed++
			if f.Severity != finding.Critical || f.Details["other_mounts"] != "2" || f.Details["hidden_state"] != "ENOTCONN" {
				t.Errorf("shadowed_mount: %s %v", f.Severity, f.Details)
			}
		case f.Check == StaleMount && (f.MountPoint == pvc1 || f.MountPoint == pvc2):
			stalePods++
		}
	}
	if shadowed != 1 || stalePods != 2 {
		t.Errorf("%d shadowed_mount, %d stale pod volumes; want 1 and 2: %+v", shadowed, stalePods, rep.Findings)
	}
	// Only the two pod volumes, the hidden staging mount and its shadow are
	// reported: the new mount on top is healthy.
	if len(rep.Findings) != 4 {
		t.Errorf("%d findings, want 4 (shadowed + 3 stale mounts of the dead connection):", len(rep.Findings))
		for _, f := range rep.Findings {
			t.Logf("%s %s %s %s %v", f.Check, f.Severity, f.Dev, f.MountPoint, f.Details)
		}
	}
	for _, f := range rep.Findings {
		if f.Check == StaleMount && f.Dev != got[pvc1].Dev {
			t.Errorf("a mount of another connection is reported stale: %+v", f)
		}
	}
}

// A healthy FUSE mount and a healthy tmpfs: no findings from any check.
func TestLiveHealthyFUSEAndTmpfs(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	mkdirs(t, dir+"/src/a")
	testenv.Bindfs(t, dir+"/src", dir+"/fuse", "subtype=s3fs")
	testenv.Bind(t, dir+"/fuse/a", dir+"/bind")
	testenv.Tmpfs(t, dir+"/tmp")
	p := probe.NewProber(probe.Config{Timeout: 5 * time.Second}, probe.SysFS{})
	rep := (&Runner{Checks: []Check{DeletedRootCheck{}, StaleMountCheck{}, HungMountCheck{},
		ShadowedMountCheck{}}, Prober: p}).Run(context.Background(), liveSnapshot(t, mounts.Host{}))
	for _, f := range rep.Findings {
		if strings.HasPrefix(f.MountPoint, dir) {
			t.Errorf("healthy mount reported: %+v", f)
		}
	}
	r := p.Latest()
	for _, m := range r.Snapshot.Mounts {
		if strings.HasPrefix(m.Mountpoint, dir+"/fuse") || m.Mountpoint == dir+"/bind" {
			if res := r.Results[m.ID]; res.State != probe.OK {
				t.Errorf("%s: %v %v", m.Mountpoint, res.State, res.Err)
			}
		}
	}
}

// The DaemonSet case: a FUSE mount living only in another process's mount
// namespace dies; probing through /proc/<pid>/root finds it stale.
func TestLiveStaleInOtherNamespace(t *testing.T) {
	testenv.RequireRoot(t)
	bindfs := testenv.RequireCommand(t, "bindfs", "bindfs")
	dir := t.TempDir()
	node := testenv.NewNode(t, strings.Join([]string{
		"mount -t tmpfs node " + dir,
		"mkdir -p " + dir + "/src/a " + dir + "/fuse " + dir + "/bind",
		bindfs + " -f " + dir + "/src " + dir + "/fuse & pid=$!",
		"for i in $(seq 100); do grep -q ' " + dir + "/fuse ' /proc/self/mountinfo && break; sleep 0.05; done",
		"mount --bind " + dir + "/fuse/a " + dir + "/bind",
		"kill -9 $pid; wait $pid || true", // dead, and its /dev/fuse closed
	}, "\n"))

	h := mounts.Host{PID: node.PID}
	found, err := runProbed(probe.NewProber(probe.Config{}, probe.SysFS{}), StaleMountCheck{}, liveSnapshot(t, h))
	if err != nil {
		t.Fatal(err)
	}
	got := byMountpoint(found)
	if f, ok := got[dir+"/bind"]; !ok || f.Details["errno"] != "ENOTCONN" {
		t.Errorf("no stale_mount for %s/bind in the other namespace: %+v", dir, found)
		for _, m := range liveSnapshot(t, h).Mounts {
			if strings.HasPrefix(m.Mountpoint, dir) {
				t.Logf("mount %d %s %s %s", m.ID, m.Mountpoint, m.FSType, m.Root)
			}
		}
	}
	own, _ := runProbed(probe.NewProber(probe.Config{}, probe.SysFS{}), StaleMountCheck{}, liveSnapshot(t, mounts.Host{}))
	if _, ok := byMountpoint(own)[dir+"/bind"]; ok {
		t.Error("our own namespace reports the other namespace's mount")
	}
}
