package check

import (
	"context"
	"errors"
	"testing"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

type fakeCheck struct {
	id    ID
	kind  Kind
	found []Finding
	err   error
	panic bool
}

func (c fakeCheck) Decl() Decl {
	d := Decl{ID: c.id, Kind: c.kind}
	if c.kind != TableCheck {
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
	s := &mounts.Snapshot{Live: false}
	r := &Runner{Checks: []Check{
		fakeCheck{id: "panics", panic: true},
		fakeCheck{id: "fails", err: errors.New("fusectl missing"), found: []Finding{{Check: "fails", Severity: Info}}},
		fakeCheck{id: "live", kind: ProbeCheck, found: []Finding{{Check: "live", Severity: Critical}}},
		fakeCheck{id: "finds", found: []Finding{{Check: "finds", Severity: Warning}, {Check: "finds", Severity: Critical}}},
	}}
	rep := r.Run(context.Background(), s)
	want := []Status{StatusError, StatusError, StatusSkipped, StatusProblems}
	for i, c := range rep.Checks {
		if c.Status != want[i] {
			t.Errorf("check %s: status %s, want %s", c.Check, c.Status, want[i])
		}
	}
	if rep.Checks[2].Reason == "" {
		t.Error("skipped check gives no reason")
	}
	if len(rep.Findings) != 3 || rep.Findings[0].Severity != Critical || rep.Findings[2].Severity != Info {
		t.Errorf("findings not kept or not sorted: %+v", rep.Findings)
	}
	if rep.Status() != StatusProblems {
		t.Errorf("status %s", rep.Status())
	}
}

func TestReportStatus(t *testing.T) {
	ok := &Report{Snapshot: &mounts.Snapshot{}, Checks: []Result{{Status: StatusOK}, {Status: StatusSkipped}}}
	if ok.Status() != StatusOK {
		t.Errorf("healthy: %s", ok.Status())
	}
	bad := &Report{Snapshot: &mounts.Snapshot{ParseErrors: []mounts.ParseError{{Line: 3}}}}
	if bad.Status() != StatusError {
		t.Errorf("unparsable line, no findings: %s", bad.Status())
	}
}
