package probe

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/procstat"
)

// stuckRecord is what a state file says of a stuck probe: the helper
// process and thread that make it, with their start times, and when it
// began. It is written when the probe is abandoned, removed when it
// returns, and believed only while the thread still lives.
type stuckRecord struct {
	PID    int       `json:"pid"`
	PStart uint64    `json:"pid_start"`     // /proc/<pid>/stat starttime
	TID    int       `json:"tid,omitempty"` // 0: the thread was not known yet
	TStart uint64    `json:"tid_start,omitempty"`
	Since  time.Time `json:"since"`
}

var connName = regexp.MustCompile(`^[0-9]+:[0-9]+$`)

func recordPath(dir, conn string) (string, error) {
	if !connName.MatchString(conn) {
		return "", fmt.Errorf("connection %q is not major:minor", conn)
	}
	return filepath.Join(dir, "stuck-"+strings.Replace(conn, ":", "-", 1)+".json"), nil
}

func writeRecord(dir, conn string, r stuckRecord) (string, error) {
	path, err := recordPath(dir, conn)
	if err != nil {
		return "", err
	}
	if r.TID != 0 {
		if r.TStart, err = procStart(fmt.Sprintf("/proc/%d/task/%d/stat", r.PID, r.TID)); err != nil {
			return "", err // the thread is gone: the probe returned
		}
	}
	b, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, ".stuck-*")
	if err != nil {
		return "", err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	return path, nil
}

// readRecord returns when the recorded probe of conn began, if its thread
// (or, when the thread was not known, its process) still lives with the
// recorded start time. A record that does not hold is removed.
func readRecord(dir, conn string) (time.Time, bool) {
	path, err := recordPath(dir, conn)
	if err != nil {
		return time.Time{}, false
	}
	b, err := readSmall(path, 4096)
	if err != nil {
		return time.Time{}, false
	}
	var r stuckRecord
	if json.Unmarshal(b, &r) != nil || !r.holds() {
		_ = os.Remove(path)
		return time.Time{}, false
	}
	return r.Since, true
}

func (r stuckRecord) holds() bool {
	if r.PID <= 0 {
		return false
	}
	if s, err := procStart(fmt.Sprintf("/proc/%d/stat", r.PID)); err != nil || s != r.PStart {
		return false
	}
	if r.TID == 0 {
		return true
	}
	s, err := procStart(fmt.Sprintf("/proc/%d/task/%d/stat", r.PID, r.TID))
	return err == nil && s == r.TStart && !parked(r.PID, r.TID)
}

// parkedIn are the kernel functions a thread of ours waits in once it is
// back from its probe: the Go runtime polling, or the thread exiting; and
// any futex_* (the runtime parking it: futex_wait_queue_me before Linux
// 5.16, futex_wait_queue, futex_do_wait on 6.18). A probe stuck on a
// filesystem waits elsewhere (request_wait_answer for FUSE, the RPC layer
// for NFS), never on a futex.
var parkedIn = map[string]bool{"do_epoll_wait": true, "ep_poll": true, "do_exit": true, "do_group_exit": true}

// parked reports whether the recorded thread is known to be back from its
// probe: after an abort the helper lives on for a moment, and a record
// believed then would call an aborted connection hung. Where wchan says
// nothing ("0" without the symbol, or unreadable), the start times alone
// decide, as before.
func parked(pid, tid int) bool {
	b, err := readSmall(fmt.Sprintf("/proc/%d/task/%d/wchan", pid, tid), 256)
	w := strings.TrimSpace(string(b))
	return err == nil && (strings.HasPrefix(w, "futex_") || parkedIn[w])
}

// readSmall reads a regular file of at most max bytes without following a
// symlink.
func readSmall(path string, max int) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	b := make([]byte, max+1)
	n, err := f.Read(b)
	if err != nil || n > max {
		return nil, errors.New("unreadable or too long")
	}
	return b[:n], nil
}

// procStart is the start time (field 22) of a /proc/<pid>/stat or
// /proc/<pid>/task/<tid>/stat. Reading stat never takes the task's mm
// lock, so it does not block on a task stuck in the kernel (cmdline,
// environ and mem do).
func procStart(path string) (uint64, error) {
	b, err := readSmall(path, 4096)
	if err != nil {
		return 0, err
	}
	st, err := procstat.Parse(b)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return st.StartTime, nil
}

// DefaultStateDir is where the records of stuck probes live: systemd's
// $RUNTIME_DIRECTORY (the unit's RuntimeDirectory=), /run/mountwatchd as
// root, else $XDG_RUNTIME_DIR/mountwatchd, else mountwatchd-<uid> in the
// temporary directory.
func DefaultStateDir() string {
	if d, _, _ := strings.Cut(os.Getenv("RUNTIME_DIRECTORY"), ":"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/run/mountwatchd"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "mountwatchd")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("mountwatchd-%d", os.Geteuid()))
}

// PrepareStateDir makes dir (mode 0700) if it does not exist and checks it
// is a directory of ours that nobody else may write: records in it decide
// which connections are not probed.
func PrepareStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	switch {
	case !st.IsDir():
		return fmt.Errorf("state directory %s is not a directory", dir)
	case !ok || int(sys.Uid) != os.Geteuid():
		return fmt.Errorf("state directory %s is not owned by uid %d", dir, os.Geteuid())
	case st.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("state directory %s is writable by others (%s)", dir, st.Mode().Perm())
	}
	return nil
}
