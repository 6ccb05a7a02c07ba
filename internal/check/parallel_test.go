package check

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
	"github.com/mountwatchd/mountwatchd/internal/walk"
)

// parallelNode is 40 pods' volume directories on tmpfs, each with files,
// symlinks out of the tree and, in some, stray overlay xattrs; pod 3's
// volume holds a FUSE mount the snapshot knows, pod 5's one mounted after
// the snapshot, both with their servers stopped, and pod 7's a tmpfs mounted
// after the snapshot.
func parallelNode(t *testing.T) (*mounts.Snapshot, mounts.Host, string) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "bindfs", "bindfs")
	dir := t.TempDir()
	testenv.Tmpfs(t, dir)
	kubelet := dir + "/kubelet"
	mkfiles(t, dir, "outside/secret/", "fuse-src/inner/", "fuse-src2/inner/")
	setxattr(t, dir+"/outside/secret", "trusted.overlay.opaque", "y")
	setxattr(t, dir+"/fuse-src/inner", "user.overlay.opaque", "y")
	setxattr(t, dir+"/fuse-src2/inner", "user.overlay.opaque", "y")
	vol := func(i int) string {
		return fmt.Sprintf("%s/pods/%08d-0000-4000-8000-000000000000/volumes/kubernetes.io~empty-dir/v", kubelet, i)
	}
	for i := range 40 {
		v := vol(i)
		mkfiles(t, v, "a/b/c/file", "a/d/", "e", "f/g/")
		if i%4 == 0 {
			setxattr(t, v+"/a/b", "trusted.overlay.opaque", "y")
		}
		if i%6 == 1 {
			setxattr(t, v+"/f/g", "user.overlay.redirect", "/x")
		}
		for name, target := range map[string]string{"to-root": "/", "to-outside": dir + "/outside", "up": "../../../../../../.."} {
			if err := os.Symlink(target, v+"/"+name); err != nil {
				t.Fatal(err)
			}
		}
	}
	srv := testenv.Bindfs(t, dir+"/fuse-src", vol(3)+"/fuse", "subtype=ceph-fuse")
	h := mounts.Host{KubeletRoot: kubelet, PodLogDir: dir + "/nologs"}
	s := snapshotFor(t, h)
	srv2 := testenv.Bindfs(t, dir+"/fuse-src2", vol(5)+"/late-fuse")
	mkfiles(t, vol(7), "late-tmpfs/")
	testenv.Tmpfs(t, vol(7)+"/late-tmpfs")
	mkfiles(t, vol(7), "late-tmpfs/hidden/")
	setxattr(t, vol(7)+"/late-tmpfs/hidden", "trusted.overlay.opaque", "y")
	for _, p := range []*os.Process{srv, srv2} {
		if err := p.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Signal(syscall.SIGCONT) })
	}
	return s, h, kubelet
}

type walkResult struct {
	visited []string
	w       *walk.Walker
	done    bool
	err     error
}

// walkOnce runs one pass of w over roots with a visitor that may be called
// from several goroutines, bounded to 30 s (a walk that touched a stopped
// FUSE server would not return).
func walkOnce(t *testing.T, w *walk.Walker, s *mounts.Snapshot, roots []walk.Root) walkResult {
	t.Helper()
	res := make(chan walkResult, 1)
	go func() {
		var mu sync.Mutex
		var visited []string
		root, err := s.Host.OpenRoot()
		if err != nil {
			res <- walkResult{err: err}
			return
		}
		defer root.Close()
		if err := w.Begin(context.Background(), s, root); err != nil {
			res <- walkResult{err: err}
			return
		}
		done, rerrs, err := w.Run(func() []walk.Root { return roots }, func(e *walk.Entry) bool {
			_, _ = e.ListXattrs() // through the guard, as the checks do
			mu.Lock()
			visited = append(visited, e.Path)
			mu.Unlock()
			return true
		})
		w.End()
		res <- walkResult{visited: visited, w: w, done: done, err: errors.Join(append(rerrs, err)...)}
	}()
	select {
	case r := <-res:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("the walk did not return within 30s: it touched a stopped FUSE server")
		return walkResult{}
	}
}

func podRoots(t *testing.T, kubelet string) []walk.Root {
	t.Helper()
	ents, err := os.ReadDir(kubelet + "/pods")
	if err != nil {
		t.Fatal(err)
	}
	var roots []walk.Root
	for _, e := range ents {
		roots = append(roots, walk.Root{Path: kubelet + "/pods/" + e.Name() + "/volumes"})
	}
	return roots
}

