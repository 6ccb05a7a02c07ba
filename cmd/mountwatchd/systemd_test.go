package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// maxExposure is the highest systemd-analyze security exposure the unit may
// have (0 best, 10 worst). The capabilities the checks need (CAP_SYS_PTRACE,
// CAP_DAC_READ_SEARCH, CAP_SYS_ADMIN), root and the network listener
// account for most of what is left.
const maxExposure = 3.5

// unitForTest is systemd/mountwatchd.service with ExecStart pointing at the
// binary just built, since verify checks the executable exists.
func unitForTest(t *testing.T) string {
	t.Helper()
	unit, err := os.ReadFile("../../systemd/mountwatchd.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "WatchdogSec=", "NoNewPrivileges=yes", "ProtectSystem=strict",
		"ProtectHome=read-only", "PrivateTmp=yes", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "SystemCallFilter=",
		"CapabilityBoundingSet=", "ExecStart=/usr/bin/mountwatchd --target.pid=1"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	path := filepath.Join(t.TempDir(), "mountwatchd.service")
	s := strings.Replace(string(unit), "ExecStart=/usr/bin/mountwatchd", "ExecStart="+binary(t), 1)
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSystemdUnitVerifies(t *testing.T) {
	sa := testenv.RequireCommand(t, "systemd-analyze", "systemd")
	out, err := exec.Command(sa, "verify", unitForTest(t)).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestSystemdUnitHardened(t *testing.T) {
	sa := testenv.RequireCommand(t, "systemd-analyze", "systemd")
	out, err := exec.Command(sa, "security", "--offline=true", "--no-pager", unitForTest(t)).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security exposure: %.1f", score)
	if score > maxExposure {
		t.Errorf("exposure %.1f, want at most %.1f:\n%s", score, maxExposure, out)
	}
}
