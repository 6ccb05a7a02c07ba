package walk

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// TestMain runs the package's tests as root in a private mount namespace:
// they mount tmpfs and bindfs for real.
func TestMain(m *testing.M) { testenv.Main(m) }

func snapshot(t *testing.T) *mounts.Snapshot {
	t.Helper()
	s, err := mounts.RereadSnapshot(mounts.Host{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pass runs w over roots once (Begin, Run, End) and returns the paths
// visited.
func pass(t *testing.T, w *Walker, s *mounts.Snapshot, roots []Root) (visited []string, completed bool, rootErrs []error) {
	t.Helper()
	root, err := s.Host.OpenRoot()
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := w.Begin(context.Background(), s, root); err != nil {
		t.Fatal(err)
	}
	defer w.End()
	var mu sync.Mutex // the visitor of a walk with Workers > 1 runs in each worker
	completed, rootErrs, err = w.Run(func() []Root { return roots },
		func(e *Entry) bool { mu.Lock(); visited = append(visited, e.Path); mu.Unlock(); return true })
	if err != nil {
		t.Fatal(err)
	}
	return visited, completed, rootErrs
}

func mkfiles(t *testing.T, dir string, n int) []string {
	t.Helper()
	var out []string
	for i := range n {
		d := filepath.Join(dir, fmt.Sprintf("d%d", i%4))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(d, fmt.Sprintf("f%d", i))
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	for i := range min(n, 4) {
		out = append(out, filepath.Join(dir, fmt.Sprintf("d%d", i)))
	}
	slices.Sort(out)
	return out
}

// A pass cut by the budget resumes where it stopped: over several runs
// every entry is visited exactly once, the budget is counted, and the pass
// completes once.
func TestWalkerResumesAtBudget(t *testing.T) {
	dir := t.TempDir()
	want := mkfiles(t, dir, 40)
	s := snapshot(t)
	w := &Walker{Limits: ScanLimits{Budget: 7}}
	var all []string
	runs := 0
	for done := false; !done; runs++ {
		if runs > 20 {
			t.Fatal("no complete pass in 20 runs")
		}
		var got []string
		got, done, _ = pass(t, w, s, []Root{{Path: dir}})
		if len(got) > 7 {
			t.Fatalf("run %d visited %d entries, budget 7", runs, len(got))
		}
		all = append(all, got...)
	}
	slices.Sort(all)
	if !slices.Equal(all, want) {
		t.Errorf("visited %v\nwant    %v", all, want)
	}
	if w.Stats.Passes != 1 || !w.Stats.Complete || w.Stats.BudgetExhausted != uint64(runs-1) || w.Stats.Entries != uint64(len(want)) {
		t.Errorf("stats %+v after %d runs over %d entries", w.Stats, runs, len(want))
	}
}

// The walk never follows a symlink (one to / and one to a directory outside
// are entries, not trees), and a root given with a symlink in its path is
// refused with a message that says so.
func TestWalkerFollowsNoSymlink(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	mkfiles(t, outside, 3)
	if err := os.MkdirAll(dir+"/tree", 0o755); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"root": "/", "out": outside, "loop": "loop"} {
		if err := os.Symlink(target, dir+"/tree/"+name); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(dir+"/tree", dir+"/link"); err != nil {
		t.Fatal(err)
	}
	s := snapshot(t)
	got, done, rerrs := pass(t, &Walker{}, s, []Root{{Path: dir + "/tree"}, {Path: dir + "/link"}})
	slices.Sort(got)
	want := []string{dir + "/tree/loop", dir + "/tree/out", dir + "/tree/root"}
	if !done || !slices.Equal(got, want) {
		t.Errorf("visited %v, want only the links themselves %v", got, want)
	}
	var re *RootError
	if len(rerrs) != 1 || !errors.As(rerrs[0], &re) || re.Index != 1 || !strings.Contains(re.Error(), "is a symlink") {
		t.Errorf("root through a symlink: %v", rerrs)
	}
}

// Roots below a Base are walked as without it, in every worker: one on
// another mount (the open from the base would cross it) is opened from the
// top and walked, one made after the snapshot is not entered, and one
// reached through a symlink is refused as before.
func TestWalkerRootsBelowABase(t *testing.T) {
	for _, workers := range []int{1, 2} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			pods := t.TempDir()
			var want []string
			for _, uid := range []string{"a", "c", "d"} {
				want = append(want, mkfiles(t, pods+"/"+uid+"/volumes", 2)...)
			}
			want = slices.DeleteFunc(want, func(p string) bool { return strings.HasPrefix(p, pods+"/c/") })
			if err := os.MkdirAll(pods+"/b/volumes", 0o755); err != nil {
				t.Fatal(err)
			}
			testenv.Tmpfs(t, pods+"/b/volumes")
			want = append(want, mkfiles(t, pods+"/b/volumes", 3)...)
			s := snapshot(t)
			testenv.Tmpfs(t, pods+"/c/volumes") // after the snapshot
			if err := os.Symlink(pods+"/a", pods+"/e"); err != nil {
				t.Fatal(err)
			}
			var roots []Root
			for _, uid := range []string{"a", "b", "c", "d", "e"} {
				roots = append(roots, Root{Path: pods + "/" + uid + "/volumes", Base: pods})
			}
			w := &Walker{}
			w.Limits.Workers = workers
			got, done, rerrs := pass(t, w, s, roots)
			slices.Sort(got)
			slices.Sort(want)
			if !done || !slices.Equal(got, want) {
				t.Errorf("visited\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			var c, e *RootError
			if len(rerrs) != 2 || !errors.As(rerrs[0], &c) || c.Index != 2 || !strings.Contains(c.Error(), "not in the mount table") ||
				!errors.As(rerrs[1], &e) || e.Index != 4 || !strings.Contains(e.Error(), "symlink") {
				t.Errorf("root errors %v, want the root mounted after the snapshot and the one through a symlink", rerrs)
			}
		})
	}
}

// A mount the snapshot does not know (made after it was taken) is not
// entered; one it knows, local and inside the tree, is.
func TestWalkerEntersOnlyKnownLocalMounts(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"known", "later"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Tmpfs(t, dir+"/known")
	mkfiles(t, dir+"/known", 1)
	s := snapshot(t)
	testenv.Tmpfs(t, dir+"/later")
	mkfiles(t, dir+"/later", 1)
	w := &Walker{}
	got, _, _ := pass(t, w, s, []Root{{Path: dir}})
	joined := strings.Join(got, "\n")
	if !strings.Contains(joined, dir+"/known/d0/f0") {
		t.Errorf("did not enter a local mount the snapshot knows: %v", got)
	}
	if strings.Contains(joined, dir+"/later/") {
		t.Errorf("entered a mount made after the snapshot: %v", got)
	}
	if w.SkippedMounts == 0 {
		t.Error("the skipped mount is not counted")
	}
}

// A FUSE mount is never entered, and a root on one is not walked: its
// server could hang the walk.
func TestWalkerNeverEntersFUSE(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(dir+"/src", 0o755); err != nil {
		t.Fatal(err)
	}
	mkfiles(t, dir+"/src", 2)
	testenv.Bindfs(t, dir+"/src", dir+"/tree/fuse")
	s := snapshot(t)
	got, _, rerrs := pass(t, &Walker{}, s, []Root{{Path: dir + "/tree"}, {Path: dir + "/tree/fuse"}})
	if !slices.Equal(got, []string{dir + "/tree/fuse"}) {
		t.Errorf("visited %v, want only the FUSE mount point", got)
	}
	if len(rerrs) != 1 || !errors.Is(rerrs[0], ErrNotScannable) {
		t.Errorf("root on FUSE: %v, want ErrNotScannable", rerrs)
	}
}

// Directories below MaxDepth are not entered, and a full pass says so.
func TestWalkerDepthLimit(t *testing.T) {
	dir := t.TempDir()
	deep := dir + "/a/b/c/d"
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	w := &Walker{Limits: ScanLimits{MaxDepth: 2}}
	got, _, _ := pass(t, w, snapshot(t), []Root{{Path: dir}})
	if slices.Contains(got, deep) {
		t.Errorf("visited %s below the depth limit: %v", deep, got)
	}
	if err := w.TooDeepErr(); !errors.Is(err, ErrScanIncomplete) {
		t.Errorf("TooDeepErr = %v", err)
	}
}

// OpenRel stays below its root: ".." is refused, and a component that is
// another mount is not scannable.
func TestOpenRelStaysInTree(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(dir+"/a/m", 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Tmpfs(t, dir+"/a/m")
	s := snapshot(t)
	root, err := s.Host.OpenRoot()
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	w := &Walker{}
	if err := w.Begin(context.Background(), s, root); err != nil {
		t.Fatal(err)
	}
	defer w.End()
	r := Root{Path: dir + "/a"}
	if _, err := w.OpenRel(r, "../a"); err == nil || !strings.Contains(err.Error(), "leaves the directory") {
		t.Errorf(`OpenRel("../a") = %v`, err)
	}
	if _, err := w.OpenRel(r, "m"); !errors.Is(err, ErrNotScannable) {
		t.Errorf(`OpenRel into another mount = %v`, err)
	}
	fd, err := w.OpenRel(Root{Path: dir}, "a")
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ents, err := ReadDir(fd, 10)
	if err != nil || len(ents) != 1 || ents[0].Name != "m" || ents[0].Typ != unix.DT_DIR {
		t.Errorf("ReadDir = %+v, %v", ents, err)
	}
}

// parseDirent reads a record from its bytes, and refuses one that is cut
// short or whose length is wrong instead of reading past it.
func TestParseDirent(t *testing.T) {
	rec := func(off int64, typ uint8, name string) []byte {
		n := (direntNameOff + len(name) + 1 + 7) &^ 7 // NUL, 8-byte aligned, as the kernel pads
		b := make([]byte, n)
		binary.NativeEndian.PutUint64(b[direntOffOff:], uint64(off))
		binary.NativeEndian.PutUint16(b[direntReclenOff:], uint16(n))
		b[direntTypeOff] = typ
		copy(b[direntNameOff:], name)
		return b
	}
	buf := append(rec(7, unix.DT_DIR, "volumes"), rec(9, unix.DT_REG, "a-longer-file-name")...)
	d, ok := parseDirent(buf)
	if !ok || string(d.name) != "volumes" || d.typ != unix.DT_DIR || d.off != 7 {
		t.Fatalf("first record: %+v %v", d, ok)
	}
	if d, ok = parseDirent(buf[d.reclen:]); !ok || string(d.name) != "a-longer-file-name" || d.typ != unix.DT_REG || d.off != 9 {
		t.Fatalf("second record: %+v %v", d, ok)
	}
	for name, b := range map[string][]byte{
		"empty":           nil,
		"header cut":      buf[:10],
		"record cut":      buf[:20],
		"reclen 0":        append(append([]byte{}, buf[:16]...), 0, 0, 4, 'x', 0),
		"reclen too long": append(append([]byte{}, buf[:16]...), 0xff, 0x7f, 4, 'x', 0),
	} {
		if d, ok := parseDirent(b); ok {
			t.Errorf("%s: parsed %+v", name, d)
		}
	}
}
