package testenv

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// CleanEnv is the test's environment without systemd's variables, so the
// daemon only sees the ones a test sets.
func CleanEnv(extra ...string) []string {
	var env []string
	for _, e := range os.Environ() {
		k, _, _ := strings.Cut(e, "=")
		switch k {
		case "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "LISTEN_FDS", "LISTEN_PID":
			continue
		}
		env = append(env, e)
	}
	return append(env, extra...)
}

// StartJournald runs a standalone systemd-journald in this test binary's
// private mount namespace, with tmpfs on /run/systemd and /run/log (and on
// /var/log/journal, so nothing persists), and returns its journal directory
// and process.
func StartJournald(t *testing.T) (string, *os.Process) {
	t.Helper()
	bin := "/lib/systemd/systemd-journald"
	_, err := os.Stat(bin)
	Require(t, err == nil, "%s (apt package systemd)", bin)
	RequireCommand(t, "journalctl", "systemd")
	for _, dir := range []string{"/run/systemd", "/run/log", "/var/log/journal"} {
		if dir == "/var/log/journal" {
			if _, err := os.Stat(dir); err != nil {
				continue
			}
		}
		Tmpfs(t, dir)
	}
	if err := os.MkdirAll("/run/systemd/journal", 0o755); err != nil {
		t.Fatal(err)
	}
	var logs SyncBuffer
	cmd := exec.Command(bin)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	// Not a RUNTIME_DIRECTORY a test binary set for the binaries it runs
	// (their state directory): journald would put its sockets there.
	cmd.Env = slices.DeleteFunc(CleanEnv(), func(e string) bool { return strings.HasPrefix(e, "RUNTIME_DIRECTORY=") })
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	WaitUntil(t, 20*time.Second, "the journal socket", func() bool {
		_, err := os.Stat("/run/systemd/journal/socket")
		return err == nil
	})
	var dir string
	WaitUntil(t, 20*time.Second, "the journal directory", func() bool {
		m, _ := filepath.Glob("/run/log/journal/*")
		if len(m) > 0 {
			dir = m[0]
		}
		return dir != ""
	})
	return dir, cmd.Process
}

// JournalEntries returns the entries of the journal in dir that match
// (journalctl matches, FIELD=value), as journalctl -o json prints them.
func JournalEntries(t *testing.T, dir string, match ...string) []map[string]any {
	t.Helper()
	out, err := exec.Command("journalctl", append([]string{"--directory=" + dir, "-o", "json", "--no-pager"}, match...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("journalctl: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var entries []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("journalctl line %q: %v", sc.Text(), err)
		}
		entries = append(entries, e)
	}
	return entries
}
