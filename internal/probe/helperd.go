package probe

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

// HelperArg is the hidden subcommand that makes the binary a probe helper
// (ServeHelper): `mountwatchd __probe-helper`, started by HelperFS only.
const HelperArg = "__probe-helper"

// HelperName is a helper's process name (comm), as ps and /proc/<pid>/stat
// show it.
const HelperName = "mountwatchd-prb"

// helperRequest is one probe, one JSON line on the helper's stdin.
type helperRequest struct {
	ID uint64 `json:"id"`
	Request
}

// helperReply is one JSON line on the helper's stdout: first a start
// (Started, with the thread making the syscalls), then the answer.
type helperReply struct {
	ID      uint64 `json:"id"`
	Started bool   `json:"started,omitempty"`
	TID     int    `json:"tid,omitempty"`
	Answer
	Err *helperErr `json:"err,omitempty"`
}

// helperErr is a probe's error as it crosses the pipe: its text, its errno
// and whether it is ours (the namespace's root could not be opened).
type helperErr struct {
	Msg       string        `json:"msg"`
	Errno     syscall.Errno `json:"errno,omitempty"`
	Namespace bool          `json:"namespace,omitempty"`
	Helper    bool          `json:"helper,omitempty"` // the helper failed, not the probe
	RootGone  bool          `json:"root_gone,omitempty"`
}

func (e *helperErr) Error() string { return e.Msg }

func (e *helperErr) Unwrap() []error {
	var errs []error
	if e.Errno != 0 {
		errs = append(errs, e.Errno)
	}
	if e.Namespace {
		errs = append(errs, mounts.ErrNamespaceUnreachable)
	}
	if e.Helper {
		errs = append(errs, ErrHelper)
	}
	if e.RootGone {
		errs = append(errs, ErrRootGone)
	}
	return errs
}

func newHelperErr(err error) *helperErr {
	if err == nil {
		return nil
	}
	e := &helperErr{Msg: err.Error(), Namespace: errors.Is(err, mounts.ErrNamespaceUnreachable), RootGone: errors.Is(err, ErrRootGone)}
	_ = errors.As(err, &e.Errno)
	return e
}

// helperCaps are the capabilities a probe keeps: ptrace read access to
// the inspected namespace's PID (its root), and search of directories
// owned by others on the way to a mount point.
var helperCaps = []int{unix.CAP_SYS_PTRACE, unix.CAP_DAC_READ_SEARCH}

// maxIdleWorkers caps the helper's threads kept waiting for the next
// probe: as many as the Prober's default cap on probes in flight, so that
// a probe run reuses threads instead of making one per probe.
const maxIdleWorkers = 32

// ServeHelper is the probe helper's main: it answers the probes read from
// in, each on a thread of its own (kept, with only the capabilities a
// probe needs, for later probes), and writes the answers to out. At the
// end of in (the caller retired it, or exited) it takes no more: idle
// threads exit, busy ones exit once their probe returns, and it returns
// once the last has. A probe held by a FUSE server keeps the helper, never
// its caller; and in a retired helper, a probe thread that lives is a
// probe that has not returned (what HelperFS's records rely on).
func ServeHelper(in io.Reader, out io.Writer) int {
	var (
		outMu sync.Mutex
		wg    sync.WaitGroup
		mu    sync.Mutex // guards retired and idle
		// retired: the end of in was read
		retired bool
		idle    []chan helperRequest
	)
	enc := json.NewEncoder(out)
	send := func(r helperReply) {
		outMu.Lock()
		defer outMu.Unlock()
		_ = enc.Encode(r) // the caller is gone: nothing to tell
	}
	worker := func(req helperRequest) {
		defer wg.Done()
		// Never unlocked: the thread exits with the worker, so that a
		// capability-reduced thread never runs other code, and a retired
		// helper's live probe thread is a probe in progress.
		runtime.LockOSThread()
		// A probe thread is named a helper's (a thread takes the name of
		// the one that made it, which may predate the helper's naming of
		// itself, or the binary may be started under another name): a
		// scan of the node's stuck tasks never counts a probe as a user.
		nameThread(HelperName)
		// Capabilities are a thread's: this one keeps only what a probe
		// needs.
		if err := dropCaps(helperCaps); err != nil {
			send(helperReply{ID: req.ID, Err: &helperErr{Msg: err.Error(), Helper: true}})
			return
		}
		next := make(chan helperRequest)
		for {
			send(helperReply{ID: req.ID, Started: true, TID: unix.Gettid()})
			a, err := SysFS{}.ProbeRequest(req.Request)
			send(helperReply{ID: req.ID, Answer: a, Err: newHelperErr(err)})
			mu.Lock()
			if retired || len(idle) >= maxIdleWorkers {
				mu.Unlock()
				return
			}
			idle = append(idle, next)
			mu.Unlock()
			var ok bool
			if req, ok = <-next; !ok {
				return
			}
		}
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var req helperRequest
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			break // not our caller
		}
		mu.Lock()
		if n := len(idle); n > 0 {
			w := idle[n-1]
			idle = idle[:n-1]
			mu.Unlock()
			w <- req
			continue
		}
		mu.Unlock()
		wg.Add(1)
		go worker(req)
	}
	mu.Lock()
	retired = true
	for _, w := range idle {
		close(w)
	}
	idle = nil
	mu.Unlock()
	wg.Wait()
	return 0
}

// nameThread sets the calling thread's name (comm).
func nameThread(name string) {
	if p, err := unix.BytePtrFromString(name); err == nil {
		_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(p)), 0, 0, 0)
	}
}

// dropCaps keeps only keep of the calling thread's capabilities
// (effective, permitted; the inheritable and ambient sets emptied) and
// sets its no_new_privs, so that nothing it could exec regains them.
func dropCaps(keep []int) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	_ = unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	var mask [2]uint32
	for _, c := range keep {
		mask[c/32] |= 1 << (c % 32)
	}
	changed := false
	for i := range data {
		e, p := data[i].Effective&mask[i], data[i].Permitted&mask[i]
		changed = changed || e != data[i].Effective || p != data[i].Permitted || data[i].Inheritable != 0
		data[i].Effective, data[i].Permitted, data[i].Inheritable = e, p, 0
	}
	if !changed {
		return nil
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset (drop to CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH): %w", err)
	}
	return nil
}
