package packaging

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// The version the test builds with: git describe's shape, which build.sh
// maps to a Debian version (a '-' would start a Debian revision).
const (
	testVersion    = "v1.2.3-4-gabcdef0"
	testDebVersion = "1.2.3+4+gabcdef0"
)

// buildDeb runs `make deb` into a fresh directory and returns the .deb.
func buildDeb(t *testing.T) string {
	t.Helper()
	testenv.RequireCommand(t, "dpkg-deb", "dpkg")
	testenv.RequireCommand(t, "make", "make")
	dir := t.TempDir()
	out, err := exec.Command("make", "--no-print-directory", "-C", top, "deb", "DEBDIR="+dir, "VERSION="+testVersion).CombinedOutput()
	if err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb wrote %v, want one .deb\n%s", debs, out)
	}
	arch := strings.TrimSpace(testenv.Run(t, "go", "env", "GOARCH"))
	if want := fmt.Sprintf("mountwatchd_%s_%s.deb", testDebVersion, arch); filepath.Base(debs[0]) != want {
		t.Errorf("package file %s, want %s", filepath.Base(debs[0]), want)
	}
	return debs[0]
}

func TestDebPackage(t *testing.T) {
	deb := buildDeb(t)

	t.Run("contents", func(t *testing.T) {
		fields := testenv.Run(t, "dpkg-deb", "--show", "--showformat=${Package}|${Version}|${Depends}|${Pre-Depends}", deb)
		if fields != "mountwatchd|"+testDebVersion+"||" {
			t.Errorf("package, version, depends, pre-depends: %q", fields)
		}
		if cf := testenv.Run(t, "dpkg-deb", "--info", deb, "conffiles"); cf != "/etc/default/mountwatchd\n" {
			t.Errorf("conffiles: %q", cf)
		}
		listing := testenv.Run(t, "dpkg-deb", "--contents", deb)
		for _, l := range strings.Split(strings.TrimSpace(listing), "\n") {
			if f := strings.Fields(l); len(f) < 2 || f[1] != "root/root" {
				t.Errorf("not owned by root/root: %s", l)
			}
		}
		x := t.TempDir()
		testenv.Run(t, "dpkg-deb", "--extract", deb, x)
		// Static: no program interpreter, no shared library needed, so
		// Depends can stay empty.
		for _, name := range []string{"usr/bin/mountwatchd", "usr/lib/mountwatchd/mountwatchd-kube"} {
			f, err := elf.Open(filepath.Join(x, name))
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Errorf("%s has a program interpreter: not static", name)
				}
			}
			if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
				t.Errorf("%s needs %v", name, libs)
			}
			f.Close()
		}
		want, err := os.ReadFile(filepath.Join(top, "systemd/mountwatchd.service"))
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(filepath.Join(x, "lib/systemd/system/mountwatchd.service")); !bytes.Equal(got, want) {
			t.Error("the packaged unit is not systemd/mountwatchd.service")
		}
		for _, p := range []string{"etc/default/mountwatchd", "usr/share/doc/mountwatchd/copyright",
			"usr/share/doc/mountwatchd/README.md.gz", "usr/share/doc/mountwatchd/changelog.gz", "usr/share/man/man8/mountwatchd.8.gz"} {
			if _, err := os.Stat(filepath.Join(x, p)); err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("lintian", func(t *testing.T) {
		lintian := testenv.RequireCommand(t, "lintian", "lintian")
		r := run(t, 5*time.Minute, nil, lintian, "--fail-on", "error,warning", "--display-info", deb)
		t.Logf("lintian:\n%s%s", r.stdout, r.stderr)
		if r.code != 0 {
			t.Errorf("lintian exit %d", r.code)
		}
	})

	t.Run("install", func(t *testing.T) { testDebInstall(t, deb) })
}

