package probe

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/flagname"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

// FS is the syscall side of probing. Probe may block for as long as a FUSE
// server does not answer; the Prober runs it on a goroutine of its own and
// never waits for it past its deadline. HelperFS makes the syscalls in
// helper processes, so that no thread of the caller can be held by a
// server; tests replace FS to make a probe block on a channel.
type FS interface {
	// Probe checks the filesystem mounted at path, resolved under root
	// without following any symlink, and returns the device it reached.
	Probe(root, path string) (dev uint64, err error)
}

// RequestFS is an FS that takes the whole Request (SysFS, HelperFS): the
// connection it probes, and whether to make the deep request. The Prober
// uses it when the FS has it.
type RequestFS interface {
	FS
	ProbeRequest(req Request) (dev uint64, err error)
}

func probeOne(fs FS, req Request) (uint64, error) {
	if rfs, ok := fs.(RequestFS); ok {
		return rfs.ProbeRequest(req)
	}
	return fs.Probe(req.Root, req.Path)
}

// Request is one probe of one mount point.
type Request struct {
	Root string // the inspected namespace's root (<procfs>/<pid>/root, or /)
	Path string // the mount point, as the inspected namespace sees it
	// Conn is the connection probed (major:minor): at most one probe of a
	// connection is in the kernel at a time.
	Conn string
	// Deep asks for one request the client cannot answer from its caches
	// besides statfs and stat: the first getdents64 buffer of the root
	// directory (see SysFS).
	Deep bool
}

// remote is implemented by an FS whose Probe makes no syscall on the
// calling thread (HelperFS). The Prober locks the probes of every other FS
// (SysFS, the tests' fakes) to their threads, so that a thread a hung
// probe pinned exits with it.
type remote interface{ remote() }

// warmer is implemented by an FS that has something to start before it can
// probe (HelperFS: its helper process), so that the start is not charged
// to the first probes' deadlines.
type warmer interface{ warm() }

// StuckKeeper is implemented by an FS that remembers probes still stuck in
// the kernel beyond the life of the Prober that sent them (HelperFS, across
// runs of --once): a connection with one is reported hung since that probe
// began, and never probed again until it returns.
type StuckKeeper interface {
	// Stuck returns when the stuck probe of connection conn began.
	Stuck(conn string) (since time.Time, ok bool)
	// Abandoned says nobody waits any more for the probe in progress of
	// connection conn: it passed its deadline, or its round was
	// cancelled.
	Abandoned(conn string)
}

// Defaults for Config (and so for --probe.timeout and --probe.max-blocked).
const (
	DefaultTimeout    = 5 * time.Second
	DefaultMaxBlocked = 32
)

// Config says what to probe and how patiently.
type Config struct {
	// Timeout is how long one probe may take before its connection is
	// reported hung.
	Timeout time.Duration
	// MaxBlocked caps the probes blocked in the kernel at once, each of
	// which pins an OS thread. Past it, connections are not probed.
	MaxBlocked int
	// FSTypes are the filesystem types probed; "fuse.*" matches every FUSE
	// subtype.
	FSTypes []string
	// ShallowFSTypes are the probed types whose probe stops at statfs and
	// stat, without the deep request (Request.Deep): servers for which
	// listing a directory is costly, such as object stores. nil means
	// DefaultShallowFSTypes; an empty slice, none.
	ShallowFSTypes []string
}

// DefaultShallowFSTypes are the object-store FUSE clients, whose directory
// listing is a bucket listing (s3fs also sends a HEAD per entry).
var DefaultShallowFSTypes = []string{"fuse.s3fs", "fuse.gcsfuse", "fuse.goofys", "fuse.mountpoint-s3", "fuse.blobfuse2", "fuse.blobfuse", "fuse.rclone"}

// DefaultProbeFSTypes are FUSE and the remote filesystems, whose server
// lives in another process or on another machine (mounts.DefaultProbedFSTypes).
var DefaultProbeFSTypes = mounts.DefaultProbedFSTypes()

// State is the outcome of probing one mount.
type State int

// Probe outcomes.
const (
	OK          State = iota // answered
	Failed                   // answered with an error (Errno)
	Hung                     // did not answer by the deadline, or an earlier probe is still blocked
	NotProbed                // skipped: the cap on blocked probes was reached, or the check was cancelled
	Unreachable              // no path leads to it (shadowed), or it vanished
)

func (s State) String() string {
	return [...]string{"ok", "failed", "hung", "not_probed", "unreachable"}[s]
}

