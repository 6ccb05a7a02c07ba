package tasks

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/mountwatchd/mountwatchd/internal/procstat"
)

// The parsers of the per-task /proc files the scanner reads. Each is a pure
// function of the file's bytes, so tests feed captured files.

// statLine is what the scanner uses of /proc/<pid>/task/<tid>/stat.
type statLine = procstat.Stat

// errMalformed is wrapped by every parse error.
var errMalformed = procstat.ErrMalformed

// parseStat parses a stat line (package procstat).
func parseStat(data []byte) (statLine, error) { return procstat.Parse(data) }

// syscallLine is /proc/<pid>/task/<tid>/syscall: the system call a blocked
// task is in and its arguments.
type syscallLine struct {
	// Nr is the system call number; notInSyscall when the task is blocked
	// outside one (a page fault), running when it was not blocked.
	Nr   int
	Args [6]uint64
}

const (
	notInSyscall = -1
	running      = -2
)

func parseSyscall(data []byte) (syscallLine, error) {
	sc := syscallLine{Nr: notInSyscall}
	f := strings.Fields(string(data))
	switch {
	case len(f) == 1 && f[0] == "running":
		sc.Nr = running
		return sc, nil
	case len(f) == 3 && f[0] == "-1":
		return sc, nil
	case len(f) != 9:
		return sc, fmt.Errorf("%w syscall: %d fields", errMalformed, len(f))
	}
	nr, err := strconv.Atoi(f[0])
	if err != nil || nr < 0 {
		return sc, fmt.Errorf("%w syscall number %q", errMalformed, f[0])
	}
	sc.Nr = nr
	for i := range sc.Args {
		v, err := strconv.ParseUint(strings.TrimPrefix(f[1+i], "0x"), 16, 64)
		if err != nil {
			return sc, fmt.Errorf("%w syscall argument %q", errMalformed, f[1+i])
		}
		sc.Args[i] = v
	}
	return sc, nil
}

// parseMntID reads the mnt_id line of /proc/<pid>/fdinfo/<fd>: the mount the
// descriptor was opened on, by the same id as the mount table's first field.
func parseMntID(data []byte) (int, error) {
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "mnt_id:"); ok {
			id, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return 0, fmt.Errorf("%w fdinfo mnt_id %q", errMalformed, v)
			}
			return id, nil
		}
	}
	return 0, fmt.Errorf("%w fdinfo: no mnt_id", errMalformed)
}

// parseSwitches sums the context switches in /proc/<pid>/task/<tid>/status.
// A task whose count did not change between two scans has not run in
// between: it is still in the same wait.
func parseSwitches(data []byte) (uint64, error) {
	var n uint64
	found := 0
	for line := range strings.SplitSeq(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "voluntary_ctxt_switches" && k != "nonvoluntary_ctxt_switches") {
			continue
		}
		c, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w status %s %q", errMalformed, k, v)
		}
		n += c
		found++
	}
	if found != 2 {
		return 0, fmt.Errorf("%w status: no context switch counts", errMalformed)
	}
	return n, nil
}
