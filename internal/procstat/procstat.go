// Package procstat parses a task's /proc/<pid>/stat (or
// /proc/<pid>/task/<tid>/stat): the file mountwatchd reads of a task that
// may be stuck in the kernel, since reading it never takes the task's mm
// lock (cmdline, environ and mem do, and hang the reader).
//
// It parses one file's bytes and nothing else: which tasks to read, and
// what their state means, is for its callers (tasks, probe, layout).
package procstat

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrMalformed is wrapped by every error of Parse.
var ErrMalformed = errors.New("malformed")

// Stat is what mountwatchd uses of a stat line.
type Stat struct {
	Comm      string
	State     byte
	PPID      int
	Flags     uint64 // PF_* (PF_KTHREAD marks a kernel thread)
	StartTime uint64 // clock ticks after boot: with the PID or TID, a task's identity
}

// Head returns the command name and state of a stat line, "pid (comm) S
// ...". The command name may itself hold spaces and parentheses, so it ends
// at the last ')'. It needs nothing past the state.
func Head(data []byte) (comm string, state byte, ok bool) {
	open := bytes.IndexByte(data, '(')
	end := bytes.LastIndexByte(data, ')')
	if open < 0 || end < open || end+2 >= len(data) {
		return "", 0, false
	}
	return string(data[open+1 : end]), data[end+2], true
}

// Parse parses a whole stat line, through field 22 (starttime).
func Parse(data []byte) (Stat, error) {
	var st Stat
	open := bytes.IndexByte(data, '(')
	end := bytes.LastIndexByte(data, ')')
	if open < 0 || end < open {
		return st, fmt.Errorf("%w stat: no (comm)", ErrMalformed)
	}
	st.Comm = string(data[open+1 : end])
	f := strings.Fields(string(data[end+1:]))
	// f[0] is field 3 (state), f[1] field 4 (ppid), f[6] field 9 (flags),
	// f[19] field 22 (starttime).
	if len(f) < 20 || len(f[0]) != 1 {
		return st, fmt.Errorf("%w stat: %d fields after (comm)", ErrMalformed, len(f))
	}
	st.State = f[0][0]
	var err error
	if st.PPID, err = strconv.Atoi(f[1]); err != nil {
		return st, fmt.Errorf("%w stat ppid: %w", ErrMalformed, err)
	}
	if st.Flags, err = strconv.ParseUint(f[6], 10, 64); err != nil {
		return st, fmt.Errorf("%w stat flags: %w", ErrMalformed, err)
	}
	if st.StartTime, err = strconv.ParseUint(f[19], 10, 64); err != nil {
		return st, fmt.Errorf("%w stat starttime: %w", ErrMalformed, err)
	}
	return st, nil
}
