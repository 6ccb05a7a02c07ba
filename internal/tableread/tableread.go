// Package tableread is the one way mountwatchd reads a mount table: the
// daemon's loop, --once and the checks that need a table of their own
// (hidden_entries reads mountwatchd's own) all read through a Reader. It
// owns what every such read needs beside the parse: the deadline and the
// "hung filesystem" hint of a read that outlives it, at most one read in
// flight, the reuse of an unchanged table's parse, and the logging of
// unparsable lines.
//
// Parsing and classifying are package mounts' (mounts.RereadSnapshot,
// mounts.ReadCaptured, mounts.ParseSnapshot, all from an io.Reader); this
// package decides nothing about a table's contents. It is not for tables
// read once in a test: parse those with package mounts directly.
package tableread

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

// Hint is appended to the error of a read that outlived its deadline:
// reading a live table reads kubelet's files (vol_data.json, the pod log
// directory), which a hung filesystem can block.
const Hint = " (a hung filesystem under the kubelet root or pod log directory?)"

// ErrBlocked is returned while an earlier read of the table is still
// blocked: at most one read is ever in flight.
var ErrBlocked = errors.New("an earlier read of the mount table is still blocked")

// Source reads a table once; prev is the last table its Reader read (nil
// before the first), whose parse it may share when the table is unchanged.
type Source func(prev *mounts.Snapshot) (*mounts.Snapshot, error)

// Live is the live table of h's namespace, read again without a second
// parse when unchanged (mounts.RereadSnapshot).
func Live(h mounts.Host) Source {
	return func(prev *mounts.Snapshot) (*mounts.Snapshot, error) { return mounts.RereadSnapshot(h, prev) }
}

// Captured is a captured table in file ("-": standard input), classified
// with h's kubelet and containerd directories (mounts.ReadCapturedTable).
func Captured(file string, h mounts.Host) Source {
	if file == "-" {
		file = "/dev/stdin"
	}
	return func(*mounts.Snapshot) (*mounts.Snapshot, error) { return mounts.ReadCapturedTable(file, h) }
}

// Own is the table in file parsed and indexed only (mounts.ParseSnapshot):
// mountwatchd's own, beside the inspected one.
func Own(file string, maxBytes int64) Source {
	return func(*mounts.Snapshot) (*mounts.Snapshot, error) {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("read mount table: %w", err)
		}
		defer f.Close()
		return mounts.ParseSnapshot(f, file, maxBytes)
	}
}

// Reader reads one table from its Source, again and again. It is not safe
// for concurrent use: one owner (the daemon's loop, one --once run, one
// check run) reads through it.
type Reader struct {
	// Source reads the table.
	Source Source
	// Timeout bounds each read (0: only the context's deadline does). A
	// read that takes longer is left to finish on its own, its result
	// dropped, and no other read starts until it has (ErrBlocked).
	Timeout time.Duration

	prev    *mounts.Snapshot // the last table read, nil before the first
	blocked chan result      // a read that outlived its deadline, until it returns
	logged  string           // the unparsable lines last logged
}

type result struct {
	snap *mounts.Snapshot
	err  error
}

// Read reads the table, waiting at most Timeout and until ctx is done. An
// unchanged table shares the last read's parse (Source Live).
func (r *Reader) Read(ctx context.Context) (*mounts.Snapshot, error) {
	if r.blocked != nil {
		select {
		case <-r.blocked:
			r.blocked = nil
		default:
			return nil, ErrBlocked
		}
	}
	ch := make(chan result, 1)
	read, prev := r.Source, r.prev
	go func() {
		s, err := read(prev)
		ch <- result{s, err}
	}()
	var timeout <-chan time.Time
	if r.Timeout > 0 {
		timer := time.NewTimer(r.Timeout)
		defer timer.Stop()
		timeout = timer.C
	}
	select {
	case res := <-ch:
		if res.err == nil {
			r.prev = res.snap
		}
		return res.snap, res.err
	case <-timeout:
		r.blocked = ch
		return nil, fmt.Errorf("reading the mount table took more than %s%s", r.Timeout, Hint)
	case <-ctx.Done():
		r.blocked = ch
		return nil, fmt.Errorf("read mount table: %w%s", context.Cause(ctx), Hint)
	}
}

// LogParseErrors logs the lines of s that could not be parsed, when they
// differ from those this Reader logged last: a daemon reading the same
// broken table every second says so once.
func (r *Reader) LogParseErrors(s *mounts.Snapshot, log *zap.Logger) {
	var key string
	for _, pe := range s.ParseErrors {
		key += pe.Text + "\n"
	}
	if key == r.logged {
		return
	}
	r.logged = key
	for _, pe := range s.ParseErrors {
		log.Warn("mount table line not parsed", zap.String("table", s.Path), zap.Int("line", pe.Line), zap.String("error", pe.Err))
	}
	if more := s.ParseErrorTotal() - len(s.ParseErrors); more > 0 {
		log.Warn("more mount table lines not parsed", zap.String("table", s.Path), zap.Int("more", more))
	}
}
