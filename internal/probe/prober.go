package probe

import (
	"context"
	"errors"
	"fmt"
	"path"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/resolve"
)

// FS is the syscall side of probing. Probe may block in the kernel for as
// long as a FUSE server does not answer; the Prober runs it on a goroutine of
// its own and never waits for it past its deadline. Tests replace FS to make
// a probe block on a channel.
type FS interface {
	// Probe checks the filesystem mounted at path, resolved under root
	// without following any symlink, and returns the device it reached.
	Probe(root, path string) (dev uint64, err error)
}

// SysFS probes with openat2(O_PATH, RESOLVE_NO_SYMLINKS), fstatfs and
// fstat (openat2 through package resolve, which still resolves where a
// system call filter refuses openat2, as systemd's does under the unit). fstatfs is the request a FUSE server must answer (the kernel may
// answer stat from its attribute cache); fstat gives the device, which tells
// whether the path still leads to the mount that was meant.
type SysFS struct{}

// Probe implements FS.
func (SysFS) Probe(root, p string) (uint64, error) {
	// Opening the namespace's root is our part of the path: its failure
	// (no CAP_SYS_PTRACE, the process exited) says nothing of the mount.
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, mounts.NamespaceRootError(root, rootPID(root), err)
	}
	defer unix.Close(rfd)
	rel := strings.TrimPrefix(path.Clean(p), "/")
	if rel == "" {
		rel = "."
	}
	fd, err := resolve.Openat2(rfd, rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", p, err)
	}
	defer unix.Close(fd)
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", p, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", p, err)
	}
	return st.Dev, nil
}

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
}

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
		cfg.Timeout = 5 * time.Second
	}
	if cfg.MaxBlocked <= 0 {
		cfg.MaxBlocked = 32
	}
	if cfg.FSTypes == nil {
		cfg.FSTypes = DefaultProbeFSTypes
	}
	return &Prober{cfg: cfg, fs: fs, flights: map[string]*flight{}}
}

// Probes reports whether mounts of this type are probed.
func (p *Prober) Probes(m *mounts.Mount) bool {
	return mounts.MatchFSType(p.cfg.FSTypes, m.FSType)
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
	root := s.Host.Path("/")

	setAll := func(c *conn, res Result) {
		for _, m := range c.mounts {
			r.Results[m.ID] = res
		}
	}
	type running struct {
		c        *conn
		f        *flight
		deadline time.Time
	}
	var (
		queue   []*conn
		active  []running
		results = make(chan *flight, len(conns))
	)
	p.mu.Lock()
	for _, c := range conns {
		switch f := p.flights[c.dev]; {
		case len(c.targets) == 0:
			setAll(c, Result{State: Unreachable, Reason: "every mount of this connection is shadowed by another mount"})
		case f != nil:
			// Never a second probe to a connection whose first is blocked.
			setAll(c, Result{State: Hung, Since: f.start, Path: c.targets[0].Mountpoint,
				Reason: "an earlier probe is still blocked"})
		default:
			queue = append(queue, c)
		}
	}
	p.mu.Unlock()

	for len(queue) > 0 || len(active) > 0 {
		// Start probes while the cap allows.
		p.mu.Lock()
		for len(queue) > 0 && len(p.flights) < p.cfg.MaxBlocked {
			c := queue[0]
			queue = queue[1:]
			f := &flight{dev: c.dev, start: time.Now(), done: make(chan struct{})}
			p.flights[c.dev] = f
			p.probes.Add(1)
			go p.fly(f, root, c, results)
			active = append(active, running{c, f, f.start.Add(p.cfg.Timeout)})
		}
		capped := len(active) == 0 && len(queue) > 0
		p.mu.Unlock()
		if capped {
			for _, c := range queue {
				setAll(c, Result{State: NotProbed,
					Reason: fmt.Sprintf("%d probes are blocked, the cap (--probe.max-blocked)", p.cfg.MaxBlocked)})
			}
			r.Stats.NotProbed += len(queue)
			break
		}

		next := active[0].deadline
		for _, a := range active {
			if a.deadline.Before(next) {
				next = a.deadline
			}
		}
		timer := time.NewTimer(time.Until(next))
		select {
		case f := <-results:
			for i, a := range active {
				if a.f == f {
					for id, res := range f.res {
						r.Results[id] = res
					}
					active = slices.Delete(active, i, i+1)
					break
				}
			}
		case <-timer.C:
			now := time.Now()
			active = slices.DeleteFunc(active, func(a running) bool {
				if now.Before(a.deadline) {
					return false
				}
				select {
				case <-a.f.done: // answered just now; its result is in results
					return false
				default:
				}
				p.timeouts.Add(1)
				setAll(a.c, Result{State: Hung, Since: a.f.start, Path: a.c.targets[0].Mountpoint,
					Reason: fmt.Sprintf("no answer within %s", p.cfg.Timeout)})
				return true
			})
		case <-ctx.Done():
			for _, a := range active {
				setAll(a.c, Result{State: NotProbed, Reason: "check cancelled: " + context.Cause(ctx).Error()})
			}
			for _, c := range queue {
				setAll(c, Result{State: NotProbed, Reason: "check cancelled: " + context.Cause(ctx).Error()})
			}
			r.Stats.NotProbed += len(active) + len(queue)
			active, queue = nil, nil
		}
		timer.Stop()
	}

	p.mu.Lock()
	r.Stats.Blocked = len(p.flights)
	p.mu.Unlock()
	r.Stats.Probes, r.Stats.Timeouts = p.probes.Load(), p.timeouts.Load()
	return r
}

