package check

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// mkfile creates the files (and their directories) below dir.
func mkfiles(t testing.TB, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		p := filepath.Join(dir, n)
		if strings.HasSuffix(n, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func setxattr(t testing.TB, p, name, value string) {
	t.Helper()
	if err := unix.Lsetxattr(p, name, []byte(value), 0); err != nil {
		t.Fatalf("setxattr %s %s: %v", p, name, err)
	}
}

// overlay mounts an overlay on target with the given options and unmounts
// it when the test ends.
func overlay(t testing.TB, target, opts string) {
	t.Helper()
	testenv.Mount(t, "overlay", target, "overlay", 0, opts)
}

// propagationChain builds the brief's F5 shape for real under dir: layer A
// has func/min; layer B's func is made opaque through an overlay mount (rm
// -rf, mkdir, touch max) as a layer replacing the directory would be; layer
// C has func, carrying the opaque marker as the copy-up bug left it when
// propagate. It returns the layer directories C, B, A.
func propagationChain(t *testing.T, dir string, userxattr, propagate bool) (c, b, a string) {
	t.Helper()
	a, b, c = dir+"/A", dir+"/B", dir+"/C"
	mkfiles(t, dir, "A/func/min", "B/", "C/func/", "W/", "build/")
	opts := "lowerdir=" + a + ",upperdir=" + b + ",workdir=" + dir + "/W"
	prefix := "trusted.overlay."
	if userxattr {
		opts += ",userxattr"
		prefix = "user.overlay."
	}
	if err := syscall.Mount("overlay", dir+"/build", "overlay", 0, opts); err != nil {
		t.Fatalf("mount overlay %s: %v", opts, err)
	}
	if err := os.RemoveAll(dir + "/build/func"); err != nil {
		t.Fatal(err)
	}
	mkfiles(t, dir+"/build", "func/max")
	if err := syscall.Unmount(dir+"/build", 0); err != nil {
		t.Fatal(err)
	}
	if v := getxattr(t, b+"/func", prefix+"opaque"); v != "y" {
		t.Fatalf("the overlay did not make B/func opaque: %s=%q", prefix+"opaque", v)
	}
	if propagate {
		setxattr(t, c+"/func", prefix+"opaque", "y")
	}
	return c, b, a
}

func getxattr(t testing.TB, p, name string) string {
	t.Helper()
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

func findingsAt(fs []finding.Finding, check finding.ID, mountpoint string) []finding.Finding {
	var out []finding.Finding
	for _, f := range fs {
		if f.Check == check && f.MountPoint == mountpoint {
			out = append(out, f)
		}
	}
	return out
}

func TestOpaquePropagationReal(t *testing.T) {
	testenv.RequireRoot(t)
	for _, tc := range []struct {
		name                 string
		userxattr, propagate bool
	}{
		{"trusted", false, true},
		{"trusted-no-propagation", false, false},
		{"userxattr", true, true},
		{"userxattr-no-propagation", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			testenv.Tmpfs(t, dir)
			c, b, a := propagationChain(t, dir, tc.userxattr, tc.propagate)
			opts := "lowerdir=" + c + ":" + b + ":" + a
			if tc.userxattr {
				opts += ",userxattr"
			}
			overlay(t, dir+"/merged", opts)
			ents, err := os.ReadDir(dir + "/merged/func")
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{true: 0, false: 1}[tc.propagate]; len(ents) != want {
				t.Fatalf("merged/func has %d entries, want %d: %v", len(ents), want, ents)
			}

			check := &OpaquePropagationCheck{}
			found, err := runOne(check, liveSnapshot(t, mounts.Host{}))
			if err != nil {
				t.Fatalf("check error: %v", err)
			}
			got := findingsAt(found, OpaquePropagation, dir+"/merged")
			if !tc.propagate {
				if len(got) != 0 {
					t.Fatalf("a single opaque directory was reported: %+v", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("got %d findings, want 1: %+v", len(got), found)
			}
			f := got[0]
			prefix := map[bool]string{false: "trusted.overlay.", true: "user.overlay."}[tc.userxattr]
			want := map[string]string{"directory": "/func", "upper_layer": c, "lower_layer": b, "hidden_entries": "1",
				"upper_role": "lower", "layer_index": "0", "opaque_layers": "2", "xattr": prefix + "opaque"}
			for k, v := range want {
				if f.Details[k] != v {
					t.Errorf("details[%s] = %q, want %q (all: %v)", k, f.Details[k], v, f.Details)
				}
			}
			// Hand-made layers are no containerd snapshots: the marker
			// cannot be verified against an image layer, so a warning.
			if f.Severity != finding.Warning || f.Path != "/func" || f.FSType != "overlay" || f.Details["verification"] != "unverified" {
				t.Errorf("finding %+v", f)
			}
			st := check.Stats()
			if st.Passes != 1 || !st.Complete || st.Entries == 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}
