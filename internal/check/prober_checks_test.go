package check

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe"
	"github.com/mountwatchd/mountwatchd/internal/probe/probetest"
	"golang.org/x/sys/unix"
)

// The probing checks over the prober, with probes that answer as the test
// says (probetest.FS).

// Issue 8: a FUSE server dies, hangs or recovers without touching the mount
// table, so the same snapshot must be probed anew by every run of the
// checks; only the checks of one run share a round.
func TestProberProbesSameSnapshotAnewEachRun(t *testing.T) {
	fs := probetest.NewFS()
	s := probetest.Table(t, fs,
		probetest.FuseLine(10, 40, "/", "/mnt/cephfs"),
		probetest.FuseLine(11, 40, "/volumes/a", "/pods/a"))
	p := probe.NewProber(probe.Config{Timeout: time.Second}, fs)
	runner := &Runner{Checks: []Check{StaleMountCheck{}, HungMountCheck{}}, Prober: p}

	if rep := runner.Run(context.Background(), s); len(rep.Findings) != 0 {
		t.Fatalf("healthy: %+v", rep.Findings)
	}
	if n := fs.Count("/mnt/cephfs"); n != 1 {
		t.Fatalf("one run of two probing checks probed the connection %d times, want 1", n)
	}

	// The server dies; the table (and so the snapshot) stays the same.
	fs.Mu.Lock()
	fs.Errs["/mnt/cephfs"] = fmt.Errorf("statfs: %w", syscall.ENOTCONN)
	fs.Mu.Unlock()
	rep := runner.Run(context.Background(), s)
	if n := fs.Count("/mnt/cephfs"); n != 2 {
		t.Fatalf("second run probed the connection %d times in all, want 2", n)
	}
	if len(rep.Findings) != 2 || rep.Findings[0].Check != StaleMount {
		t.Fatalf("after the server died, same snapshot: %+v", rep.Findings)
	}

	// Outside a run, every Round probes.
	ctx := context.Background()
	if a, b := p.Round(ctx, s), p.Round(ctx, s); a == b {
		t.Error("two Rounds outside a run returned the same round")
	}
}

// Checks run at once (--once) still share one probe round: the first to
// ask makes it, the others wait for it.
func TestConcurrentRunnerSharesOneProbeRound(t *testing.T) {
	fs := probetest.NewFS()
	s := probetest.Table(t, fs,
		probetest.FuseLine(10, 40, "/", "/mnt/cephfs"),
		probetest.FuseLine(11, 41, "/", "/mnt/other"))
	p := probe.NewProber(probe.Config{Timeout: time.Second}, fs)
	runner := &Runner{Checks: []Check{StaleMountCheck{}, HungMountCheck{}, &ShadowedMountCheck{}}, Prober: p, Concurrent: true}
	for run := 1; run <= 3; run++ {
		if rep := runner.Run(context.Background(), s); len(rep.Findings) != 0 {
			t.Fatalf("healthy: %+v", rep.Findings)
		}
		for _, mp := range []string{"/mnt/cephfs", "/mnt/other"} {
			if n := fs.Count(mp); n != run {
				t.Fatalf("after %d runs of three checks at once, %s was probed %d times, want %d", run, mp, n, run)
			}
		}
	}
}

// On a healthy connection, each bind mount's own root is checked too: an
// NFS subdirectory can be stale while the export root answers.
func TestProberChecksEachBindRoot(t *testing.T) {
	fs := probetest.NewFS()
	s := probetest.Table(t, fs,
		"10 1 0:50 / /mnt/nfs rw - nfs4 srv:/ rw",
		"11 1 0:50 /exports/a /pods/a rw - nfs4 srv:/ rw",
		"12 1 0:50 /exports/a /pods/a2 rw - nfs4 srv:/ rw",
		"13 1 0:50 /exports/b /pods/b rw - nfs4 srv:/ rw")
	fs.Errs["/pods/b"] = fmt.Errorf("statfs: %w", syscall.ESTALE)
	p := probe.NewProber(probe.Config{}, fs)
	ctx := context.Background()
	r := p.Round(ctx, s) // one run: the check below shares the round
	want := map[int]probe.State{10: probe.OK, 11: probe.OK, 12: probe.OK, 13: probe.Failed}
	if r.Results[13].Connection || !r.Results[10].Connection {
		t.Errorf("a bind mount's own failure is taken for the connection's, or the reverse: %+v", r.Results)
	}
	found := StaleMountCheck{}.Run(ctx, &Env{Snapshot: s, Probes: r}).Findings // the same round
	if len(found) != 1 || found[0].MountID != 13 || !strings.Contains(found[0].Message, "root (connection 0:50) answers") {
		t.Errorf("stale subdirectory: %+v", found)
	}
	for id, st := range want {
		if r.Results[id].State != st {
			t.Errorf("mount %d: %v, want %v", id, r.Results[id].State, st)
		}
	}
	if fs.Count("/pods/a")+fs.Count("/pods/a2") != 1 {
		t.Errorf("two bind mounts of one directory were probed %d times, want 1", fs.Count("/pods/a")+fs.Count("/pods/a2"))
	}
}