// fly runs one connection's probes. It may block in the kernel for ever;
// nothing waits for it past its deadline, and it leaves the flights table
// when it returns, so the next round may probe the connection again.
func (p *Prober) fly(f *flight, root string, c *conn, results chan<- *flight) {
	// A probe that blocks pins its OS thread in the kernel. Locked to its
	// goroutine, a thread whose probe outlived the deadline exits with the
	// goroutine instead of joining the runtime's idle pool, so once a hung
	// server answers again the process is back to its thread count.
	runtime.LockOSThread()
	f.res = probeConn(p.fs, root, c)
	if time.Since(f.start) < p.cfg.Timeout {
		runtime.UnlockOSThread()
	}
	p.mu.Lock()
	delete(p.flights, f.dev)
	p.mu.Unlock()
	close(f.done)
	results <- f // buffered for every flight of its round
}

func probeConn(fs FS, root string, c *conn) map[int]Result {
	res := map[int]Result{}
	var connResult *Result
	for _, m := range c.targets {
		dev, err := fs.Probe(root, m.Mountpoint)
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

// rootPID is the PID of a <procfs>/<pid>/root path, 0 for any other root.
func rootPID(root string) int {
	dir, base := path.Split(path.Clean(root))
	if base != "root" {
		return 0
	}
	pid, err := strconv.Atoi(path.Base(path.Clean(dir)))
	if err != nil {
		return 0
	}
	return pid
}

// NamespaceErr is the error of a round some of whose probes could not reach
// the inspected namespace (its root could not be opened): those mounts were
// not probed, and the probing checks report it as their error.
func (r *Round) NamespaceErr() error {
	for _, res := range r.Results {
		if res.State == NotProbed && errors.Is(res.Err, mounts.ErrNamespaceUnreachable) {
			return res.Err
		}
	}
	return nil
}

func classifyProbe(m *mounts.Mount, dev uint64, err error) Result {
	pr := Result{Path: m.Mountpoint}
	if errors.Is(err, mounts.ErrNamespaceUnreachable) {
		pr.State, pr.Err, pr.Reason = NotProbed, err, "the inspected namespace could not be reached"
		return pr
	}
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			switch errno {
			case syscall.ENOENT, syscall.ENOTDIR, syscall.ELOOP, syscall.EXDEV:
				pr.State, pr.Err, pr.Reason = Unreachable, err, "the mount point no longer leads to this mount"
				return pr
			}
		}
		pr.State, pr.Errno, pr.Err = Failed, errno, err
		return pr
	}
	if unix.Major(dev) != uint32(m.Major) || unix.Minor(dev) != uint32(m.Minor) {
		pr.State, pr.Reason = Unreachable, fmt.Sprintf("the mount point leads to device %d:%d, not this mount", unix.Major(dev), unix.Minor(dev))
		return pr
	}
	pr.State = OK
	return pr
}
