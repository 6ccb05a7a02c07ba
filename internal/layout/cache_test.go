package layout_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mountwatchd/mountwatchd/internal/layout"
)

// TestProcessCacheOwned: what the processes said is remembered by the
// cache that read it, for its run only. A kubelet restarted with another
// --root-dir is seen by a new run (a new cache) and by a caller without a
// cache at once, while the run that read it keeps its answer until the
// TTL. A package-wide cache would hand the new run the old answer.
func TestProcessCacheOwned(t *testing.T) {
	proc := t.TempDir()
	cmdline := func(root string) {
		if err := os.MkdirAll(filepath.Join(proc, "100"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(proc, "100", "stat"), []byte("100 (kubelet) S 1 100 100 0 -1 4194560"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(proc, "100", "cmdline"), []byte("/usr/bin/kubelet\x00--root-dir="+root+"\x00"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := layout.Procs{Procfs: proc, Path: func(s string) string { return s }}
	cmdline("/data/a")
	run := layout.NewProcessCache()
	if got := run.Read(p).KubeletRoot.Path; got != "/data/a" {
		t.Fatalf("first read: %q", got)
	}
	cmdline("/data/b")
	if got := run.Read(p).KubeletRoot.Path; got != "/data/a" {
		t.Errorf("the same run within the TTL: %q, want its first answer /data/a", got)
	}
	if got := layout.NewProcessCache().Read(p).KubeletRoot.Path; got != "/data/b" {
		t.Errorf("a new run: %q, want /data/b", got)
	}
	var none *layout.ProcessCache
	if got := none.Read(p).KubeletRoot.Path; got != "/data/b" {
		t.Errorf("no cache: %q, want /data/b", got)
	}
}
