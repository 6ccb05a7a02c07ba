package check

import (
	"io/fs"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// scanTree is a generated tree on a fresh tmpfs: 20 x 20 directories of 50
// files, 20,420 entries, every 100th file carrying a user xattr.
func scanTree(b *testing.B) (string, int) {
	b.Helper()
	testenv.RequireRoot(b)
	dir := b.TempDir()
	testenv.Tmpfs(b, dir)
	n := makeTree(b, dir+"/tree", 20, 20, 50)
	for i := 0; i < 20; i++ {
		for j := 0; j < 20; j += 2 {
			p := dir + "/tree/d" + itoa(i) + "/d" + itoa(j) + "/f7"
			if err := unix.Lsetxattr(p, "user.note", []byte("x"), 0); err != nil {
				b.Fatal(err)
			}
		}
	}
	return dir + "/tree", n
}

func reportEntries(b *testing.B, n int) {
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkScanStray is one full stray_overlay_xattr pass over the tree:
// safe walk (openat O_NOFOLLOW, mount-id checks per directory) and a statx
// plus listxattrat per entry.
func BenchmarkScanStray(b *testing.B) {
	root, n := scanTree(b)
	s := snapshotFor(b, mounts.Host{KubeletRoot: "/nonexistent"})
	c := &StrayOverlayXattrCheck{Roots: []string{root}}
	for b.Loop() {
		if _, err := runOne(c, s); err != nil {
			b.Fatal(err)
		}
	}
	if c.Stats().Entries != uint64(n)*uint64(c.Stats().Passes) {
		b.Fatalf("stats %+v, %d entries per pass", c.Stats(), n)
	}
	reportEntries(b, n)
}

// Baseline: filepath.WalkDir and llistxattr by path on the same tree, the
// naive walk that resolves every path from the root.
func BenchmarkScanBaselineWalkDir(b *testing.B) {
	root, n := scanTree(b)
	buf := make([]byte, 64<<10)
	for b.Loop() {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			_, _ = unix.Llistxattr(p, buf)
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	reportEntries(b, n)
}

// Baseline: getfattr -R on the same tree (what an operator would run).
func BenchmarkScanBaselineGetfattr(b *testing.B) {
	bin := testenv.RequireCommand(b, "getfattr", "attr")
	root, n := scanTree(b)
	for b.Loop() {
		if out, err := exec.Command(bin, "-R", "-d", "-m", "-", "--absolute-names", root).CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
	}
	reportEntries(b, n)
}
