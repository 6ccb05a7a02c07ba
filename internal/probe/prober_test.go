package probe

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeFS answers probes from a table; a path listed in block waits until
// its channel is closed, as a syscall to a stopped FUSE server does.
type fakeFS struct {
	mu    sync.Mutex
	calls map[string]int
	errs  map[string]error
	devs  map[string]uint64
	block map[string]chan struct{}
}

func newFakeFS() *fakeFS {
	return &fakeFS{calls: map[string]int{}, errs: map[string]error{}, devs: map[string]uint64{}, block: map[string]chan struct{}{}}
}

func (f *fakeFS) Probe(root, p string) (uint64, error) {
	f.mu.Lock()
	f.calls[p]++
	ch, err, dev := f.block[p], f.errs[p], f.devs[p]
	f.mu.Unlock()
	if ch != nil {
		<-ch
	}
	return dev, err
}

func (f *fakeFS) count(p string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[p]
}

// table builds a live snapshot from mountinfo lines, and tells fs the
// device of each mount point.
func table(t *testing.T, fs *fakeFS, lines ...string) *Snapshot {
	t.Helper()
	mounts, perrs, err := ParseMountTable(strings.NewReader(strings.Join(lines, "\n")))
	if err != nil || len(perrs) > 0 {
		t.Fatal(err, perrs)
	}
	f := indexSnapshot(&Snapshot{Live: true, Mounts: mounts, Taken: time.Now()})
	for _, m := range mounts {
		if _, ok := fs.devs[m.Mountpoint]; !ok {
			fs.devs[m.Mountpoint] = unix.Mkdev(uint32(m.Major), uint32(m.Minor))
		}
	}
	return f
}

func fuseLine(id, minor int, root, mp string) string {
	return fmt.Sprintf("%d 1 0:%d %s %s rw - fuse.ceph-fuse ceph-fuse rw", id, minor, root, mp)
}

func TestProberOneProbePerDeadConnection(t *testing.T) {
	fs := newFakeFS()
	s := table(t, fs,
		"1 1 8:1 / / rw - ext4 /dev/sda rw",
		fuseLine(10, 40, "/", "/mnt/cephfs"),
		fuseLine(11, 40, "/volumes/a", "/pods/a"),
		fuseLine(12, 40, "/volumes/b", "/pods/b"))
	fs.errs["/mnt/cephfs"] = fmt.Errorf("statfs: %w", syscall.ENOTCONN)

	p := NewProber(ProberConfig{Timeout: time.Second}, fs)
	r := p.Round(context.Background(), s)
	for _, id := range []int{10, 11, 12} {
		if res := r.Results[id]; res.State != ProbeFailed || res.Errno != syscall.ENOTCONN {
			t.Errorf("mount %d: %+v", id, res)
		}
	}
	if _, ok := r.Results[1]; ok {
		t.Error("ext4 was probed")
	}
	if n := fs.count("/mnt/cephfs") + fs.count("/pods/a") + fs.count("/pods/b"); n != 1 || r.Stats.Probes != 1 {
		t.Errorf("%d probes (stats %d), want 1 for one dead connection", n, r.Stats.Probes)
	}
}

