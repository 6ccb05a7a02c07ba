// Package testenv lets tests use the real kernel: it runs a test binary in a
// private mount namespace, and turns "this machine lacks X" into a skip on a
// developer's machine but a failure in CI, where every requirement must be met.
// Its other files are the real things tests run against: FUSE servers,
// stand-in nodes and pods, a Prometheus, a journald, a containerd, an sshfs.
//
// Only tests and benchmarks import it; it is never part of the binary.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// nsEnv marks a test binary already re-executed in its own mount namespace.
const nsEnv = "MOUNTWATCHD_TEST_MOUNTNS"

// Strict reports whether a missing requirement fails the test instead of
// skipping it: in CI (CI=true) or with MOUNTWATCHD_REQUIRE_ALL=1.
func Strict() bool {
	return os.Getenv("CI") == "true" || os.Getenv("MOUNTWATCHD_REQUIRE_ALL") == "1"
}

// Require skips the test (fails it in CI) unless ok.
func Require(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	msg := "requirement not met: " + fmt.Sprintf(format, args...)
	if Strict() {
		t.Fatal(msg + " (required in CI)")
	}
	t.Skip(msg)
}

// RequireRoot requires root and a private mount namespace (see Main), so that
// nothing the test mounts is seen by the host.
func RequireRoot(t testing.TB) {
	t.Helper()
	Require(t, os.Geteuid() == 0, "root")
	Require(t, os.Getenv(nsEnv) == "1", "a private mount namespace (run through testenv.Main as root)")
}

// RequireCommand requires a program on PATH and returns its path.
func RequireCommand(t testing.TB, name, aptPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Require(t, err == nil, "%s on PATH (apt package %s)", name, aptPackage)
	return p
}

// Main is TestMain for packages with tests that mount. As root, it re-runs the
// test binary in a new mount namespace with private propagation, so the
// tests' mounts never reach the host and vanish when the binary exits.
// Without root it runs the tests as they are; RequireRoot skips the ones that
// mount.
func Main(m *testing.M) { main(m, syscall.CLONE_NEWNS) }

// netnsEnv marks a test binary re-executed in its own network namespace too.
const netnsEnv = "MOUNTWATCHD_TEST_NETNS"

// MainNet is Main with a private network namespace as well, whose loopback
// is up: what the tests serve and reach is seen by no one else, and every
// interface they add goes away with the binary (the real Kubernetes node of
// internal/e2e).
func MainNet(m *testing.M) {
	if os.Getenv(netnsEnv) == "1" {
		if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: bring up loopback: %v: %s\n", err, out)
			os.Exit(2)
		}
	}
	main(m, syscall.CLONE_NEWNS|syscall.CLONE_NEWNET)
}

// InNetNS reports whether this test binary runs in a network namespace of
// its own (MainNet).
func InNetNS() bool { return os.Getenv(netnsEnv) == "1" }

func main(m *testing.M, flags uintptr) {
	if os.Geteuid() != 0 || os.Getenv(nsEnv) == "1" || fuzzing() {
		os.Exit(m.Run())
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		os.Exit(2)
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), nsEnv+"=1")
	if flags&syscall.CLONE_NEWNET != 0 {
		cmd.Env = append(cmd.Env, netnsEnv+"=1")
	}
	// Go makes every mount in the new namespace private (MS_REC|MS_PRIVATE).
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: flags}
	if err := cmd.Run(); err != nil {
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			os.Exit(ee.ExitCode())
		}
		fmt.Fprintf(os.Stderr, "testenv: re-run in a private mount namespace: %v\n", err)
		os.Exit(2)
	}
	os.Exit(0)
}

// fuzzing reports whether this test binary runs a fuzz target (or is one of
// its workers): fuzz targets parse bytes and never mount, and a worker
// talks to its coordinator over inherited descriptors a re-exec would lose.
func fuzzing() bool {
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "-test.fuzz") {
			return true
		}
	}
	return false
}
