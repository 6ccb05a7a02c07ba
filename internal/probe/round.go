package probe

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/flagname"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

// round runs one round: triage the connections, start probes under the cap,
// wait for answers or deadlines (round.go holds the steps).
func (p *Prober) round(ctx context.Context, s *mounts.Snapshot) *Round {
	r := &Round{Snapshot: s, Results: map[int]Result{}, Timeout: p.cfg.Timeout}
	conns := p.connections(s)
	r.Stats.Connections = len(conns)

	x := &roundRun{p: p, r: r, root: string(s.Host.FS()), results: make(chan *flight, len(conns))}
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
	var (
		connResult *Result
		connRoot   string
		links      = linkCounts{}
	)
	for _, m := range c.targets {
		// One deep request per connection: by the mount that answers for it.
		ans, err := probeOne(fs, Request{Root: root, Path: m.Mountpoint, Conn: c.dev, Deep: connResult == nil && deep(m)})
		pr := classifyProbe(m, ans, err)
		links.judge(ans, &pr)
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
			connResult, connRoot = &pr, m.Root
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
				// Shadowed mounts share the connection's fate, not the
				// state of a root directory that was not probed.
				pr := *connResult
				if mm.Root != connRoot {
					pr.RootDeleted, pr.RootEvidence = false, ""
				}
				res[mm.ID] = pr
			} else {
				res[mm.ID] = Result{State: Unreachable, Reason: "no mount of this connection could be reached"}
			}
		}
	}
	return res
}

// linkCounts remembers, for the probes of one connection, whether its
// server fills in directories' link counts: one whose listed root has
// names and link count 0 does not (go-fuse leaves it 0), and then link
// count 0 says nothing of its other roots, which are not listed (one deep
// request per connection).
type linkCounts struct{ none bool }

func (l *linkCounts) judge(a Answer, pr *Result) {
	if a.Mode&unix.S_IFMT == unix.S_IFDIR && a.Nlink == 0 && a.Listed && a.Names > 0 {
		l.none = true
	}
	if l.none && pr.RootDeleted && !a.Listed && pr.Err == nil {
		pr.RootDeleted, pr.RootEvidence = false, ""
	}
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
