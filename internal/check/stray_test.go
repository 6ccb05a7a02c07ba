package check

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
	"github.com/mountwatchd/mountwatchd/internal/walk"
)

const podUID = "5b0c2d1e-7f3a-4c2b-9d8e-1a2b3c4d5e6f"

// kubeletVolume makes an emptyDir-shaped pod volume under dir and a pod log
// directory naming the pod; it returns the host and the volume directory.
func kubeletVolume(t *testing.T, dir string) (mounts.Host, string) {
	t.Helper()
	kubelet := dir + "/var/lib/kubelet"
	vol := kubelet + "/pods/" + podUID + "/volumes/kubernetes.io~empty-dir/cache"
	mkfiles(t, dir, "var/log/pods/build_kaniko-0_"+podUID+"/")
	mkfiles(t, vol, "plain/file", "layers/1/fs/func/min", "layers/2/fs/", "work/")
	mkfiles(t, kubelet, "pods/"+podUID+"/etc-hosts", "pods/"+podUID+"/containers/app/0")
	return mounts.Host{KubeletRoot: kubelet, PodLogDir: dir + "/var/log/pods"}, vol
}

func snapshotFor(t testing.TB, h mounts.Host) *mounts.Snapshot {
	t.Helper()
	s, err := mounts.RereadSnapshot(h, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func strayByPath(fs []finding.Finding) map[string]finding.Finding {
	out := map[string]finding.Finding{}
	for _, f := range fs {
		if f.Check == StrayOverlayXattr {
			out[f.Path] = f
		}
	}
	return out
}

// F6: a layer copied into a pod volume with its overlay xattrs is reported
// with the pod and the volume; the same xattrs on a live overlay's layers
// (an image builder using the volume) are not.
func TestStrayOverlayXattrKubeletVolume(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	testenv.Tmpfs(t, dir)
	h, vol := kubeletVolume(t, dir)
	setxattr(t, vol+"/layers/1/fs/func", "trusted.overlay.opaque", "y")
	setxattr(t, vol+"/layers/1/fs/func/min", "user.overlay.origin", "x")
	setxattr(t, vol+"/plain/file", "user.comment", "not overlay's")
	// Outside the volumes tree: not scanned by default.
	mkfiles(t, h.KubeletRoot, "pods/"+podUID+"/containers/app/layer/")
	setxattr(t, h.KubeletRoot+"/pods/"+podUID+"/containers/app/layer", "trusted.overlay.opaque", "y")

	check := &StrayOverlayXattrCheck{}
	found, err := runOne(check, snapshotFor(t, h))
	if err != nil {
		t.Fatal(err)
	}
	got := strayByPath(found)
	if len(got) != 2 {
		t.Fatalf("got %d findings, want 2: %+v", len(got), found)
	}
	f, ok := got[vol+"/layers/1/fs/func"]
	if !ok {
		t.Fatalf("no finding for the opaque directory: %+v", got)
	}
	wantKube := mounts.Kube{Kind: mounts.PodVolume, PodUID: podUID, PodNamespace: "build", PodName: "kaniko-0",
		VolumePlugin: "kubernetes.io~empty-dir", Volume: "cache"}
	if f.Kube != wantKube || f.Severity != finding.Warning || f.Details["xattrs"] != "trusted.overlay.opaque" ||
		!strings.Contains(f.Message, "opaque marker hides") || f.MountPoint != dir {
		t.Errorf("finding %+v", f)
	}
	if g := got[vol+"/layers/1/fs/func/min"]; g.Details["xattrs"] != "user.overlay.origin" {
		t.Errorf("user.overlay finding %+v", g)
	}
	// Each names the pod volume it is in (its series' directory), not the
	// file: one label value per volume, however many files carry xattrs.
	for p, g := range got {
		if g.Directory != vol {
			t.Errorf("%s: directory %q, want the volume's %s", p, g.Directory, vol)
		}
	}
	if st := check.Stats(); st.Passes != 1 || !st.Complete {
		t.Errorf("stats %+v", st)
	}

	// The builder mounts its layers from the volume: layer 1 is the lower
	// layer, layer 2 the upper one, made opaque by the overlay itself.
	merged := dir + "/merged"
	overlay(t, merged, "lowerdir="+vol+"/layers/1/fs,upperdir="+vol+"/layers/2/fs,workdir="+vol+"/work")
	if err := os.RemoveAll(merged + "/func"); err != nil {
		t.Fatal(err)
	}
	mkfiles(t, merged, "func/max")
	if v := getxattr(t, vol+"/layers/2/fs/func", "trusted.overlay.opaque"); v != "y" {
		t.Fatalf("upper func not opaque: %q", v)
	}
	found, err = runOne(&StrayOverlayXattrCheck{}, snapshotFor(t, h))
	if err != nil {
		t.Fatal(err)
	}
	if got := strayByPath(found); len(got) != 0 {
		t.Errorf("live overlay layers reported as stray: %+v", got)
	}
}

// Extra roots are scanned too, and a root that is a symlink is refused with
// an error that says why, while the other roots are still scanned.
func TestStrayOverlayXattrExtraRoots(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	testenv.Tmpfs(t, dir)
	mkfiles(t, dir, "srv/data/copied/", "real/")
	setxattr(t, dir+"/srv/data/copied", "trusted.overlay.redirect", "/x")
	if err := os.Symlink(dir+"/real", dir+"/link"); err != nil {
		t.Fatal(err)
	}
	check := &StrayOverlayXattrCheck{Roots: []string{dir + "/link", dir + "/srv", dir + "/missing"}}
	found, err := runOne(check, snapshotFor(t, mounts.Host{KubeletRoot: dir + "/nokubelet"}))
	if err == nil || !strings.Contains(err.Error(), dir+"/link: a component is a symlink") ||
		!strings.Contains(err.Error(), dir+"/missing") {
		t.Errorf("error %v", err)
	}
	if got := strayByPath(found); len(got) != 1 || got[dir+"/srv/data/copied"].Details["xattrs"] != "trusted.overlay.redirect" {
		t.Errorf("findings %+v", found)
	}
}

// walkAll runs w over roots until a pass completes and returns the paths
// visited, in order, and the number of runs.
func walkAll(t *testing.T, w *walk.Walker, s *mounts.Snapshot, roots []walk.Root, maxRuns int) ([]string, int) {
	t.Helper()
	var visited []string
	for run := 1; run <= maxRuns; run++ {
		root, err := s.Host.OpenRoot()
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Begin(context.Background(), s, root); err != nil {
			t.Fatal(err)
		}
		done, rerrs, err := w.Run(func() []walk.Root { return roots },
			func(e *walk.Entry) bool { visited = append(visited, e.Path); return true })
		w.End()
		root.Close()
		if err != nil || len(rerrs) > 0 {
			t.Fatalf("run %d: %v %v", run, err, rerrs)
		}
		if done {
			return visited, run
		}
	}
	t.Fatalf("no complete pass in %d runs", maxRuns)
	return nil, 0
}

// A volume holding a symlink to /, a symlink loop, a symlink to a directory
// outside with a stray xattr, and FUSE mounts (one known to the snapshot,
// one mounted after it) whose servers are stopped: the walk visits nothing
// outside the volume, enters neither FUSE mount and returns.
func TestWalkerHostileTree(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	testenv.Tmpfs(t, dir)
	h, vol := kubeletVolume(t, dir)
	mkfiles(t, dir, "outside/secret/", "fuse-src/inner/", "fuse-src2/inner/")
	setxattr(t, dir+"/outside/secret", "trusted.overlay.opaque", "y")
	setxattr(t, dir+"/fuse-src/inner", "user.overlay.opaque", "y")
	for name, target := range map[string]string{"to-root": "/", "loop-a": "loop-b", "loop-b": "loop-a",
		"to-outside": dir + "/outside", "up": "../../../../../../../../.."} {
		if err := os.Symlink(target, vol+"/plain/"+name); err != nil {
			t.Fatal(err)
		}
	}
	srv := testenv.Bindfs(t, dir+"/fuse-src", vol+"/fuse", "subtype=ceph-fuse")
	s := snapshotFor(t, h) // knows the first FUSE mount
	srv2 := testenv.Bindfs(t, dir+"/fuse-src2", vol+"/late-fuse")
	for _, p := range []*os.Process{srv, srv2} {
		if err := p.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}

	type result struct {
		visited []string
		w       *walk.Walker
	}
	done := make(chan result, 1)
	go func() {
		w := &walk.Walker{}
		visited, _ := walkAll(t, w, s, []walk.Root{{Path: vol}}, 1)
		done <- result{visited, w}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the walk did not return within 30s: it touched a stopped FUSE server")
	}
	for _, p := range r.visited {
		if !strings.HasPrefix(p, vol+"/") {
			t.Errorf("visited %s, outside the volume", p)
		}
		if strings.HasPrefix(p, vol+"/fuse/") || strings.HasPrefix(p, vol+"/late-fuse/") {
			t.Errorf("entered a FUSE mount: %s", p)
		}
	}
	for _, want := range []string{vol + "/plain/to-root", vol + "/plain/loop-a", vol + "/fuse", vol + "/late-fuse", vol + "/layers/1/fs/func/min"} {
		if !slices.Contains(r.visited, want) {
			t.Errorf("did not visit %s: %v", want, r.visited)
		}
	}
	if r.w.SkippedMounts != 2 {
		t.Errorf("skipped %d mounts, want 2 (the known FUSE mount and the late one)", r.w.SkippedMounts)
	}

	// The stray check over the same tree: nothing from outside or from the
	// FUSE mount, and it returns.
	got := make(chan []finding.Finding, 1)
	go func() {
		f, _ := runOne(&StrayOverlayXattrCheck{}, s)
		got <- f
	}()
	select {
	case f := <-got:
		if len(f) != 0 {
			t.Errorf("findings from outside the tree or from FUSE: %+v", f)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("stray check did not return within 30s")
	}
}

// 200,420 entries with a budget of 30,000: every run stops at the budget,
// the walk resumes where it stopped (in directories three levels deep), and
// the pass completes after ceil(200420/30000) runs, having visited every
// entry exactly once.
func TestWalkerBudgetResume200k(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	testenv.Tmpfs(t, dir)
	root := dir + "/tree"
	total := makeTree(t, root, 20, 20, 500)
	if total != 200420 {
		t.Fatalf("tree has %d entries", total)
	}
	s := snapshotFor(t, mounts.Host{})
	w := &walk.Walker{Limits: walk.ScanLimits{Budget: 30000}}
	visited, runs := walkAll(t, w, s, []walk.Root{{Path: root}}, 100)
	if want := (total + 29999) / 30000; runs != want {
		t.Errorf("%d runs, want %d", runs, want)
	}
	seen := make(map[string]int, len(visited))
	for _, p := range visited {
		seen[p]++
		if seen[p] == 2 {
			t.Errorf("visited %s twice", p)
		}
	}
	if len(seen) != total {
		t.Errorf("visited %d distinct entries, want %d", len(seen), total)
	}
	st := w.Stats
	if st.Entries != uint64(total) || st.Passes != 1 || st.BudgetExhausted != uint64(runs-1) || !st.Complete {
		t.Errorf("stats %+v", st)
	}

	// Through the check: a stray marker in the last directory of the tree
	// is found only once the pass reaches it, and the stats say so.
	last := root + "/d19/d19"
	setxattr(t, last, "trusted.overlay.opaque", "y")
	check := &StrayOverlayXattrCheck{Roots: []string{root}, Limits: walk.ScanLimits{Budget: 100000}}
	var found []finding.Finding
	for i := 0; i < 3; i++ {
		var err error
		found, err = runOne(check, s)
		if err != nil {
			t.Fatal(err)
		}
		st := check.Stats()
		if i < 2 && (st.Complete || st.BudgetExhausted != uint64(i+1) || st.Entries != uint64(100000*(i+1))) {
			t.Errorf("run %d: stats %+v", i, st)
		}
	}
	if st := check.Stats(); !st.Complete || st.Passes != 1 || st.Entries != uint64(total) {
		t.Errorf("after the pass: %+v", st)
	}
	if got := strayByPath(found); len(got) != 1 || got[last].Path != last {
		t.Errorf("findings %+v", found)
	}
	// The next run starts a new pass and still reports the finding.
	found, _ = runOne(check, s)
	if len(found) != 1 {
		t.Errorf("finding lost when a new pass started: %+v", found)
	}

	// --once: an incomplete pass is an error that names the budget.
	once := &StrayOverlayXattrCheck{Roots: []string{root}, Limits: walk.ScanLimits{Budget: 1000}, FullPass: true}
	if _, err := runOne(once, s); err == nil || !strings.Contains(err.Error(), "--scan.once-budget") {
		t.Errorf("incomplete --once pass: %v", err)
	}
}

// makeTree makes a directories of b directories of n files and returns the
// number of entries below root.
func makeTree(t testing.TB, root string, a, b, n int) int {
	t.Helper()
	count := 0
	for i := 0; i < a; i++ {
		for j := 0; j < b; j++ {
			d := filepath.Join(root, "d"+itoa(i), "d"+itoa(j))
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			for k := 0; k < n; k++ {
				f, err := os.Create(filepath.Join(d, "f"+itoa(k)))
				if err != nil {
					t.Fatal(err)
				}
				f.Close()
			}
			count += n + 1
		}
		count++
	}
	return count
}

func itoa(i int) string { return strconv.Itoa(i) }

// Two kubelet roots in the table and nothing to decide between them: the
// pod volumes under each are scanned, and a finding under the second root
// names its pod and volume (issue 30 item 2).
func TestStrayOverlayXattrTwoKubeletRoots(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	testenv.Tmpfs(t, dir)
	h, _ := kubeletVolume(t, dir)
	second := dir + "/k0s/kubelet"
	const other = "6c5d4e3f-2a1b-4c0d-9e8f-7a6b5c4d3e2f"
	vol := second + "/pods/" + other + "/volumes/kubernetes.io~empty-dir/build"
	mkfiles(t, vol, "layers/1/fs/etc/")
	setxattr(t, vol+"/layers/1/fs/etc", "trusted.overlay.opaque", "y")
	for _, d := range []string{h.KubeletRoot + "/pods/" + podUID + "/volumes/kubernetes.io~projected/token",
		second + "/pods/" + other + "/volumes/kubernetes.io~projected/token"} {
		mkfiles(t, d+"/")
		testenv.Tmpfs(t, d)
	}
	h.KubeletRoot = "" // found from the table: two candidates
	s := snapshotFor(t, h)
	if len(s.Layout.Kubelet.Candidates) < 2 {
		t.Fatalf("the table should show two kubelet roots: %+v", s.Layout.Kubelet)
	}
	found, err := runOne(&StrayOverlayXattrCheck{}, s)
	if err != nil {
		t.Fatal(err)
	}
	f, ok := strayByPath(found)[vol+"/layers/1/fs/etc"]
	if !ok || f.PodUID != other || f.Volume != "build" || f.Directory != vol {
		t.Fatalf("under the second root: %+v (all %+v)", f, found)
	}
}
