package tasks

import (
	"context"
	"fmt"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe"
)

// One scan per probe round: the checks of a run share it, and at most one
// scan is ever in flight.

// ScanFor returns the scan made for key (the probe round the checks of one
// run share), making it if none was, or waiting for it while it is made:
// the checks of a run, one after another or at once, see one scan. It
// waits at most Config.Timeout from the scan's start, and not past ctx; a
// scan that has not returned by then is left to finish on its own, and
// until it does every call for another key returns a report whose Err says
// so instead of starting another (at most one is ever in flight).
func (sc *Scanner) ScanFor(ctx context.Context, key any, s *mounts.Snapshot) *Report {
	r := sc.scanFor(ctx, key, s)
	sc.mu.Lock()
	sc.returned = r
	sc.mu.Unlock()
	return r
}

// flight is a scan in flight: made for key, since start; done is closed
// when it returns, with r set.
type flight struct {
	key   any
	start time.Time
	done  chan struct{}
	r     *Report
}

func (sc *Scanner) scanFor(ctx context.Context, key any, s *mounts.Snapshot) *Report {
	sc.mu.Lock()
	if key != nil && sc.lastKey == key && sc.last != nil {
		r := sc.last
		sc.mu.Unlock()
		return r
	}
	f := sc.flying
	switch {
	case f != nil && (key == nil || f.key != key):
		sc.mu.Unlock()
		return &Report{Taken: time.Now(), Err: fmt.Errorf("an earlier scan of the tasks has not returned since %s", f.start.UTC().Format(time.RFC3339))}
	case f == nil: // none in flight: make it; a check of the same run asking meanwhile waits for it
		f = &flight{key: key, start: time.Now(), done: make(chan struct{})}
		sc.flying = f
		go func() {
			var hung map[string]bool
			if r, ok := key.(*probe.Round); ok {
				hung = hungFUSE(r)
			}
			r := sc.scan(s, hung)
			sc.mu.Lock()
			sc.flying = nil
			sc.lastKey, sc.last = key, r
			f.r = r
			sc.mu.Unlock()
			close(f.done)
		}()
	}
	sc.mu.Unlock()

	timer := time.NewTimer(sc.cfg.Timeout - time.Since(f.start))
	defer timer.Stop()
	select {
	case <-f.done:
		return f.r
	case <-timer.C:
		return &Report{Taken: time.Now(), Err: fmt.Errorf("the scan of the tasks did not finish within %s", sc.cfg.Timeout)}
	case <-ctx.Done():
		return &Report{Taken: time.Now(), Err: fmt.Errorf("the scan of the tasks did not finish: %w", context.Cause(ctx))}
	}
}

// Last returns what the last ScanFor returned (a scan, or a report of why
// there is none), or nil before the first.
func (sc *Scanner) Last() *Report {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.returned
}
