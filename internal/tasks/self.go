package tasks

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/mountwatchd/mountwatchd/internal/probe"
)

// ourselves is our own PID as the inspected procfs numbers it, and our
// command name: our own probes, and the helper processes they run in, are
// the probe's hang, reported by the probe, not stuck users (see ours).
func (x *scan) ourselves() (int, string) {
	link, err := os.Readlink(filepath.Join(x.proc, "self"))
	if err != nil {
		return -1, ""
	}
	pid, err := strconv.Atoi(link)
	if err != nil {
		return -1, ""
	}
	comm := ""
	if data, err := x.read(filepath.Join(x.proc, link, "stat")); err == nil {
		if st, err := parseStat(data); err == nil {
			comm = st.Comm
		}
	}
	return pid, comm
}

// oursLeader says whether process pid is one of ours by its main thread's
// name: a thread takes its name from the thread that made it, and a probe
// helper names itself (probe.HelperName) on its main thread at start, after
// the Go runtime's first threads were made under the exec's name, so only
// the main thread's name is sure to be the helper's. Read only for a task
// already found waiting.
func (x *scan) oursLeader(pid int) bool {
	data, err := x.read(filepath.Join(x.proc, strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	st, err := parseStat(data)
	return err == nil && x.ours(st.Comm)
}

// ours says whether a task of this name is one of ours: a probe helper
// (probe.HelperName, which every probe thread names itself, whatever this
// binary is called and whichever process started the helper: an earlier
// run's stuck probes too), this process, or a helper of another role
// (<our name>-<role>).
func (x *scan) ours(comm string) bool {
	return comm == probe.HelperName ||
		x.selfComm != "" && (comm == x.selfComm || strings.HasPrefix(comm, x.selfComm+"-"))
}