func TestProberUnreachableIsNotStale(t *testing.T) {
	fs := probetest.NewFS()
	s := probetest.Table(t, fs,
		probetest.FuseLine(10, 40, "/", "/mnt/a"),        // shadowed by 11, no other mount of 0:40
		"11 10 0:43 / /mnt/a rw - fuse.sshfs x rw",       // the mount on top sits on 10
		probetest.FuseLine(20, 41, "/", "/mnt/gone"),     // unmounted after the snapshot
		probetest.FuseLine(30, 42, "/", "/mnt/vanished")) // mount point removed
	fs.Devs["/mnt/gone"] = unix.Mkdev(8, 1) // the path now leads to the parent filesystem
	fs.Errs["/mnt/vanished"] = fmt.Errorf("open: %w", syscall.ENOENT)
	r := probe.NewProber(probe.Config{}, fs).Round(context.Background(), s)
	for _, id := range []int{10, 20, 30} {
		if r.Results[id].State != probe.Unreachable {
			t.Errorf("mount %d: %+v, want unreachable", id, r.Results[id])
		}
	}
	if fs.Count("/mnt/a") != 1 { // only the top mount, 0:43
		t.Errorf("/mnt/a probed %d times", fs.Count("/mnt/a"))
	}
	found, _ := runProbed(probe.NewProber(probe.Config{}, fs), StaleMountCheck{}, s)
	if len(found) != 0 {
		t.Errorf("unreachable mounts reported stale: %+v", found)
	}
}

// Opening the inspected namespace's root failing mid-round (the process
// exited, or we lack CAP_SYS_PTRACE) is ours, not the mount's: those
// connections are not probed, never stale or hung, and the probing checks
// return an error naming the capability. Only the errno from the mount
// itself (EACCES inside the root, on a kubelet mount) is a finding.
func TestProberNamespaceUnreachableIsNotStale(t *testing.T) {
	fs := probetest.NewFS()
	kube := "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~csi/pvc-1/mount"
	s := probetest.Table(t, fs, probetest.FuseLine(10, 40, "/", kube), probetest.FuseLine(11, 40, "/", "/mnt/a"), probetest.FuseLine(20, 41, "/", "/mnt/b"))
	// What opening another process's root without CAP_SYS_PTRACE returns
	// (mounts.OpenRootAt).
	fs.Errs[kube] = fmt.Errorf("%w: open /proc/4242/root: %w; reaching another process's files (/proc/4242/root) needs CAP_SYS_PTRACE, which this process does not hold",
		mounts.ErrNamespaceUnreachable, syscall.EACCES)
	fs.Errs["/mnt/a"] = fs.Errs[kube]
	fs.Errs["/mnt/b"] = fmt.Errorf("open /mnt/b: %w", syscall.EACCES) // the mount's own answer
	p := probe.NewProber(probe.Config{}, fs)
	ctx := context.Background()
	r := p.Round(ctx, s) // one run: the checks below share the round
	for _, id := range []int{10, 11} {
		if res := r.Results[id]; res.State != probe.NotProbed {
			t.Errorf("mount %d: %+v, want not probed", id, res)
		}
	}
	out := StaleMountCheck{}.Run(ctx, &Env{Snapshot: s, Probes: r})
	stale, err := out.Findings, out.Err
	if err == nil || !errors.Is(err, mounts.ErrNamespaceUnreachable) || !strings.Contains(err.Error(), "CAP_SYS_PTRACE") {
		t.Errorf("stale_mount error %v, want one naming CAP_SYS_PTRACE", err)
	}
	for _, f := range stale {
		if f.MountID != 20 {
			t.Errorf("a mount whose probe never reached it is stale: %+v", f)
		}
	}
	out = HungMountCheck{}.Run(ctx, &Env{Snapshot: s, Probes: r})
	hung, err := out.Findings, out.Err
	if len(hung) != 0 || !errors.Is(err, mounts.ErrNamespaceUnreachable) {
		t.Errorf("hung_mount: %d findings, error %v", len(hung), err)
	}
}
