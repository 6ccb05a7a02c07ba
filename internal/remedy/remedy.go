package remedy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe"
)

// Results of a decision: the result label of the counter and the journal's
// RESULT field.
const (
	Aborted    = "aborted"     // on: 1 was written to the connection's abort file
	WouldAbort = "would_abort" // dry-run: every precondition held
	HeldBack   = "held_back"   // a rate limit or the cap held it back
	Refused    = "refused"     // a precondition did not hold right before acting
	CannotAct  = "cannot_act"  // no fusectl, no write access, no state directory
	Failed     = "failed"      // the write itself failed
)

// ActionAbort is the one action.
const ActionAbort = "abort"

// Remedy decides, after each probe run, what to do about each hung FUSE
// connection, and does it. Run may be called from any goroutine; runs are
// made one at a time.
type Remedy struct {
	cfg    Config
	host   mounts.Host
	prober *probe.Prober
	fresh  probe.FS // the fresh probe right before acting
	log    *zap.Logger

	mu   sync.Mutex
	said map[string]string // by connection identity: the last decision said (daemon)

	// Actions counts decisions by action, result and fstype.
	Actions *prometheus.CounterVec

	now func() time.Time
	// beforeRecheck and beforeFresh, when set (tests), run right before
	// the re-checks and right before the fresh probe.
	beforeRecheck, beforeFresh func(conn string)
}

// New returns a Remedy. prober is the one whose rounds it reads (and asks
// whether a probe is still blocked); fresh makes the fresh probe right
// before acting (a probe.HelperFS of its own, so that the prober's record
// of its stuck probe is not touched); log receives the audit entries.
func New(cfg Config, host mounts.Host, prober *probe.Prober, fresh probe.FS, log *zap.Logger) *Remedy {
	if log == nil {
		log = zap.NewNop()
	}
	return &Remedy{cfg: cfg, host: host, prober: prober, fresh: fresh, log: log, said: map[string]string{},
		Actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mountwatchd_remediation_actions_total",
			Help: "Decisions of the opt-in remediation (--" + "remediation.mode), by action, result (aborted, would_abort, held_back, refused, cannot_act, failed) and fstype.",
		}, []string{"action", "result", "fstype"}),
		now: time.Now}
}

// candidate is one hung FUSE connection of a round.
type candidate struct {
	dev    string
	minor  int
	fstype string
	mounts []*mounts.Mount
	res    probe.Result // the connection's probe result (Hung)
	probed *mounts.Mount
	id     string // identity (fusectl), once known
}

// decision is what was decided about one candidate.
type decision struct {
	c       *candidate
	result  string
	reason  string
	at      time.Time
	waiting int
	earlier *entry // an earlier decision that stands (not said again)
}

