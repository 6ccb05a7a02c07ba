package probe

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// ErrHelper means a probe could not be made because its helper process
// failed (it could not start, or died): our failure, never the mount's.
var ErrHelper = errors.New("probe helper failed")

// HelperConfig says how HelperFS starts its helpers and where it keeps
// what it knows of stuck probes.
type HelperConfig struct {
	// Exe and Args start a helper: ServeHelper reading its stdin. By
	// default /proc/self/exe HelperArg, a re-exec of this binary (which
	// works even once an upgrade replaced the file).
	Exe  string
	Args []string
	// StateDir, when set, is where a probe still stuck is recorded (see
	// Stuck), so that later runs of the binary do not probe its
	// connection again. Empty: nothing survives the process.
	StateDir string
	// IdleExit retires the helper once no probe has been in progress for
	// this long (default DefaultHelperIdleExit; negative: never), so that
	// between the daemon's probe runs no helper costs memory or threads.
	IdleExit time.Duration
}

// DefaultHelperIdleExit is how long a helper with nothing to do lives: past
// one probe run, well below the daemon's default --probe.interval (30s).
const DefaultHelperIdleExit = 5 * time.Second

// HelperFS makes probes in helper processes, so that no thread of ours
// ever waits on a FUSE or network server: a server that has read a
// request and waits on its backend holds the thread that sent it in
// uninterruptible sleep (request_wait_answer), where not even SIGKILL
// ends it, and a process with such a thread cannot exit.
//
// One helper serves every probe concurrently, each on a thread of its own.
// As soon as one of its probes is abandoned (past its deadline, or its
// round cancelled) the helper is retired: it gets no new probe, its stdin
// is closed, and it exits once its probes return; the next probe starts a
// fresh helper. With the Prober's one probe per connection at a time, a
// stuck helper holds at most one probe of each connection, and with
// StateDir, no later run adds another (Stuck).
//
// A helper gets no descriptor of ours but two pipes (stdout and stderr
// are never the caller's: a caller reading our output gets its end when we
// exit), an empty environment, SIGKILL when we exit (PR_SET_PDEATHSIG),
// and its probe threads keep only CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH.
type HelperFS struct {
	cfg HelperConfig

	mu    sync.Mutex
	cur   *helper
	calls map[string]*call // by connection: the probes in progress
	idle  *time.Timer      // retires cur once nothing is in progress
	live  map[*helper]bool // helpers not yet exited, retired or not

	spawnOnce sync.Once
	spawnReq  chan chan spawned

	started, retired atomic.Uint64
}

func (*HelperFS) remote() {}

// NewHelperFS returns a HelperFS. It starts no helper until the first
// probe.
func NewHelperFS(cfg HelperConfig) *HelperFS {
	if cfg.Exe == "" {
		cfg.Exe = "/proc/self/exe"
	}
	if cfg.Args == nil {
		cfg.Args = []string{HelperArg}
	}
	if cfg.IdleExit == 0 {
		cfg.IdleExit = DefaultHelperIdleExit
	}
	return &HelperFS{cfg: cfg, calls: map[string]*call{}, live: map[*helper]bool{}}
}

// HelperStats counts helpers started and retired since start.
type HelperStats struct {
	Started, Retired uint64
}

// Stats reports how many helpers were started and retired.
func (f *HelperFS) Stats() HelperStats {
	return HelperStats{Started: f.started.Load(), Retired: f.retired.Load()}
}

// helper is one helper process.
type helper struct {
	pid   int
	start uint64 // its start time (/proc/<pid>/stat), for records
	in    *os.File

	mu      sync.Mutex
	next    uint64
	calls   map[uint64]*call
	retired bool
	dead    error
}

// call is one probe sent to a helper.
type call struct {
	h     *helper
	id    uint64
	conn  string
	since time.Time
	tid   int              // the helper's thread making the syscalls, once it said so
	done  chan helperReply // buffered: one answer
	// record is the file that says this probe is stuck, once abandoned.
	record string
}

// Probe implements FS: a probe without the deep request.
func (f *HelperFS) Probe(root, path string) (uint64, error) {
	a, err := f.ProbeRequest(Request{Root: root, Path: path})
	return a.Dev, err
}

// ProbeRequest implements RequestFS: it sends req to the current helper
// and waits for the answer, for as long as it takes (the Prober does not
// wait past its deadline, and tells us when it gave up: Abandoned).
func (f *HelperFS) ProbeRequest(req Request) (Answer, error) {
	var (
		c   *call
		err error
	)
	for range 2 { // a helper that died since the last probe: once more with a new one
		var h *helper
		if h, err = f.current(); err != nil {
			return Answer{}, fmt.Errorf("%w: start: %w", ErrHelper, err)
		}
		if c, err = f.send(h, req); err == nil {
			break
		}
		f.retire(h)
	}
	if err != nil {
		return Answer{}, fmt.Errorf("%w: %w", ErrHelper, err)
	}
	r := <-c.done
	f.mu.Lock()
	if f.calls[c.conn] == c {
		delete(f.calls, c.conn)
	}
	record := c.record
	if len(f.calls) == 0 && f.cur != nil && f.cfg.IdleExit > 0 {
		if f.idle == nil {
			f.idle = time.AfterFunc(f.cfg.IdleExit, f.retireIdle)
		} else {
			f.idle.Reset(f.cfg.IdleExit)
		}
	}
	f.mu.Unlock()
	if record != "" {
		_ = os.Remove(record) // it returned: no longer stuck
	}
	if r.Err != nil {
		return Answer{}, r.Err
	}
	return r.Answer, nil
}

