package check

import (
	"context"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe"
)

// runOne runs c over s as a Runner runs it, with the Env its Decl asks
// for, and returns what it found and its error.
func runOne(c Check, s *mounts.Snapshot) ([]finding.Finding, error) {
	return runProbed(nil, c, s)
}

// runProbed is runOne with p making the probe round.
func runProbed(p *probe.Prober, c Check, s *mounts.Snapshot) ([]finding.Finding, error) {
	x := &run{Runner: &Runner{Checks: []Check{c}, Prober: p}, s: s}
	defer x.close()
	_, out := x.execute(context.Background(), c)
	return out.Findings, out.Err
}
