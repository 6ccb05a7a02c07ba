package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/common/version"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

func TestFillVersion(t *testing.T) {
	save := [3]string{version.Version, version.Revision, version.BuildDate}
	t.Cleanup(func() { version.Version, version.Revision, version.BuildDate = save[0], save[1], save[2] })
	vcs := []debug.BuildSetting{{Key: "vcs.revision", Value: "0123abc"}, {Key: "vcs.time", Value: "2026-11-23T08:00:00Z"},
		{Key: "vcs.modified", Value: "true"}}
	for _, tc := range []struct {
		name                string
		set                 [3]string // what -ldflags -X set
		main                string
		settings            []debug.BuildSetting
		ok                  bool
		wantV, wantR, wantD string
	}{
		{"go install @v0.1.0", [3]string{}, "v0.1.0", nil, true, "v0.1.0", "", ""},
		{"go build in a checkout", [3]string{}, "(devel)", vcs, true, "dev", "0123abc-modified", "2026-11-23T08:00:00Z"},
		{"make: ldflags win", [3]string{"v1.2.3", "fff", "20261123"}, "v0.1.0", vcs, true, "v1.2.3", "fff", "20261123"},
		{"no build info", [3]string{}, "", nil, false, "dev", "", ""},
	} {
		version.Version, version.Revision, version.BuildDate = tc.set[0], tc.set[1], tc.set[2]
		fillVersion(&debug.BuildInfo{Main: debug.Module{Path: "github.com/mountwatchd/mountwatchd", Version: tc.main}, Settings: tc.settings}, tc.ok)
		if version.Version != tc.wantV || version.Revision != tc.wantR || version.BuildDate != tc.wantD {
			t.Errorf("%s: version %q revision %q date %q, want %q %q %q", tc.name,
				version.Version, version.Revision, version.BuildDate, tc.wantV, tc.wantR, tc.wantD)
		}
	}
}

// A plain `go build` in the git checkout (no ldflags) prints the version Go
// derives from the repository (a pseudo-version, or the tag) and the commit
// it was built from.
func TestPlainBuildVersion(t *testing.T) {
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	testenv.Require(t, err == nil, "a git checkout: %v", err)
	// Go stamps VCS information only where .git is a directory: not in a
	// `git worktree`, whose .git is a file (CI runs in a clone).
	fi, err := os.Stat("../../.git")
	testenv.Require(t, err == nil && fi.IsDir(), "../../.git is a directory (Go does not stamp builds in a git worktree)")
	bin := filepath.Join(t.TempDir(), "mountwatchd")
	cmd := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("--version: %v\n%s", err, out)
	}
	first := strings.SplitN(string(out), "\n", 2)[0]
	if !strings.HasPrefix(first, "mountwatchd, version v") || !strings.Contains(first, "revision: "+strings.TrimSpace(string(head))) ||
		strings.Contains(string(out), "build date:       \n") {
		t.Errorf("--version of a plain go build:\n%s", out)
	}
}

// --install-to copies the running program (node-problem-detector's init
// container runs it): the copy is executable and is the same program.
func TestInstallTo(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "mountwatchd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	if out, err := exec.Command(bin, "--install-to", dir).CombinedOutput(); err != nil || len(out) != 0 {
		t.Fatalf("--install-to: %v\n%s", err, out)
	}
	want, _ := os.ReadFile(bin)
	got, err := os.ReadFile(filepath.Join(dir, "mountwatchd"))
	if err != nil || string(got) != string(want) {
		t.Fatalf("the copy differs from the binary (%d bytes, want %d): %v", len(got), len(want), err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "mountwatchd")); fi.Mode().Perm() != 0o755 {
		t.Errorf("mode %v, want 0755", fi.Mode())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d entries left in the directory, want 1", len(ents))
	}
	if r := mountwatchd(t, "--install-to", filepath.Join(dir, "missing")); r.code != 2 || !strings.Contains(r.stderr, "--install-to") {
		t.Errorf("--install-to a missing directory: exit %d, %q", r.code, r.stderr)
	}
}
