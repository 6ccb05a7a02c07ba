package check

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/flagname"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/walk"
)

// scanner is the skeleton the scanning checks (opaque_propagation,
// stray_overlay_xattr) share: a walker kept between runs, whose cursor lets
// the next run resume where a budget stopped this one, the lock that keeps
// one run at a time, and scan, one run of a pass. A check supplies only a
// scanPass: its roots, its visit and its findings.
type scanner struct {
	mu sync.Mutex
	w  walk.Walker
	// hits guards what a visit records: with Limits.Workers > 1 the walker
	// calls visit from several goroutines at once.
	hits sync.Mutex
}

// Stats is the progress of the check's scan since the check value was made
// (what Outcome.Scan reports).
func (s *scanner) Stats() walk.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Stats
}

// scanPass is what a scanning check supplies for one run.
type scanPass struct {
	id       finding.ID
	limits   walk.ScanLimits
	fullPass bool // a run that stops before its pass is complete is an error (--once)
	// errs are the run's errors found before the walk (they come first).
	errs []error
	// prepare, when set, runs with the walker begun, before the walk.
	prepare func()
	// roots starts a pass: the check resets what it found and returns
	// the roots to walk.
	roots func() []walk.Root
	// visit sees each entry; false: do not descend into it.
	visit func(e *walk.Entry) bool
	// rootErr words the error of a root that could not be walked; nil
	// drops it.
	rootErr func(re *walk.RootError) error
	// passDone makes what the pass found the known result.
	passDone func()
	// findings are the run's findings from what is known so far, worked
	// out with the walker still begun.
	findings func() ([]finding.Finding, error)
}

// scan runs one run of p over env: begin, walk on from the cursor, word the
// errors, and collect the findings. The caller holds s.mu.
func (s *scanner) scan(ctx context.Context, env *Env, p scanPass) Outcome {
	s.w.Limits = p.limits
	found, errs := s.walk(ctx, env.Snapshot, env.Root, &p)
	st := s.w.Stats
	return Outcome{Findings: found, Err: errors.Join(append(p.errs, errs...)...), Scan: &st}
}

func (s *scanner) walk(ctx context.Context, snap *mounts.Snapshot, root *mounts.Root, p *scanPass) (found []finding.Finding, errs []error) {
	if err := s.w.Begin(ctx, snap, root); err != nil {
		return nil, []error{err}
	}
	defer s.w.End()
	if p.prepare != nil {
		p.prepare()
	}
	completed, rootErrs, err := s.w.Run(p.roots, p.visit)
	for _, re := range rootErrs {
		var r *walk.RootError
		if !errors.As(re, &r) {
			errs = append(errs, re)
		} else if e := p.rootErr(r); e != nil {
			errs = append(errs, e)
		}
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("%s: scan stopped: %w", p.id, err))
	}
	if completed {
		p.passDone()
	} else if p.fullPass && err == nil {
		errs = append(errs, fmt.Errorf("%w (%d entries); raise --"+flagname.ScanOnceBudget, walk.ErrScanIncomplete, s.w.Done))
	}
	if err := s.w.TooDeepErr(); err != nil && p.fullPass {
		errs = append(errs, err)
	}
	found, err = p.findings()
	return found, append(errs, err)
}

// snapshotRoot is root, or the snapshot's containerd overlayfs snapshots
// directory (as its layout found it), or containerd's default.
func snapshotRoot(root string, s *mounts.Snapshot) string {
	switch {
	case root != "":
		return root
	case s.Host.ContainerdSnapshots != "":
		return s.Host.ContainerdSnapshots
	}
	return mounts.DefaultContainerdSnapshots
}
