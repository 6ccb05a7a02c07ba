package check

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

type fakeCheck struct {
	id    finding.ID
	kind  finding.Kind
	found []finding.Finding
	err   error
	panic bool
}

func (c fakeCheck) Decl() Decl {
	d := Decl{ID: c.id, Kind: c.kind}
	if c.kind != finding.TableCheck {
		d.Needs = NeedsLive
	}
	return d
}

func (c fakeCheck) Run(context.Context, *Env) Outcome {
	if c.panic {
		panic("boom")
	}
	return Outcome{Findings: c.found, Err: c.err}
}

func TestRunnerIsolatesChecks(t *testing.T) {
	for _, concurrent := range []bool{false, true} {
		t.Run(map[bool]string{false: "sequential", true: "concurrent"}[concurrent], func(t *testing.T) {
			testRunnerIsolatesChecks(t, concurrent)
		})
	}
}

func testRunnerIsolatesChecks(t *testing.T, concurrent bool) {
	s := &mounts.Snapshot{Live: false}
	r := &Runner{Concurrent: concurrent, Checks: []Check{
		fakeCheck{id: "panics", panic: true},
		fakeCheck{id: "fails", err: errors.New("fusectl missing"), found: []finding.Finding{{Check: "fails", Severity: finding.Info}}},
		fakeCheck{id: "live", kind: finding.ProbeCheck, found: []finding.Finding{{Check: "live", Severity: finding.Critical}}},
		fakeCheck{id: "finds", found: []finding.Finding{{Check: "finds", Severity: finding.Warning}, {Check: "finds", Severity: finding.Critical}}},
	}}
	rep := r.Run(context.Background(), s)
	want := []finding.Status{finding.StatusError, finding.StatusError, finding.StatusSkipped, finding.StatusProblems}
	for i, c := range rep.Checks {
		if c.Status != want[i] {
			t.Errorf("check %s: status %s, want %s", c.Check, c.Status, want[i])
		}
	}
	if rep.Checks[2].Reason == "" {
		t.Error("skipped check gives no reason")
	}
	if len(rep.Findings) != 3 || rep.Findings[0].Severity != finding.Critical || rep.Findings[2].Severity != finding.Info {
		t.Errorf("findings not kept or not sorted: %+v", rep.Findings)
	}
	if rep.Status() != finding.StatusProblems {
		t.Errorf("status %s", rep.Status())
	}
}

// barrierCheck finishes only once every check of its barrier has started:
// run one after another, the first would wait for the others until ctx
// ends.
type barrierCheck struct {
	id      finding.ID
	started *sync.WaitGroup
}

func (c barrierCheck) Decl() Decl { return Decl{ID: c.id, Kind: finding.TableCheck} }

func (c barrierCheck) Run(ctx context.Context, _ *Env) Outcome {
	c.started.Done()
	all := make(chan struct{})
	go func() { c.started.Wait(); close(all) }()
	select {
	case <-all:
		return Outcome{Findings: []finding.Finding{{Check: c.id, Severity: finding.Info}}}
	case <-ctx.Done():
		return Outcome{Err: errors.New("the other checks never started while this one ran")}
	}
}

// --once's Runner runs its checks at once, and reports them in their
// order.
func TestConcurrentRunnerRunsChecksAtOnce(t *testing.T) {
	var started sync.WaitGroup
	ids := []finding.ID{"c1", "c2", "c3"}
	started.Add(len(ids))
	var cs []Check
	for _, id := range ids {
		cs = append(cs, barrierCheck{id: id, started: &started})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep := (&Runner{Checks: cs, Concurrent: true}).Run(ctx, &mounts.Snapshot{})
	for i, c := range rep.Checks {
		if c.Check != ids[i] || c.Status != finding.StatusProblems {
			t.Errorf("check %d: %s %s %s, want %s with its finding", i, c.Check, c.Status, c.Error, ids[i])
		}
	}
	if len(rep.Findings) != len(ids) {
		t.Errorf("findings %+v", rep.Findings)
	}
}

func TestReportStatus(t *testing.T) {
	ok := &finding.Report{Snapshot: &mounts.Snapshot{}, Checks: []finding.Result{{Status: finding.StatusOK}, {Status: finding.StatusSkipped}}}
	if ok.Status() != finding.StatusOK {
		t.Errorf("healthy: %s", ok.Status())
	}
	bad := &finding.Report{Snapshot: &mounts.Snapshot{ParseErrors: []mounts.ParseError{{Line: 3}}}}
	if bad.Status() != finding.StatusError {
		t.Errorf("unparsable line, no findings: %s", bad.Status())
	}
}
