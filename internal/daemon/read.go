package daemon

import (
	"context"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mountwatchd/mountwatchd/internal/export"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/tableread"
)

// tableReader reads the mount table for the loop through a
// tableread.Reader (the deadline, at most one read in flight, the reuse of
// an unchanged table, the unparsable lines logged once), and counts and
// times the reads. Owned by the loop.
type tableReader struct {
	host      mounts.Host
	minReread time.Duration
	// read reads the table; prev is the last table read, nil before the
	// first (mounts.RereadSnapshot, which does not parse an unchanged
	// table again).
	read func(h mounts.Host, prev *mounts.Snapshot) (*mounts.Snapshot, error)
	r    tableread.Reader

	reads, readErrs, events uint64
	lastRead                time.Time     // start of the last read of the table
	readCost                time.Duration // how long it took
	// readErr is the error of the last read, "" when it succeeded: logged
	// when it changes, and said in the systemd status.
	readErr said
	layout  said // the layout decision last logged
}

func newTableReader(host mounts.Host, timeout, minReread time.Duration) *tableReader {
	t := &tableReader{host: host, minReread: minReread, read: mounts.RereadSnapshot}
	// t.read, not mounts.RereadSnapshot: a test replaces it.
	t.r = tableread.Reader{Timeout: timeout, Source: func(prev *mounts.Snapshot) (*mounts.Snapshot, error) { return t.read(t.host, prev) }}
	return t
}

// readSnapshot reads the table, counting the read and logging an error once
// per distinct error, and once when the table is readable again. An
// unchanged table shares the last read's parse. Every read is counted,
// changed or not.
func (t *tableReader) readSnapshot(ctx context.Context, log *zap.Logger) (*mounts.Snapshot, error) {
	t.reads++
	t.lastRead = time.Now()
	snap, err := t.r.Read(ctx)
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

// logLayout logs where kubelet and containerd were found when the decision
// differs from the last read's (not when only the evidence counts do).
func (t *tableReader) logLayout(s *mounts.Snapshot, log *zap.Logger) {
	if _, changed := t.layout.update(s.Layout.Decision()); changed {
		export.LogLayout(log, zapcore.InfoLevel, s.Layout)
	}
}