// A pass on four workers visits exactly what a pass on one does: every
// entry once, nothing through a symlink, nothing inside the FUSE mounts
// (known or late, servers stopped) or the late tmpfs, the same counts.
func TestWalkerParallelSameAsSequential(t *testing.T) {
	s, _, kubelet := parallelNode(t)
	roots := podRoots(t, kubelet)
	seq := walkOnce(t, &walk.Walker{}, s, roots)
	par := walkOnce(t, &walk.Walker{Limits: walk.ScanLimits{Workers: 4}}, s, roots)
	for name, r := range map[string]walkResult{"one worker": seq, "four workers": par} {
		if r.err != nil || !r.done {
			t.Fatalf("%s: done %v, %v", name, r.done, r.err)
		}
		for _, p := range r.visited {
			if strings.Contains(p, "/fuse/") || strings.Contains(p, "/late-fuse/") || strings.Contains(p, "/late-tmpfs/") ||
				strings.Contains(p, "/outside") || !strings.HasPrefix(p, kubelet+"/pods/") {
				t.Errorf("%s: visited %s", name, p)
			}
		}
		if r.w.SkippedMounts < 3 {
			t.Errorf("%s: skipped %d mounts, want at least 3 (the known FUSE, the late FUSE, the late tmpfs)", name, r.w.SkippedMounts)
		}
	}
	slices.Sort(seq.visited)
	slices.Sort(par.visited)
	if !slices.Equal(seq.visited, par.visited) {
		t.Errorf("four workers visited %d entries, one worker %d: not the same set", len(par.visited), len(seq.visited))
	}
	if len(slices.Compact(slices.Clone(par.visited))) != len(par.visited) {
		t.Error("four workers visited an entry twice")
	}
	if seq.w.Stats != par.w.Stats || seq.w.SkippedMounts != par.w.SkippedMounts || seq.w.Done != par.w.Done {
		t.Errorf("stats: one worker %+v (skipped %d, done %d), four %+v (skipped %d, done %d)",
			seq.w.Stats, seq.w.SkippedMounts, seq.w.Done, par.w.Stats, par.w.SkippedMounts, par.w.Done)
	}

	// The check on four workers finds what it finds on one: 10 opaque and
	// 7 redirect markers, nothing from outside, the FUSE or the late tmpfs.
	run := func(workers int) []finding.Finding {
		c := &StrayOverlayXattrCheck{Limits: walk.ScanLimits{Workers: workers}, FullPass: true}
		f, err := runOne(c, s)
		if err != nil {
			t.Fatalf("%d workers: %v", workers, err)
		}
		return f
	}
	one, four := strayByPath(run(1)), strayByPath(run(4))
	if len(one) != 17 || len(four) != len(one) {
		t.Fatalf("findings: %d with one worker, %d with four, want 17", len(one), len(four))
	}
	for p, f := range one {
		if g, ok := four[p]; !ok || g.Details["xattrs"] != f.Details["xattrs"] || g.PodUID != f.PodUID {
			t.Errorf("%s: one worker %+v, four %+v", p, f, g)
		}
	}
}

// The budget bounds the workers together: a pass of four workers over more
// entries than its budget examines exactly the budget, reports it exhausted,
// and --once's check says the pass is incomplete; the next run starts the
// pass again.
func TestWalkerParallelBudget(t *testing.T) {
	s, _, kubelet := parallelNode(t)
	roots := podRoots(t, kubelet)
	full := walkOnce(t, &walk.Walker{}, s, roots)
	budget := len(full.visited) / 3
	w := &walk.Walker{Limits: walk.ScanLimits{Workers: 4, Budget: budget}}
	r := walkOnce(t, w, s, roots)
	if r.err != nil || r.done {
		t.Fatalf("budget %d of %d entries: done %v, %v", budget, len(full.visited), r.done, r.err)
	}
	if len(r.visited) != budget || w.Done != budget || w.Stats.Entries != uint64(budget) || w.Stats.BudgetExhausted != 1 || w.Stats.Complete {
		t.Errorf("visited %d, done %d, stats %+v; want %d entries, one budget stop", len(r.visited), w.Done, w.Stats, budget)
	}
	if w.InPass {
		t.Error("a stopped parallel pass is left to resume")
	}
	w.Limits.Budget = 0
	if r := walkOnce(t, w, s, roots); !r.done || len(r.visited) != len(full.visited) {
		t.Errorf("the next run: done %v, %d entries, want the whole pass of %d", r.done, len(r.visited), len(full.visited))
	}

	c := &StrayOverlayXattrCheck{Limits: walk.ScanLimits{Workers: 4, Budget: budget}, FullPass: true}
	if _, err := runOne(c, s); !errors.Is(err, walk.ErrScanIncomplete) {
		t.Errorf("--once pass over its budget on four workers: %v, want ErrScanIncomplete", err)
	}
}
