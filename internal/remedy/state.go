package remedy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// recordFile is the record of decisions in the state directory, lockFile
// the lock that keeps a daemon and a --once from deciding at once.
const (
	recordFile = "remediation.json"
	lockFile   = "remediation.lock"
	// keepRecords is how long a decision is remembered: the rate limits
	// look back an hour at most, and a connection's identity includes
	// when it was made, so an old entry can only ever match its own
	// connection, long gone.
	keepRecords = 7 * 24 * time.Hour
	maxRecords  = 1000
)

// entry is one decision that acted (aborted) or, in dry-run, would have.
type entry struct {
	// ConnID is the connection and when it was made (its fusectl
	// directory's ctime): a minor the kernel reuses for a new connection
	// is another connection.
	ConnID     string    `json:"conn_id"`
	Connection string    `json:"connection"`
	Mode       Mode      `json:"mode"`
	Result     string    `json:"result"`
	At         time.Time `json:"at"`
	FSType     string    `json:"fstype"`
	MountPoint string    `json:"mountpoint"`
}

type record struct {
	Entries []entry `json:"entries"`
}

// state is the record, read and locked for one run of decisions.
type state struct {
	dir  string
	lock *os.File
	rec  record
}

// openState locks the record in dir and reads it. A record that cannot be
// locked, read or parsed is an error: without it, a decision could be
// repeated, so remediation does not act.
func openState(dir string) (*state, error) {
	if dir == "" {
		return nil, errors.New("no state directory (--probe.state-dir): a decision could not be remembered")
	}
	lf, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state directory %s: %w", dir, err)
	}
	locked := false
	for range 40 { // another process decides: at most 2s, never a hang
		if err = syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
			locked = true
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !locked {
		lf.Close()
		return nil, fmt.Errorf("lock %s: %w", filepath.Join(dir, lockFile), err)
	}
	st := &state{dir: dir, lock: lf}
	b, err := readSmall(filepath.Join(dir, recordFile), 1<<20)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		st.close()
		return nil, fmt.Errorf("read the record of decisions: %w", err)
	case len(b) == 0:
	default:
		if err := json.Unmarshal(b, &st.rec); err != nil {
			st.close()
			return nil, fmt.Errorf("the record of decisions %s: %w", filepath.Join(dir, recordFile), err)
		}
	}
	return st, nil
}

func (st *state) close() {
	if st.lock != nil {
		st.lock.Close() // releases the lock
		st.lock = nil
	}
}

// decided returns the entry of an earlier decision on connection id in
// mode.
func (st *state) decided(id string, mode Mode) (entry, bool) {
	for _, e := range st.rec.Entries {
		if e.ConnID == id && e.Mode == mode {
			return e, true
		}
	}
	return entry{}, false
}

// aborted returns the entry of an abort of connection id, in any mode
// that wrote.
func (st *state) aborted(id string) (entry, bool) { return st.decided(id, On) }

// limit says why another decision in mode may not act at now, or "".
func (st *state) limit(mode Mode, now time.Time, interval time.Duration, perHour int) string {
	var last time.Time
	n := 0
	for _, e := range st.rec.Entries {
		if e.Mode != mode {
			continue
		}
		if e.At.After(last) {
			last = e.At
		}
		if now.Sub(e.At) < time.Hour {
			n++
		}
	}
	what := "abort"
	if mode == DryRun {
		what = "abort dry-run would have made"
	}
	switch {
	case !last.IsZero() && now.Sub(last) < interval:
		return fmt.Sprintf("the last %s was at %s, less than --remediation.interval (%s) ago", what, last.UTC().Format(time.RFC3339), interval)
	case n >= perHour:
		return fmt.Sprintf("%d in the last hour (counting each %s), the cap (--remediation.max-per-hour=%d)", n, what, perHour)
	}
	return ""
}

// add records e and writes the record (atomically: a new file renamed
// over the old one).
func (st *state) add(e entry, now time.Time) error {
	st.rec.Entries = slices.DeleteFunc(st.rec.Entries, func(o entry) bool { return now.Sub(o.At) > keepRecords })
	st.rec.Entries = append(st.rec.Entries, e)
	if len(st.rec.Entries) > maxRecords {
		st.rec.Entries = st.rec.Entries[len(st.rec.Entries)-maxRecords:]
	}
	b, err := json.MarshalIndent(st.rec, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(st.dir, ".remediation-*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(append(b, '\n'))
	if err := errors.Join(werr, tmp.Sync(), tmp.Close()); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(st.dir, recordFile)); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// readSmall reads a regular file of at most max bytes without following a
// symlink or blocking on a FIFO.
func readSmall(path string, max int) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	b := make([]byte, max+1)
	n, err := f.Read(b)
	if err != nil && n == 0 && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if n > max {
		return nil, errors.New("too long")
	}
	return b[:n], nil
}