// Result is what probing said about one mount.
type Result struct {
	State State
	Errno syscall.Errno // Failed
	Err   error         // the whole error, for Failed and Unreachable
	Since time.Time     // Hung: when the blocked probe started
	Path  string        // the mount point probed for this connection
	// Connection is set when the result speaks for the whole connection
	// (the first reachable mount of it was probed); unset for a bind
	// mount's own directory probed after the connection answered.
	Connection bool
	// Reason says why a mount was not probed or is unreachable.
	Reason string
}

// Stats is the health of the live prober: how many probes are blocked
// in the kernel right now, and totals since start.
type Stats struct {
	Connections int    `json:"connections"` // distinct filesystems (major:minor) probed in this run
	Blocked     int    `json:"blocked"`     // probes blocked in the kernel now
	NotProbed   int    `json:"not_probed"`  // connections skipped: one probe already blocked, or the cap reached
	Probes      uint64 `json:"probes_total"`
	Timeouts    uint64 `json:"timeouts_total"`
}

// Round is one pass of the prober over a snapshot: a result for every
// probed mount, by mount id.
type Round struct {
	Snapshot *mounts.Snapshot
	Results  map[int]Result
	Stats    Stats
	// Timeout is how long each probe of the round could take before its
	// connection was reported hung.
	Timeout time.Duration
}

// Prober probes connections (filesystems, by major:minor), at most one probe
// per connection at a time, never waiting past its deadline.
type Prober struct {
	cfg Config
	fs  FS

	mu      sync.Mutex
	flights map[string]*flight // connections with a probe in the kernel

	probes, timeouts atomic.Uint64

	roundMu sync.Mutex
	last    atomic.Pointer[Round]
}

type flight struct {
	dev   string
	start time.Time
	done  chan struct{} // closed when the probe returned
	res   map[int]Result
}

// NewProber returns a prober using fs (SysFS on a real system).
func NewProber(cfg Config, fs FS) *Prober {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxBlocked <= 0 {
		cfg.MaxBlocked = DefaultMaxBlocked
	}
	if cfg.FSTypes == nil {
		cfg.FSTypes = DefaultProbeFSTypes
	}
	if cfg.ShallowFSTypes == nil {
		cfg.ShallowFSTypes = DefaultShallowFSTypes
	}
	return &Prober{cfg: cfg, fs: fs, flights: map[string]*flight{}}
}

// Probes reports whether mounts of this type are probed.
func (p *Prober) Probes(m *mounts.Mount) bool {
	return mounts.MatchFSType(p.cfg.FSTypes, m.FSType)
}

// Deep reports whether probes of mounts of this type make the deep request.
func (p *Prober) Deep(m *mounts.Mount) bool {
	return !mounts.MatchFSType(p.cfg.ShallowFSTypes, m.FSType)
}

// Timeout is how long a probe may take before its connection is reported
// hung.
func (p *Prober) Timeout() time.Duration { return p.cfg.Timeout }

// Latest returns the last finished round, or nil. It never blocks.
func (p *Prober) Latest() *Round { return p.last.Load() }

// Stats is the prober's state now.
func (p *Prober) Stats() Stats {
	p.mu.Lock()
	blocked := len(p.flights)
	p.mu.Unlock()
	st := Stats{Blocked: blocked, Probes: p.probes.Load(), Timeouts: p.timeouts.Load()}
	if r := p.Latest(); r != nil {
		st.Connections, st.NotProbed = r.Stats.Connections, r.Stats.NotProbed
	}
	return st
}

// Round probes every probed connection of s anew and returns the result:
// a FUSE server that dies, hangs or recovers changes nothing in the mount
// table, so a round is never reused because the table is unchanged. The
// probing checks of one run of the checks share one round, which the
// check.Runner makes and passes to them. Round returns within the probe
// timeout of the last probe started, whatever the mounts do.
func (p *Prober) Round(ctx context.Context, s *mounts.Snapshot) *Round {
	p.roundMu.Lock()
	defer p.roundMu.Unlock()
	r := p.round(ctx, s)
	p.last.Store(r)
	return r
}

// conn is one connection to probe: its reachable mounts, the one to probe
// first, then one per other root directory (a bind mount of a directory
// can be stale on its own, as an NFS subdirectory export can).
type conn struct {
	dev     string
	mounts  []*mounts.Mount // every mount of the connection
	targets []*mounts.Mount // reachable mounts to probe, in order
}