// Run decides about every hung FUSE connection of the prober's latest
// round over rep's snapshot, acts in mode on, and puts what it decided in
// rep: the hung findings' details, a warning finding per connection held
// back, rep.Remediation. ctx bounds the fresh probes.
func (r *Remedy) Run(ctx context.Context, rep *finding.Report) {
	if r == nil || r.cfg.Mode == Off || rep == nil || rep.Snapshot == nil || !rep.Snapshot.Live {
		return
	}
	round := r.prober.Latest()
	if round == nil || round.Snapshot != rep.Snapshot {
		return // not this run's round
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cands := candidates(round)
	var ds []decision
	st, stErr := openState(r.cfg.StateDir)
	if st != nil {
		defer st.close()
	}
	fc, fcErr := openFusectl(r.host, r.cfg.Fusectl)
	if fc != nil {
		defer fc.close()
	}
	for _, c := range cands {
		d := r.decide(ctx, c, rep, st, stErr, fc, fcErr)
		if d.result == "" {
			continue // not hung long enough yet
		}
		ds = append(ds, d)
	}
	if st != nil && fc != nil {
		annotateStale(rep, st, fc)
	}
	r.report(rep, ds)
}

// candidates are the round's hung FUSE connections, longest hung first.
func candidates(round *probe.Round) []*candidate {
	byDev := map[string]*candidate{}
	var out []*candidate
	for _, m := range round.Snapshot.Mounts {
		res, ok := round.Results[m.ID]
		if !ok || res.State != probe.Hung || !m.FUSE {
			continue
		}
		c := byDev[m.Dev()]
		if c == nil {
			c = &candidate{dev: m.Dev(), minor: m.Minor, fstype: m.FSType, res: res}
			byDev[m.Dev()] = c
			out = append(out, c)
		}
		c.mounts = append(c.mounts, m)
		if m.Mountpoint == res.Path && c.probed == nil {
			c.probed = m
		}
	}
	for _, c := range out {
		if c.probed == nil {
			c.probed = c.mounts[0]
		}
	}
	slices.SortStableFunc(out, func(a, b *candidate) int { return a.res.Since.Compare(b.res.Since) })
	return out
}

// decide checks each precondition of c, the cheapest and least intrusive
// first, and acts when they all hold.
func (r *Remedy) decide(ctx context.Context, c *candidate, rep *finding.Report, st *state, stErr error, fc *fusectl, fcErr error) decision {
	now := r.now()
	d := decision{c: c, at: now}
	hungFor := now.Sub(c.res.Since)
	if !matchType(r.cfg.FSTypes, c.fstype) {
		d.result, d.reason = Refused, fmt.Sprintf("its type %s is not in --remediation.fstypes (%v)", c.fstype, r.cfg.FSTypes)
		return d
	}
	if r.cfg.ApplyHungFor && hungFor < r.cfg.HungFor {
		return d // not yet: no decision
	}
	if fcErr != nil {
		d.result, d.reason = CannotAct, fcErr.Error()
		return d
	}
	id, err := fc.identity(c.dev, c.minor)
	if err != nil {
		d.result, d.reason = Refused, "the connection is no longer in fusectl: "+err.Error()
		return d
	}
	c.id = id
	if stErr != nil {
		d.result, d.reason = CannotAct, stErr.Error()
		return d
	}
	if e, ok := st.decided(id, r.cfg.Mode); ok {
		d.result, d.reason, d.earlier = e.Result, "decided at "+e.At.UTC().Format(time.RFC3339)+"; each connection at most once", &e
		return d
	}
	if why := st.limit(r.cfg.Mode, now, r.cfg.Interval, r.cfg.MaxPerHour); why != "" {
		d.result, d.reason = HeldBack, why
		return d
	}
	return r.recheck(ctx, c, st, fc, d, hungFor)
}

// recheck re-checks, right before acting, what the round said: the probe is
// still blocked (continuously since it began), fusectl still counts
// waiting requests, the abort file can be written, and (on) a fresh probe
// still does not return; then acts.
func (r *Remedy) recheck(ctx context.Context, c *candidate, st *state, fc *fusectl, d decision, hungFor time.Duration) decision {
	if r.beforeRecheck != nil {
		r.beforeRecheck(c.dev)
	}
	since, blocked := r.prober.Blocked(c.dev)
	if !blocked || !since.Equal(c.res.Since) {
		d.result, d.reason = Refused, "the probe blocked since "+c.res.Since.UTC().Format(time.RFC3339)+" has returned: the connection answered"
		return d
	}
	w, err := fc.waiting(c.minor)
	if err != nil {
		d.result, d.reason = Refused, "fusectl's waiting count cannot be read: "+err.Error()
		return d
	}
	d.waiting = w
	if w == 0 {
		d.result, d.reason = Refused, "fusectl counts no request waiting on the connection"
		return d
	}
	fd, err := fc.openAbort(c.minor)
	if err != nil {
		d.result, d.reason = CannotAct, err.Error()
		return d
	}
	defer unix.Close(fd)
	hung := fmt.Sprintf("hung for %s (probe blocked since %s; %s), %d requests waiting (fusectl)",
		hungFor.Round(time.Second), c.res.Since.UTC().Format(time.RFC3339), r.thresholdSaid(), w)
	if r.cfg.Mode == DryRun {
		d.result = WouldAbort
		d.reason = hung + "; in mode on a fresh probe would be sent and, unanswered within the probe timeout, 1 written to " +
			fc.dir + "/" + fmt.Sprint(c.minor) + "/abort (dry-run sends no fresh probe: it would stay blocked beside the first)"
		return r.record(st, d)
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < r.prober.Timeout() {
		d.result, d.reason = CannotAct, fmt.Sprintf("%s; %s left of the run's time, less than the fresh probe's --probe.timeout (%s): "+
			"no fresh probe was sent (raise --once.timeout)", hung, time.Until(dl).Round(time.Millisecond), r.prober.Timeout())
		if !r.cfg.Once {
			d.reason = strings.TrimSuffix(d.reason, " (raise --once.timeout)")
		}
		return d
	}
	if r.beforeFresh != nil {
		r.beforeFresh(c.dev)
	}
	if answered, why := r.freshProbe(ctx, c); answered {
		d.result, d.reason = Refused, why
		return d
	}
	if _, err := unix.Write(fd, []byte("1")); err != nil {
		d.result, d.reason = Failed, "write 1 to the abort file: "+err.Error()
		return d
	}
	d.result, d.reason = Aborted, hung+"; a fresh probe did not answer within "+r.prober.Timeout().String()+"; wrote 1 to "+
		fc.dir+"/"+fmt.Sprint(c.minor)+"/abort"
	return r.record(st, d)
}

func (r *Remedy) thresholdSaid() string {
	if !r.cfg.ApplyHungFor {
		return "--once sees one probe, not how long: --remediation.hung-for not applied"
	}
	return "threshold --remediation.hung-for=" + r.cfg.HungFor.String()
}

// record writes the decision to the state record; one that cannot be
// recorded is said as such (the abort itself cannot be undone).
func (r *Remedy) record(st *state, d decision) decision {
	e := entry{ConnID: d.c.id, Connection: d.c.dev, Mode: r.cfg.Mode, Result: d.result, At: d.at, FSType: d.c.fstype, MountPoint: d.c.probed.Mountpoint}
	if err := st.add(e, d.at); err != nil {
		d.reason += "; not recorded in the state directory: " + err.Error()
	}
	return d
}

// freshProbe probes the connection once more, right before acting, and
// waits for it at most the probe timeout (and ctx). It reports whether the
// probe answered, and what it answered.
func (r *Remedy) freshProbe(ctx context.Context, c *candidate) (bool, string) {
	type answer struct {
		dev uint64
		err error
	}
	ch := make(chan answer, 1)
	req := probe.Request{Root: string(r.host.FS()), Path: c.probed.Mountpoint, Conn: c.dev, Deep: r.prober.Deep(c.probed)}
	go func() {
		var a answer
		if rfs, ok := r.fresh.(probe.RequestFS); ok {
			var ans probe.Answer
			ans, a.err = rfs.ProbeRequest(req)
			a.dev = ans.Dev
		} else {
			a.dev, a.err = r.fresh.Probe(req.Root, req.Path)
		}
		ch <- a
	}()
	t := time.NewTimer(r.prober.Timeout())
	defer t.Stop()
	select {
	case a := <-ch:
		var errno syscall.Errno
		switch {
		case a.err == nil:
			return true, "a fresh probe right before acting was answered: the connection recovered"
		case errors.As(a.err, &errno) && errno == syscall.ENOTCONN:
			return true, "a fresh probe right before acting answered ENOTCONN: the connection is dead already (never aborted)"
		default:
			return true, "a fresh probe right before acting returned: " + a.err.Error()
		}
	case <-t.C:
		return false, ""
	case <-ctx.Done():
		return true, "no time left for a fresh probe before acting: " + context.Cause(ctx).Error()
	}
}

func matchType(types []string, fstype string) bool {
	return mounts.MatchFSType(types, fstype)
}