// Issue 8: a FUSE server dies, hangs or recovers without touching the mount
// table, so the same snapshot must be probed anew by every run of the
// checks; only the checks of one run share a round.
func TestProberProbesSameSnapshotAnewEachRun(t *testing.T) {
	fs := newFakeFS()
	s := table(t, fs,
		fuseLine(10, 40, "/", "/mnt/cephfs"),
		fuseLine(11, 40, "/volumes/a", "/pods/a"))
	p := NewProber(ProberConfig{Timeout: time.Second}, fs)
	runner := &Runner{Checks: []Check{StaleMountCheck{Prober: p}, HungMountCheck{Prober: p}}}

	if rep := runner.Run(context.Background(), s); len(rep.Findings) != 0 {
		t.Fatalf("healthy: %+v", rep.Findings)
	}
	if n := fs.count("/mnt/cephfs"); n != 1 {
		t.Fatalf("one run of two probing checks probed the connection %d times, want 1", n)
	}

	// The server dies; the table (and so the snapshot) stays the same.
	fs.mu.Lock()
	fs.errs["/mnt/cephfs"] = fmt.Errorf("statfs: %w", syscall.ENOTCONN)
	fs.mu.Unlock()
	rep := runner.Run(context.Background(), s)
	if n := fs.count("/mnt/cephfs"); n != 2 {
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
	// Inside one, they share.
	rctx := WithRun(ctx)
	if a, b := p.Round(rctx, s), p.Round(rctx, s); a != b {
		t.Error("two Rounds of one run probed twice")
	}
}

// On a healthy connection, each bind mount's own root is checked too: an
// NFS subdirectory can be stale while the export root answers.
func TestProberChecksEachBindRoot(t *testing.T) {
	fs := newFakeFS()
	s := table(t, fs,
		"10 1 0:50 / /mnt/nfs rw - nfs4 srv:/ rw",
		"11 1 0:50 /exports/a /pods/a rw - nfs4 srv:/ rw",
		"12 1 0:50 /exports/a /pods/a2 rw - nfs4 srv:/ rw",
		"13 1 0:50 /exports/b /pods/b rw - nfs4 srv:/ rw")
	fs.errs["/pods/b"] = fmt.Errorf("statfs: %w", syscall.ESTALE)
	p := NewProber(ProberConfig{}, fs)
	ctx := WithRun(context.Background()) // one run: the check below shares the round
	r := p.Round(ctx, s)
	want := map[int]ProbeState{10: ProbeOK, 11: ProbeOK, 12: ProbeOK, 13: ProbeFailed}
	if r.Results[13].Connection || !r.Results[10].Connection {
		t.Errorf("a bind mount's own failure is taken for the connection's, or the reverse: %+v", r.Results)
	}
	found, _ := StaleMountCheck{Prober: p}.Run(ctx, s) // the same round
	if len(found) != 1 || found[0].MountID != 13 || !strings.Contains(found[0].Message, "root (connection 0:50) answers") {
		t.Errorf("stale subdirectory: %+v", found)
	}
	for id, st := range want {
		if r.Results[id].State != st {
			t.Errorf("mount %d: %v, want %v", id, r.Results[id].State, st)
		}
	}
	if fs.count("/pods/a")+fs.count("/pods/a2") != 1 {
		t.Errorf("two bind mounts of one directory were probed %d times, want 1", fs.count("/pods/a")+fs.count("/pods/a2"))
	}
}

// The prober never waits past its deadline, never sends a second probe to
// a connection whose first is blocked, and probes it again once it returns.
func TestProberHungConnection(t *testing.T) {
	fs := newFakeFS()
	s := table(t, fs, fuseLine(10, 40, "/", "/mnt/hung"), fuseLine(11, 40, "/v", "/pods/v"), fuseLine(20, 41, "/", "/mnt/ok"))
	release := make(chan struct{})
	fs.block["/mnt/hung"] = release
	p := NewProber(ProberConfig{Timeout: 50 * time.Millisecond}, fs)

	done := make(chan *Round)
	go func() { done <- p.Round(context.Background(), s) }()
	var r *Round
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Round blocked on a hung connection")
	}
	if r.Results[10].State != ProbeHung || r.Results[11].State != ProbeHung || r.Results[20].State != ProbeOK {
		t.Fatalf("results %+v", r.Results)
	}
	if st := p.Stats(); st.Blocked != 1 || st.Timeouts != 1 {
		t.Errorf("stats %+v, want 1 blocked, 1 timeout", st)
	}

	// More rounds while it is blocked: no new probe of that connection.
	for i := range 3 {
		s2 := table(t, fs, fuseLine(10, 40, "/", "/mnt/hung"), fuseLine(11, 40, "/v", "/pods/v"), fuseLine(20, 41, "/", "/mnt/ok"))
		r := p.Round(context.Background(), s2)
		if r.Results[10].State != ProbeHung || !r.Results[10].Since.Equal(r.Results[11].Since) {
			t.Errorf("round %d: %+v", i, r.Results[10])
		}
	}
	if n := fs.count("/mnt/hung"); n != 1 {
		t.Errorf("hung connection probed %d times, want 1", n)
	}

	close(release) // the server answers again
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().Blocked != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	s3 := table(t, fs, fuseLine(10, 40, "/", "/mnt/hung"), fuseLine(20, 41, "/", "/mnt/ok"))
	if r := p.Round(context.Background(), s3); r.Results[10].State != ProbeOK {
		t.Errorf("after release: %+v", r.Results[10])
	}
}

func TestProberCapsBlockedProbes(t *testing.T) {
	fs := newFakeFS()
	var lines []string
	release := make(chan struct{})
	defer close(release)
	for i := range 5 {
		mp := fmt.Sprintf("/mnt/hung%d", i)
		lines = append(lines, fuseLine(10+i, 40+i, "/", mp))
		fs.block[mp] = release
	}
	lines = append(lines, fuseLine(99, 99, "/", "/mnt/ok"))
	p := NewProber(ProberConfig{Timeout: 20 * time.Millisecond, MaxBlocked: 2}, fs)
	for round := range 3 {
		r := p.Round(context.Background(), table(t, fs, lines...))
		var hung, notProbed int
		for _, res := range r.Results {
			switch res.State {
			case ProbeHung:
				hung++
			case ProbeNotProbed:
				notProbed++
			}
		}
		if st := p.Stats(); st.Blocked > 2 || hung != 2 || notProbed != 4 || st.NotProbed != 4 {
			t.Errorf("round %d: blocked %d, hung %d, not probed %d (stats %+v)", round, st.Blocked, hung, notProbed, st)
		}
	}
	total := 0
	for i := range 5 {
		total += fs.count(fmt.Sprintf("/mnt/hung%d", i))
	}
	if total != 2 {
		t.Errorf("%d probes started for hung connections, want 2 (the cap)", total)
	}
}