func (p *Prober) connections(s *mounts.Snapshot) []*conn {
	var out []*conn
	seen := map[string]bool{}
	for _, m := range s.Mounts {
		dev := m.Dev()
		if seen[dev] || !p.Probes(m) {
			continue
		}
		seen[dev] = true
		c := &conn{dev: dev, mounts: s.ByDev(dev)}
		roots := map[string]bool{}
		for _, mm := range c.mounts {
			if s.Reachable(mm) && !roots[mm.Root] {
				roots[mm.Root] = true
				c.targets = append(c.targets, mm)
			}
		}
		// The filesystem's own root first: it answers for the connection.
		slices.SortStableFunc(c.targets, func(a, b *mounts.Mount) int {
			return len(a.Root) - len(b.Root)
		})
		out = append(out, c)
	}
	return out
}

func (p *Prober) round(ctx context.Context, s *mounts.Snapshot) *Round {
	r := &Round{Snapshot: s, Results: map[int]Result{}, Timeout: p.cfg.Timeout}
	conns := p.connections(s)
	r.Stats.Connections = len(conns)

	x := &roundRun{p: p, r: r, root: s.Host.Path("/"), results: make(chan *flight, len(conns))}
	x.triage(conns)
	if w, ok := p.fs.(warmer); ok && len(x.queue) > 0 {
		w.warm() // before any deadline runs
	}
	for len(x.queue) > 0 || len(x.active) > 0 {
		if !x.start() {
			break
		}
		x.wait(ctx)
	}
	p.mu.Lock()
	r.Stats.Blocked = len(p.flights)
	p.mu.Unlock()
	r.Stats.Probes, r.Stats.Timeouts = p.probes.Load(), p.timeouts.Load()
	return r
}

// roundRun is a round in progress: the connections still to probe and the
// probes in flight.
type roundRun struct {
	p       *Prober
	r       *Round
	root    string
	queue   []*conn
	active  []running
	results chan *flight // buffered for every flight of the round
}

type running struct {
	c        *conn
	f        *flight
	deadline time.Time
}

func (x *roundRun) setAll(c *conn, res Result) {
	for _, m := range c.mounts {
		x.r.Results[m.ID] = res
	}
}

// triage queues the connections to probe; the others get their result now.
func (x *roundRun) triage(conns []*conn) {
	keeper, _ := x.p.fs.(StuckKeeper)
	x.p.mu.Lock()
	defer x.p.mu.Unlock()
	for _, c := range conns {
		switch f := x.p.flights[c.dev]; {
		case len(c.targets) == 0:
			x.setAll(c, Result{State: Unreachable, Reason: "every mount of this connection is shadowed by another mount"})
		case f != nil:
			// Never a second probe to a connection whose first is blocked.
			x.setAll(c, Result{State: Hung, Since: f.start, Path: c.targets[0].Mountpoint,
				Reason: "an earlier probe is still blocked"})
		default:
			if keeper != nil {
				// Nor to one whose probe by an earlier process is,
				// recorded once abandoned: past its deadline, or its
				// run ended before it.
				if since, ok := keeper.Stuck(c.dev); ok {
					x.setAll(c, Result{State: Hung, Since: since, Path: c.targets[0].Mountpoint,
						Reason: "an earlier run's probe is still blocked"})
					continue
				}
			}
			x.queue = append(x.queue, c)
		}
	}
}

// start starts probes while the cap allows. It returns false when none is
// in flight and the cap is reached: the queue is then not probed.
func (x *roundRun) start() bool {
	p := x.p
	p.mu.Lock()
	for len(x.queue) > 0 && len(p.flights) < p.cfg.MaxBlocked {
		c := x.queue[0]
		x.queue = x.queue[1:]
		f := &flight{dev: c.dev, start: time.Now(), done: make(chan struct{})}
		p.flights[c.dev] = f
		p.probes.Add(1)
		go p.fly(f, x.root, c, x.results)
		x.active = append(x.active, running{c, f, f.start.Add(p.cfg.Timeout)})
	}
	capped := len(x.active) == 0 && len(x.queue) > 0
	p.mu.Unlock()
	if capped {
		for _, c := range x.queue {
			x.setAll(c, Result{State: NotProbed,
				Reason: fmt.Sprintf("%d probes are blocked, the cap (--"+flagname.ProbeMaxBlocked+")", p.cfg.MaxBlocked)})
		}
		x.r.Stats.NotProbed += len(x.queue)
		return false
	}
	return true
}

// wait waits for a probe to answer, the next deadline or ctx.
func (x *roundRun) wait(ctx context.Context) {
	next := x.active[0].deadline
	for _, a := range x.active {
		if a.deadline.Before(next) {
			next = a.deadline
		}
	}
	timer := time.NewTimer(time.Until(next))
	defer timer.Stop()
	select {
	case f := <-x.results:
		x.answered(f)
	case <-timer.C:
		x.timeouts(time.Now())
	case <-ctx.Done():
		for _, a := range x.active {
			x.abandoned(a.c)
			x.setAll(a.c, Result{State: NotProbed, Reason: "check cancelled: " + context.Cause(ctx).Error()})
		}
		for _, c := range x.queue {
			x.setAll(c, Result{State: NotProbed, Reason: "check cancelled: " + context.Cause(ctx).Error()})
		}
		x.r.Stats.NotProbed += len(x.active) + len(x.queue)
		x.active, x.queue = nil, nil
	}
}