func (f *HelperFS) send(h *helper, req Request) (*call, error) {
	h.mu.Lock()
	if h.retired || h.dead != nil {
		h.mu.Unlock()
		return nil, errors.New("helper retired")
	}
	h.next++
	c := &call{h: h, id: h.next, conn: req.Conn, since: time.Now(), done: make(chan helperReply, 1)}
	h.calls[c.id] = c
	h.mu.Unlock()
	f.mu.Lock()
	f.calls[req.Conn] = c
	f.mu.Unlock()

	line, err := json.Marshal(helperRequest{ID: c.id, Request: req})
	if err != nil {
		return nil, err
	}
	// A pipe write of one short line never blocks long: the helper reads
	// its stdin on a goroutine that does nothing else.
	if _, err := h.in.Write(append(line, '\n')); err != nil {
		h.mu.Lock()
		delete(h.calls, c.id)
		h.mu.Unlock()
		f.mu.Lock()
		if f.calls[req.Conn] == c {
			delete(f.calls, req.Conn)
		}
		f.mu.Unlock()
		return nil, fmt.Errorf("send to helper %d: %w", h.pid, err)
	}
	return c, nil
}

// Abandoned is told by the Prober that nobody waits any more for the probe
// of connection conn (it passed its deadline, or its round was cancelled):
// its helper is retired, and with a StateDir the probe is recorded as
// stuck until it returns.
func (f *HelperFS) Abandoned(conn string) {
	f.mu.Lock()
	c := f.calls[conn]
	f.mu.Unlock()
	if c == nil {
		return // it returned meanwhile
	}
	if f.retire(c.h) {
		// The next probe run's probes should not spend their deadline
		// waiting for a new helper to start: start it now.
		go f.warm()
	}
	if f.cfg.StateDir == "" {
		return
	}
	c.h.mu.Lock()
	tid := c.tid
	c.h.mu.Unlock()
	path, err := writeRecord(f.cfg.StateDir, conn, stuckRecord{PID: c.h.pid, PStart: c.h.start, TID: tid, Since: c.since})
	if err != nil {
		return // not recorded: a later run may probe it again
	}
	f.mu.Lock()
	returned := f.calls[conn] != c
	if !returned {
		c.record = path
	}
	f.mu.Unlock()
	if returned {
		_ = os.Remove(path)
	}
}

// Stuck implements StuckKeeper: it reports a probe of conn recorded by an
// earlier process (or this one) whose thread still waits in the kernel.
// The record is checked against /proc/<pid>/task/<tid>/stat, PID, thread id
// and start times, so a record outlived by its probe never says so; one
// that does not hold is removed.
func (f *HelperFS) Stuck(conn string) (time.Time, bool) {
	if f.cfg.StateDir == "" {
		return time.Time{}, false
	}
	f.mu.Lock()
	_, ours := f.calls[conn]
	f.mu.Unlock()
	if ours {
		return time.Time{}, false // the Prober knows its own flights
	}
	return readRecord(f.cfg.StateDir, conn)
}

// Close retires the current helper: it exits once its probes return.
// Probes still in progress are recorded as stuck (Abandoned).
func (f *HelperFS) Close() {
	f.mu.Lock()
	var conns []string
	for conn := range f.calls {
		conns = append(conns, conn)
	}
	h := f.cur
	f.mu.Unlock()
	for _, conn := range conns {
		f.Abandoned(conn)
	}
	if h != nil {
		f.retire(h)
	}
}

// warm starts the current helper if there is none (the Prober calls it
// before a round's deadlines start); a failure is the first probe's to
// report.
func (f *HelperFS) warm() { _, _ = f.current() }

// retireIdle retires the current helper if no probe is in progress.
func (f *HelperFS) retireIdle() {
	f.mu.Lock()
	h := f.cur
	if len(f.calls) > 0 || h == nil {
		h = nil
	}
	f.mu.Unlock()
	if h != nil {
		f.retire(h)
	}
}

// retire retires h, and reports whether it was the current helper.
func (f *HelperFS) retire(h *helper) (current bool) {
	f.mu.Lock()
	if f.cur == h {
		f.cur = nil
		current = true
	}
	f.mu.Unlock()
	h.mu.Lock()
	was := h.retired
	h.retired = true
	h.mu.Unlock()
	if !was {
		f.retired.Add(1)
		_ = h.in.Close() // the helper's end of input: it exits once its probes return
	}
	return current
}

// current returns the helper new probes go to, starting one if needed.
func (f *HelperFS) current() (*helper, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur != nil {
		return f.cur, nil
	}
	h, err := f.spawn()
	if err != nil {
		return nil, err
	}
	f.cur = h
	return h, nil
}