func TestProberUnreachableIsNotStale(t *testing.T) {
	fs := newFakeFS()
	s := table(t, fs,
		fuseLine(10, 40, "/", "/mnt/a"),            // shadowed by 11, no other mount of 0:40
		"11 10 0:43 / /mnt/a rw - fuse.sshfs x rw", // the mount on top sits on 10
		fuseLine(20, 41, "/", "/mnt/gone"),         // unmounted after the snapshot
		fuseLine(30, 42, "/", "/mnt/vanished"))     // mount point removed
	fs.devs["/mnt/gone"] = unix.Mkdev(8, 1) // the path now leads to the parent filesystem
	fs.errs["/mnt/vanished"] = fmt.Errorf("open: %w", syscall.ENOENT)
	r := NewProber(ProberConfig{}, fs).Round(context.Background(), s)
	for _, id := range []int{10, 20, 30} {
		if r.Results[id].State != ProbeUnreachable {
			t.Errorf("mount %d: %+v, want unreachable", id, r.Results[id])
		}
	}
	if fs.count("/mnt/a") != 1 { // only the top mount, 0:43
		t.Errorf("/mnt/a probed %d times", fs.count("/mnt/a"))
	}
	found, _ := StaleMountCheck{Prober: NewProber(ProberConfig{}, fs)}.Run(context.Background(), s)
	if len(found) != 0 {
		t.Errorf("unreachable mounts reported stale: %+v", found)
	}
}

func TestProberCancelled(t *testing.T) {
	fs := newFakeFS()
	release := make(chan struct{})
	defer close(release)
	fs.block["/mnt/slow"] = release
	s := table(t, fs, fuseLine(10, 40, "/", "/mnt/slow"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := NewProber(ProberConfig{Timeout: time.Hour}, fs).Round(ctx, s)
	if r.Results[10].State != ProbeNotProbed {
		t.Errorf("%+v", r.Results[10])
	}
}

func TestProbeFSTypes(t *testing.T) {
	p := NewProber(ProberConfig{FSTypes: []string{"fuse.*", "nfs4"}}, nil)
	for fstype, want := range map[string]bool{"fuse.s3fs": true, "fuse": false, "nfs4": true, "nfs": false, "fusectl": false} {
		m := &Mount{}
		m.FSType = fstype
		if p.Probes(m) != want {
			t.Errorf("%s: probed %v", fstype, !want)
		}
	}
}

// Opening the inspected namespace's root failing mid-round (the process
// exited, or we lack CAP_SYS_PTRACE) is ours, not the mount's: those
// connections are not probed, never stale or hung, and the probing checks
// return an error naming the capability. Only the errno from the mount
// itself (EACCES inside the root, on a kubelet mount) is a finding.
func TestProberNamespaceUnreachableIsNotStale(t *testing.T) {
	fs := newFakeFS()
	kube := "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~csi/pvc-1/mount"
	s := table(t, fs, fuseLine(10, 40, "/", kube), fuseLine(11, 40, "/", "/mnt/a"), fuseLine(20, 41, "/", "/mnt/b"))
	fs.errs[kube] = namespaceRootError("/proc/4242/root", 4242, syscall.EACCES)
	fs.errs["/mnt/a"] = fs.errs[kube]
	fs.errs["/mnt/b"] = fmt.Errorf("open /mnt/b: %w", syscall.EACCES) // the mount's own answer
	p := NewProber(ProberConfig{}, fs)
	ctx := WithRun(context.Background())
	r := p.Round(ctx, s)
	for _, id := range []int{10, 11} {
		if res := r.Results[id]; res.State != ProbeNotProbed {
			t.Errorf("mount %d: %+v, want not probed", id, res)
		}
	}
	stale, err := StaleMountCheck{Prober: p}.Run(ctx, s)
	if err == nil || !errors.Is(err, ErrNamespaceUnreachable) || !strings.Contains(err.Error(), "CAP_SYS_PTRACE") {
		t.Errorf("stale_mount error %v, want one naming CAP_SYS_PTRACE", err)
	}
	for _, f := range stale {
		if f.MountID != 20 {
			t.Errorf("a mount whose probe never reached it is stale: %+v", f)
		}
	}
	hung, err := HungMountCheck{Prober: p}.Run(ctx, s)
	if len(hung) != 0 || !errors.Is(err, ErrNamespaceUnreachable) {
		t.Errorf("hung_mount: %d findings, error %v", len(hung), err)
	}
	if got := rootPID("/proc/4242/root"); got != 4242 {
		t.Errorf("rootPID = %d", got)
	}
}
