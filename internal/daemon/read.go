package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mountwatchd/mountwatchd/internal/export"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

// tableReader reads the mount table for the loop, waiting at most timeout
// for a read, with at most one read in flight. Owned by the loop.
type tableReader struct {
	host      mounts.Host
	timeout   time.Duration
	minReread time.Duration
	// read reads the table; prev is the last table read, nil before the
	// first (mounts.RereadSnapshot, which does not parse an unchanged
	// table again).
	read func(h mounts.Host, prev *mounts.Snapshot) (*mounts.Snapshot, error)

	reads, readErrs, events uint64
	lastRead                time.Time       // start of the last read of the table
	readCost                time.Duration   // how long it took
	blocked                 chan readResult // a read that outlived the timeout, until it returns
	// readErr is the error of the last read, "" when it succeeded: logged
	// when it changes, and said in the systemd status.
	readErr   said
	lastParse said // the unparsable lines last logged
	layout    said // the layout decision last logged
}

type readResult struct {
	snap *mounts.Snapshot
	err  error
}

// errReadBlocked is returned while an earlier read of the table is still
// blocked: at most one read is ever in flight.
var errReadBlocked = errors.New("an earlier read of the mount table is still blocked")

// readSnapshot reads the table, counting the read and logging an error once
// per distinct error, and once when the table is readable again. prev is
// the last table read (nil before the first): an unchanged table shares
// its parse. Every read is counted, changed or not.
func (t *tableReader) readSnapshot(ctx context.Context, prev *mounts.Snapshot, log *zap.Logger) (*mounts.Snapshot, error) {
	t.reads++
	t.lastRead = time.Now()
	snap, err := t.readWithTimeout(ctx, prev)
	t.readCost = time.Since(t.lastRead)
	if err != nil {
		t.readErrs++
		if _, changed := t.readErr.update(err.Error()); changed {
			log.Error("cannot read the mount table; keeping the last results", zap.Error(err))
		}
		return nil, err
	}
	if prev, _ := t.readErr.update(""); prev != "" {
		log.Info("mount table readable again", zap.String("table", snap.Path))
	}
	return snap, nil
}

// rereadDelay is how long to wait before re-reading the table after a change
// event: at least minReread after the last read started, and long enough that
// re-reading takes at most a tenth of the time, so a storm of mount changes
// (pods starting on a node with 20,000 mounts) costs a bounded share of a
// CPU while each change is still seen within about ten reads' time.
func (t *tableReader) rereadDelay(now time.Time) time.Duration {
	gap := max(t.minReread, 10*t.readCost)
	return max(t.lastRead.Add(gap).Sub(now), 0)
}

// readWithTimeout reads the table in a goroutine and waits at most timeout
// for it. A read that takes longer is left to finish on its own (its result
// is dropped: it is stale by then) and no other read starts until it has.
func (t *tableReader) readWithTimeout(ctx context.Context, prev *mounts.Snapshot) (*mounts.Snapshot, error) {
	if t.blocked != nil {
		select {
		case <-t.blocked:
			t.blocked = nil
		default:
			return nil, errReadBlocked
		}
	}
	ch := make(chan readResult, 1)
	host, read := t.host, t.read
	go func() {
		s, err := read(host, prev)
		ch <- readResult{s, err}
	}()
	timer := time.NewTimer(t.timeout)
	defer timer.Stop()
	select {
	case r := <-ch:
		return r.snap, r.err
	case <-timer.C:
		t.blocked = ch
		return nil, fmt.Errorf("reading the mount table took more than %s (a hung filesystem under the kubelet root or pod log directory?)", t.timeout)
	case <-ctx.Done():
		t.blocked = ch
		return nil, ctx.Err()
	}
}

// logLayout logs where kubelet and containerd were found when the decision
// differs from the last read's (not when only the evidence counts do).
func (t *tableReader) logLayout(s *mounts.Snapshot, log *zap.Logger) {
	if _, changed := t.layout.update(s.Layout.Decision()); changed {
		export.LogLayout(log, zapcore.InfoLevel, s.Layout)
	}
}

// logParseErrors logs unparsable lines when they differ from the last read's,
// not on every read.
func (t *tableReader) logParseErrors(s *mounts.Snapshot, log *zap.Logger) {
	var key string
	for _, pe := range s.ParseErrors {
		key += pe.Text + "\n"
	}
	if _, changed := t.lastParse.update(key); !changed {
		return
	}
	for _, pe := range s.ParseErrors {
		log.Warn("mount table line not parsed", zap.String("table", s.Path), zap.Int("line", pe.Line), zap.String("error", pe.Err))
	}
	if more := s.ParseErrorTotal() - len(s.ParseErrors); more > 0 {
		log.Warn("more mount table lines not parsed", zap.String("table", s.Path), zap.Int("more", more))
	}
}
