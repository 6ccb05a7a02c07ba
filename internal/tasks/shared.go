package tasks

import (
	"context"
	"fmt"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

// One scan per probe round: the checks of a run share it, and at most one
// scan is ever in flight.

// ScanFor returns the scan made for key (the probe round the checks of one
// run share), making it if none was: the checks of a run see one scan. It
// waits at most Config.Timeout, and not past ctx; a scan that has not
// returned by then is left to finish on its own, and until it does every
// call returns a report whose Err says so instead of starting another (at
// most one is ever in flight).
func (sc *Scanner) ScanFor(ctx context.Context, key any, s *mounts.Snapshot) *Report {
	r := sc.scanFor(ctx, key, s)
	sc.mu.Lock()
	sc.returned = r
	sc.mu.Unlock()
	return r
}

func (sc *Scanner) scanFor(ctx context.Context, key any, s *mounts.Snapshot) *Report {
	sc.mu.Lock()
	if key != nil && sc.lastKey == key && sc.last != nil {
		r := sc.last
		sc.mu.Unlock()
		return r
	}
	if !sc.flying.IsZero() {
		since := sc.flying
		sc.mu.Unlock()
		return &Report{Taken: time.Now(), Err: fmt.Errorf("an earlier scan of the tasks has not returned since %s", since.UTC().Format(time.RFC3339))}
	}
	sc.flying = time.Now()
	sc.mu.Unlock()

	done := make(chan *Report, 1)
	go func() {
		r := sc.Scan(s)
		sc.mu.Lock()
		sc.flying = time.Time{}
		sc.lastKey, sc.last = key, r
		sc.mu.Unlock()
		done <- r
	}()
	timer := time.NewTimer(sc.cfg.Timeout)
	defer timer.Stop()
	select {
	case r := <-done:
		return r
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
