package daemon

import (
	"errors"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mountwatchd/mountwatchd/internal/check"
	"github.com/mountwatchd/mountwatchd/internal/export"
	"github.com/mountwatchd/mountwatchd/internal/finding"
)

// publisher says what the loop found where operators look: each check's
// runs for the metrics (export.CheckState), one journal entry per problem
// that appears, changes or clears (through the Tracker), one log line per
// change of a check's error or skip reason, and sd_notify READY and
// STATUS. Owned by the loop.
type publisher struct {
	log     *zap.Logger
	notifyF func(string) error
	checks  []check.Check
	tracker *check.Tracker
	stats   map[finding.ID]*export.CheckState

	checkMsg map[finding.ID]*said // the last error or skip reason logged per check
	ready    bool
	status   said // the last STATUS= sent
}

func newPublisher(cfg Config) publisher {
	p := publisher{log: cfg.Log, notifyF: cfg.Notify, checks: cfg.Checks, tracker: check.NewTracker(),
		stats: map[finding.ID]*export.CheckState{}, checkMsg: map[finding.ID]*said{}}
	for _, c := range cfg.Checks {
		d := c.Decl()
		p.stats[d.ID] = &export.CheckState{ID: d.ID, Kind: d.Kind}
		p.checkMsg[d.ID] = &said{}
	}
	return p
}

// checkStates is every check's state, in catalogue order.
func (p *publisher) checkStates() []export.CheckState {
	var out []export.CheckState
	for _, c := range p.checks {
		out = append(out, *p.stats[c.Decl().ID])
	}
	return out
}

// recordRun counts a lane's run that ended at end.
func (p *publisher) recordRun(rep *finding.Report, end time.Time) {
	for _, c := range rep.Checks {
		st := p.stats[c.Check]
		if st == nil || (c.Status == finding.StatusSkipped && c.Cause == "") {
			continue // skipped for a captured table: not a run
		}
		st.Runs++
		if c.Status == finding.StatusError {
			st.Errors++
		}
		p.logCheckState(c)
		st.Duration, st.LastRun, st.Status = c.Duration, end, c.Status
	}
}

// logCheckState logs a check that failed or was skipped (check_success 0)
// once per distinct reason, not on every run (a probe run is every 30s),
// and once when it works again.
func (p *publisher) logCheckState(c finding.Result) {
	var msg string
	switch c.Status {
	case finding.StatusError:
		msg = "error: " + c.Error
	case finding.StatusSkipped:
		msg = "skipped: " + c.Reason
	default:
		if c.Reason != "" { // what a check that ran left out on purpose (check.Outcome.Notes)
			msg = "note: " + c.Reason
		}
	}
	memo := p.checkMsg[c.Check]
	if memo == nil { // a result of a check not registered (should not happen)
		memo = &said{}
		p.checkMsg[c.Check] = memo
	}
	prev, changed := memo.update(msg)
	if !changed {
		return
	}
	log := p.log.With(zap.String("check", string(c.Check)))
	switch {
	case c.Status == finding.StatusError:
		log.Error("check failed", zap.String("error", c.Error))
	case c.Status == finding.StatusSkipped:
		log.Warn("check skipped: it cannot see what it needs", zap.String("reason", c.Reason))
	case c.Reason != "":
		log.Info("check leaves part of the system out", zap.String("reason", c.Reason))
	case strings.HasPrefix(prev, "error: ") || strings.HasPrefix(prev, "skipped: "):
		log.Info("check runs again", zap.String("previously", prev))
	}
}

// stamp sets when each finding of rep was first seen and logs what
// appeared, changed or cleared since the last report.
func (p *publisher) stamp(rep *finding.Report) {
	p.tracker.Stamp(time.Now(), rep.Findings)
	for _, c := range p.tracker.Changes() {
		export.LogChange(p.log, c)
	}
}

// notify sends STATUS= when the summary changes, the summary once every
// lane has a result (summarize), READY=1 once every lane has one
// (complete); readErr is the error of the last read of the table.
func (p *publisher) notify(st *export.State, summarize, complete bool, readErr string) {
	if p.notifyF == nil {
		return
	}
	var status string
	switch {
	case st.Report != nil && summarize:
		status = export.Summary(st.Report)
		if readErr != "" {
			status = export.Truncate("mount table unreadable, last results: "+status, export.SummaryMax)
		}
	case readErr != "":
		status = export.ErrorSummary(errors.New(readErr))
	default:
		status = "starting: first checks running"
	}
	msg := ""
	if !p.ready && complete {
		p.ready = true
		msg = "READY=1\n"
	}
	if _, changed := p.status.update(status); changed || msg != "" {
		if err := p.notifyF(msg + "STATUS=" + status); err != nil {
			p.log.Warn("systemd notify failed", zap.Error(err))
		}
	}
}
