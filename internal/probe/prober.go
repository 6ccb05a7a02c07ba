package probe

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

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
// connection it probes, and whether to make the deep request; and that
// says what the probe's own stat and listing found of the mount's root
// (Answer). The Prober uses it when the FS has it.
type RequestFS interface {
	FS
	ProbeRequest(req Request) (Answer, error)
}

// Answer is what an answered probe found: the device the path led to, and
// the mount root's type and link count from the probe's own fstat, and
// what the deep request's one getdents64 saw. Nothing in it costs a
// request of its own.
type Answer struct {
	Dev   uint64 `json:"dev,omitempty"`
	Mode  uint32 `json:"mode,omitempty"`  // st_mode of the root
	Nlink uint64 `json:"nlink,omitempty"` // st_nlink of the root
	// Listed says the deep request read the root directory: Names is how
	// many entries other than . and .. its first buffer held, Gone that
	// the server answered the listing with ENOENT.
	Listed bool `json:"listed,omitempty"`
	Names  int  `json:"names,omitempty"`
	Gone   bool `json:"gone,omitempty"`
}

func probeOne(fs FS, req Request) (Answer, error) {
	if rfs, ok := fs.(RequestFS); ok {
		return rfs.ProbeRequest(req)
	}
	dev, err := fs.Probe(req.Root, req.Path)
	return Answer{Dev: dev}, err
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
	// RootDeleted says the probe found the mount's root directory deleted
	// on the server, with the mount table unchanged (another client removed
	// it, or the root of the FUSE mount itself was removed): RootEvidence
	// says what showed it (see rootDeleted).
	RootDeleted  bool
	RootEvidence string
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

// Blocked reports whether a probe of connection conn is in the kernel now
// and has not returned, and since when: this prober's own, or one an
// earlier process left stuck (StuckKeeper). It never blocks and sends no
// probe: package remedy asks it right before it acts.
func (p *Prober) Blocked(conn string) (since time.Time, ok bool) {
	p.mu.Lock()
	f := p.flights[conn]
	p.mu.Unlock()
	if f != nil {
		select {
		case <-f.done:
		default:
			return f.start, true
		}
	}
	if keeper, isKeeper := p.fs.(StuckKeeper); isKeeper {
		return keeper.Stuck(conn)
	}
	return time.Time{}, false
}
