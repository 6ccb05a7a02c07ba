package packaging

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// testRPMVersion is testVersion as make rpm maps it: the same as the .deb's.
const testRPMVersion = testDebVersion

// buildRPM runs `make rpm` into a fresh directory and returns the .rpm.
func buildRPM(t *testing.T) string {
	t.Helper()
	nfpm := goTool(t, "nfpm", "github.com/goreleaser/nfpm/v2", "NFPM_VERSION")
	testenv.RequireCommand(t, "make", "make")
	dir := t.TempDir()
	out, err := exec.Command("make", "--no-print-directory", "-C", top, "rpm", "RPMDIR="+dir, "VERSION="+testVersion, "NFPM="+nfpm).CombinedOutput()
	if err != nil {
		t.Fatalf("make rpm: %v\n%s", err, out)
	}
	rpms, _ := filepath.Glob(filepath.Join(dir, "*.rpm"))
	if len(rpms) != 1 {
		t.Fatalf("make rpm wrote %v, want one .rpm\n%s", rpms, out)
	}
	return rpms[0]
}

func rpmArch(t *testing.T) string {
	goarch := strings.TrimSpace(testenv.Run(t, "go", "env", "GOARCH"))
	return map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[goarch]
}

// The RPM, inspected with Debian's rpm (rpm -qpi, -qpl and the file flags),
// and installed, verified and erased with rpm into a directory of its own.
func TestRPMPackage(t *testing.T) {
	rpmBin := testenv.RequireCommand(t, "rpm", "rpm")
	pkg := buildRPM(t)
	arch := rpmArch(t)
	if want := fmt.Sprintf("mountwatchd-%s-1.%s.rpm", testRPMVersion, arch); filepath.Base(pkg) != want {
		t.Errorf("package file %s, want %s", filepath.Base(pkg), want)
	}
	// A database of the test's own: Debian's rpm would create ~/.rpmdb.
	db := t.TempDir()
	q := func(args ...string) string {
		t.Helper()
		return testenv.Run(t, rpmBin, append([]string{"--dbpath", db, "-qp"}, append(args, pkg)...)...)
	}

	info := map[string]string{}
	for _, l := range strings.Split(q("-i"), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && !strings.HasPrefix(l, " ") {
			info[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	for k, want := range map[string]string{"Name": "mountwatchd", "Version": testRPMVersion, "Release": "1",
		"Architecture": arch, "License": "Apache-2.0", "URL": "https://github.com/mountwatchd/mountwatchd"} {
		if info[k] != want {
			t.Errorf("rpm -qpi %s: %q, want %q", k, info[k], want)
		}
	}

	files := strings.Fields(q("-l"))
	want := []string{"/etc/default/mountwatchd", "/usr/bin/mountwatchd", "/usr/lib/systemd/system/mountwatchd.service",
		"/usr/libexec/mountwatchd/mountwatchd-kube",
		"/usr/share/doc/mountwatchd/README.md", "/usr/share/doc/mountwatchd/README.systemd.md",
		"/usr/share/licenses/mountwatchd/LICENSE", "/usr/share/mountwatchd/npd-custom-plugin.json"}
	if !slices.Equal(files, want) {
		t.Errorf("rpm -qpl:\n%s\nwant:\n%s", strings.Join(files, "\n"), strings.Join(want, "\n"))
	}
	// File flags: c config, n noreplace, l license, d doc; and modes.
	flags := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(q("--qf", "[%{FILENAMES} %{FILEFLAGS:fflags} %{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME}\n]")), "\n") {
		f := strings.Fields(l)
		if len(f) == 3 { // no flags
			f = []string{f[0], "", f[1], f[2]}
		}
		flags[f[0]] = strings.Join(f[1:], " ")
	}
	for path, want := range map[string]string{
		"/etc/default/mountwatchd":                  "cn -rw-r--r-- root:root",
		"/usr/bin/mountwatchd":                      " -rwxr-xr-x root:root",
		"/usr/libexec/mountwatchd/mountwatchd-kube": " -rwxr-xr-x root:root",
		"/usr/share/licenses/mountwatchd/LICENSE":   "l -rw-r--r-- root:root",
		"/usr/share/doc/mountwatchd/README.md":      "d -rw-r--r-- root:root",
	} {
		if flags[path] != want {
			t.Errorf("%s: flags, mode, owner %q, want %q", path, flags[path], want)
		}
	}
	// Static: nothing required but the shell that runs the scriptlets and
	// rpm's own features.
	for _, r := range strings.Fields(q("--requires")) {
		if !strings.HasPrefix(r, "rpmlib(") && r != "/bin/sh" {
			t.Errorf("requires %q", r)
		}
	}
	scripts := q("--scripts")
	for _, s := range []string{"systemctl --no-reload preset mountwatchd.service", "systemctl --no-reload disable --now mountwatchd.service",
		"systemctl try-restart mountwatchd.service"} {
		if !strings.Contains(scripts, s) {
			t.Errorf("the scriptlets lack %q:\n%s", s, scripts)
		}
	}

	t.Run("install", func(t *testing.T) { testRPMInstall(t, rpmBin, pkg) })
}

// testRPMInstall installs the package with rpm into a root directory of its
// own with its own database (--root), verifies it (rpm -V), edits the
// conffile and erases the package: the edited conffile is kept as
// .rpmsave, everything else goes. The scriptlets need a shell in that root
// and a running systemd, so they are not run here (--noscripts); their text
// is checked above.
func testRPMInstall(t *testing.T, rpmBin, pkg string) {
	testenv.RequireRoot(t)
	root := t.TempDir()
	r := func(args ...string) string {
		t.Helper()
		return testenv.Run(t, rpmBin, append([]string{"--root", root}, args...)...)
	}
	r("--initdb")
	r("-i", "--nodeps", "--noscripts", pkg)
	if got := strings.TrimSpace(r("-q", "mountwatchd")); got != fmt.Sprintf("mountwatchd-%s-1.%s", testRPMVersion, rpmArch(t)) {
		t.Errorf("rpm -q after install: %q", got)
	}
	if out, err := exec.Command(rpmBin, "--root", root, "-V", "mountwatchd").CombinedOutput(); err != nil || len(out) != 0 {
		t.Errorf("rpm -V: %v\n%s", err, out)
	}
	// What it installed: the repository's unit, license and defaults, and
	// a static binary of this version.
	for got, src := range map[string]string{"usr/lib/systemd/system/mountwatchd.service": "systemd/mountwatchd.service",
		"usr/share/licenses/mountwatchd/LICENSE": "LICENSE", "etc/default/mountwatchd": "packaging/deb/mountwatchd.default"} {
		a, err1 := os.ReadFile(filepath.Join(root, got))
		b, err2 := os.ReadFile(filepath.Join(top, src))
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			t.Errorf("/%s installed is not %s (%v %v)", got, src, err1, err2)
		}
	}
	bin := filepath.Join(root, "usr/bin/mountwatchd")
	if f, err := elf.Open(bin); err != nil {
		t.Error(err)
	} else {
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Error("/usr/bin/mountwatchd has a program interpreter: not static")
			}
		}
		f.Close()
	}
	if out, err := exec.Command(bin, "--version").CombinedOutput(); err != nil || !strings.Contains(string(out), "version "+testVersion) {
		t.Errorf("installed --version: %v\n%s", err, out)
	}
	conf := filepath.Join(root, "etc/default/mountwatchd")
	if err := os.WriteFile(conf, []byte("ARGS=\"--probe.interval=1m\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r("-e", "--noscripts", "mountwatchd")
	for _, p := range []string{"usr/bin/mountwatchd", "usr/lib/systemd/system/mountwatchd.service", "usr/share/licenses/mountwatchd/LICENSE", "etc/default/mountwatchd"} {
		if fileExists(filepath.Join(root, p)) {
			t.Errorf("%s left after rpm -e", p)
		}
	}
	if b, err := os.ReadFile(conf + ".rpmsave"); err != nil || !strings.Contains(string(b), "probe.interval") {
		t.Errorf("the edited conffile was not kept as .rpmsave: %v", err)
	}
}
