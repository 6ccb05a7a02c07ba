package layout_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mountwatchd/mountwatchd/internal/layout"
)

// FuzzLayoutInputs feeds what a node hands the layout finder (a
// /proc/<pid>/stat line, a NUL-separated command line, a containerd
// config, mount points and layer paths of a table) to every parser: none
// panics, and what the path parsers return is a clean absolute prefix of
// the path they were given.
func FuzzLayoutInputs(f *testing.F) {
	files, _ := filepath.Glob("../mounts/testdata/*.mountinfo")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(string(b))
		}
	}
	f.Add("812 (kube) let) D 1 812")
	f.Add("kubelet\x00--root-dir\x00/data/kubelet\x00--root-dir=")
	f.Add("version = 2\nroot = \"/data/containerd\"\n[plugins]\n")
	f.Fuzz(func(t *testing.T, in string) {
		layout.ParseStat([]byte(in))
		layout.FlagValue(strings.Split(in, "\x00"), "--root-dir")
		layout.ContainerdConfigRoot([]byte(in))
		for _, field := range strings.Fields(in) {
			if r, ok := layout.KubeletRootOf(field); ok && (r == "/" || !strings.HasPrefix(field, r+"/") || filepath.Clean(r) != r) {
				t.Fatalf("KubeletRootOf(%q) = %q", field, r)
			}
			for _, l := range strings.Split(field, ":") {
				if d, ok := layout.SnapshotsDirOf(l); ok && !strings.HasPrefix(filepath.Clean(l), d+"/") {
					t.Fatalf("SnapshotsDirOf(%q) = %q", l, d)
				}
			}
		}
	})
}