// testDebInstall installs the package for real with dpkg -i, runs what it
// installed, removes and purges it. It never touches the machine's real
// /usr, /etc or dpkg database: dpkg runs in a stand-in node (a shell in a
// mount namespace of its own, inside the test binary's private one) where
// /usr, /etc and /var/lib are overlay mounts whose upper layers are a tmpfs,
// so every write lands in memory and vanishes with the namespace, while dpkg
// still sees the real installed packages below. A tmpfs on /run hides
// /run/systemd/system, so the maintainer scripts take their no-systemd path
// even on a developer machine whose PID 1 is systemd, and never reach the
// real systemd (no daemon-reload, no start).
func testDebInstall(t *testing.T, deb string) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "dpkg", "dpkg")
	sa := testenv.RequireCommand(t, "systemd-analyze", "systemd")
	work, out := t.TempDir(), t.TempDir()
	realStatus := dpkgQuery(t)

	setup := fmt.Sprintf("mount -t tmpfs pkgtest-upper %[1]s\n"+
		"for d in usr etc var/lib; do mkdir -p %[1]s/up/$d %[1]s/work/$d; "+
		"mount -t overlay pkgtest-$(echo $d | tr / -) -o lowerdir=/$d,upperdir=%[1]s/up/$d,workdir=%[1]s/work/$d /$d; done\n"+
		"mount -t tmpfs pkgtest-run /run", work)
	node := testenv.NewNode(t, setup)
	root := fmt.Sprintf("/proc/%d/root", node.PID)
	exists := func(p string) bool { _, err := os.Lstat(root + p); return err == nil }
	sh := func(command string) (int, string) { t.Helper(); return inNode(t, node, out, command) }
	mustSh := func(command string) string {
		t.Helper()
		code, o := sh(command)
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s", command, code, o)
		}
		return o
	}

	mustSh("dpkg -i " + deb)
	if o := mustSh("dpkg-query -W -f='${Status} ${Version}' mountwatchd"); o != "install ok installed "+testDebVersion {
		t.Errorf("dpkg-query after install: %q", o)
	}
	files := []string{"/usr/bin/mountwatchd", "/usr/lib/mountwatchd/mountwatchd-kube", "/lib/systemd/system/mountwatchd.service",
		"/usr/share/doc/mountwatchd/copyright", "/usr/share/doc/mountwatchd/README.md.gz"}
	for _, p := range append(files, "/etc/default/mountwatchd") {
		if !exists(p) {
			t.Errorf("%s not installed", p)
		}
	}
	// postinst enabled the unit the way dh_installsystemd does, without a
	// running systemd.
	const wants = "/etc/systemd/system/multi-user.target.wants/mountwatchd.service"
	if !exists(wants) {
		t.Errorf("postinst did not enable the service (%s)", wants)
	}

	// The installed program works.
	if o := mustSh("/usr/bin/mountwatchd --version"); !strings.Contains(o, "version "+testVersion) {
		t.Errorf("--version: %q", o)
	}
	fixture, err := filepath.Abs(filepath.Join(top, "internal/mounts/testdata/k8s-node-brief.mountinfo"))
	if err != nil {
		t.Fatal(err)
	}
	code, o := sh("/usr/bin/mountwatchd --once --mountinfo " + fixture)
	if first := strings.SplitN(o, "\n", 2)[0]; code != 1 || len(first) > 80 || !strings.Contains(first, "deleted_root") {
		t.Errorf("--once --mountinfo: exit %d, first line %q (want 1, deleted_root, at most 80 bytes)\n%s", code, first, o)
	}
	// The installed unit verifies where it is installed, with its binary.
	if o := mustSh(sa + " verify /lib/systemd/system/mountwatchd.service"); strings.TrimSpace(o) != "" {
		t.Errorf("systemd-analyze verify of the installed unit:\n%s", o)
	}

	// An upgrade to the same version runs postinst with a previous version.
	mustSh("dpkg -i " + deb)

	mustSh("dpkg -r mountwatchd")
	for _, p := range files {
		if exists(p) {
			t.Errorf("%s left after dpkg -r", p)
		}
	}
	if !exists("/etc/default/mountwatchd") {
		t.Error("dpkg -r removed the conffile; only --purge should")
	}
	// As with dh_installsystemd, removal keeps the enable state and masks
	// the unit (so a leftover wants link starts nothing); purge clears both.
	const mask = "/etc/systemd/system/mountwatchd.service"
	if l, err := os.Readlink(root + mask); err != nil || l != "/dev/null" {
		t.Errorf("after dpkg -r the unit is not masked: %q %v", l, err)
	}
	mustSh("dpkg --purge mountwatchd")
	for _, p := range []string{"/etc/default/mountwatchd", mask, wants} {
		if exists(p) {
			t.Errorf("%s left after dpkg --purge", p)
		}
	}
	if code, o := sh("dpkg-query -W mountwatchd"); code == 0 {
		t.Errorf("dpkg still knows the package after purge: %s", o)
	}

	if now := dpkgQuery(t); now != realStatus {
		t.Errorf("the real dpkg database changed: %q -> %q", realStatus, now)
	}
}

// dpkgQuery is what this namespace's (the real) dpkg database says of
// mountwatchd.
func dpkgQuery(t *testing.T) string {
	t.Helper()
	out, _ := exec.Command("dpkg-query", "-W", "-f=${Status} ${Version}", "mountwatchd").CombinedOutput()
	return string(out)
}