// answered takes the results of flight f.
func (x *roundRun) answered(f *flight) {
	for i, a := range x.active {
		if a.f == f {
			for id, res := range f.res {
				x.r.Results[id] = res
			}
			x.active = slices.Delete(x.active, i, i+1)
			return
		}
	}
}

// timeouts reports the probes past their deadline at now as hung.
func (x *roundRun) timeouts(now time.Time) {
	x.active = slices.DeleteFunc(x.active, func(a running) bool {
		if now.Before(a.deadline) {
			return false
		}
		select {
		case <-a.f.done: // answered just now; its result is in results
			return false
		default:
		}
		x.p.timeouts.Add(1)
		x.abandoned(a.c)
		x.setAll(a.c, Result{State: Hung, Since: a.f.start, Path: a.c.targets[0].Mountpoint,
			Reason: fmt.Sprintf("no answer within %s", x.p.cfg.Timeout)})
		return true
	})
}

// abandoned tells a StuckKeeper FS that nobody waits for c's probe any more.
func (x *roundRun) abandoned(c *conn) {
	if keeper, ok := x.p.fs.(StuckKeeper); ok {
		keeper.Abandoned(c.dev)
	}
}

// fly runs one connection's probes. It may block in the kernel for ever;
// nothing waits for it past its deadline, and it leaves the flights table
// when it returns, so the next round may probe the connection again.
func (p *Prober) fly(f *flight, root string, c *conn, results chan<- *flight) {
	// A probe that blocks pins its OS thread in the kernel. Locked to its
	// goroutine, a thread whose probe outlived the deadline exits with the
	// goroutine instead of joining the runtime's idle pool, so once a hung
	// server answers again the process is back to its thread count.
	// A probe made by a helper process pins nothing of ours: it waits on a
	// channel.
	_, remote := p.fs.(remote)
	pin := !remote
	if pin {
		runtime.LockOSThread()
	}
	f.res = probeConn(p.fs, root, c, p.Deep)
	if pin && time.Since(f.start) < p.cfg.Timeout {
		runtime.UnlockOSThread()
	}
	p.mu.Lock()
	delete(p.flights, f.dev)
	p.mu.Unlock()
	close(f.done)
	results <- f // buffered for every flight of its round
}

func probeConn(fs FS, root string, c *conn, deep func(*mounts.Mount) bool) map[int]Result {
	res := map[int]Result{}
	var connResult *Result
	for _, m := range c.targets {
		// One deep request per connection: by the mount that answers for it.
		dev, err := probeOne(fs, Request{Root: root, Path: m.Mountpoint, Conn: c.dev, Deep: connResult == nil && deep(m)})
		pr := classifyProbe(m, dev, err)
		if pr.State == NotProbed { // our failure: nothing of this connection is known
			for _, mm := range c.mounts {
				res[mm.ID] = pr
			}
			return res
		}
		if connResult == nil {
			if pr.State == Unreachable {
				res[m.ID] = pr // vanished or replaced; try the next mount
				continue
			}
			// The first mount that answers speaks for the connection:
			// a dead server fails every mount of it.
			pr.Connection = true
			connResult = &pr
			if pr.State == Failed {
				for _, mm := range c.mounts {
					res[mm.ID] = pr
				}
				return res
			}
		}
		for _, mm := range c.mounts {
			if mm.Root == m.Root {
				res[mm.ID] = pr
			}
		}
	}
	for _, mm := range c.mounts {
		if _, ok := res[mm.ID]; !ok {
			if connResult != nil {
				res[mm.ID] = *connResult // shadowed mounts share the connection's fate
			} else {
				res[mm.ID] = Result{State: Unreachable, Reason: "no mount of this connection could be reached"}
			}
		}
	}
	return res
}

// NamespaceErr is the error of a round some of whose probes could not be
// made for a reason of ours: the inspected namespace could not be reached
// (its root could not be opened), or the probe helper failed. Those mounts
// were not probed, and the probing checks report it as their error.
func (r *Round) NamespaceErr() error {
	for _, res := range r.Results {
		if res.State == NotProbed && (errors.Is(res.Err, mounts.ErrNamespaceUnreachable) || errors.Is(res.Err, ErrHelper)) {
			return res.Err
		}
	}
	return nil
}
