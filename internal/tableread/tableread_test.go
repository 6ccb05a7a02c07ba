package tableread

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

const table = `22 1 0:21 / / rw,relatime - tmpfs tmpfs rw
65 22 0:39 /volumes/csi/vol2//deleted /mnt/vol rw,nosuid - fuse.ceph-fuse ceph-fuse rw,user_id=0
not a mountinfo line
`

func captured(t *testing.T) Source {
	t.Helper()
	return func(*mounts.Snapshot) (*mounts.Snapshot, error) {
		return mounts.ReadCaptured(strings.NewReader(table), "captured", mounts.Host{})
	}
}

// A read that outlives Timeout fails with the hint, no second read starts
// while it is blocked, and reads go on once it has returned.
func TestReadBlockedByHungSource(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	next := captured(t)
	r := Reader{Timeout: 20 * time.Millisecond, Source: func(prev *mounts.Snapshot) (*mounts.Snapshot, error) {
		if calls.Add(1) == 1 {
			<-release
		}
		return next(prev)
	}}
	_, err := r.Read(context.Background())
	if err == nil || !strings.Contains(err.Error(), "took more than 20ms") || !strings.HasSuffix(err.Error(), Hint) {
		t.Fatalf("blocked read: %v, want the timeout with the hint", err)
	}
	if _, err := r.Read(context.Background()); !errors.Is(err, ErrBlocked) {
		t.Fatalf("read while one is blocked: %v, want ErrBlocked", err)
	}
	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := r.Read(context.Background())
		if err == nil {
			if len(s.Mounts) != 2 || calls.Load() != 2 {
				t.Fatalf("after the blocked read returned: %d mounts, %d calls", len(s.Mounts), calls.Load())
			}
			return
		}
		if !errors.Is(err, ErrBlocked) || time.Now().After(deadline) {
			t.Fatalf("after release: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
}

// A context that ends first says why, with the hint.
func TestReadContextCause(t *testing.T) {
	cause := errors.New("--once.timeout (2s)")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(cause)
	release := make(chan struct{})
	defer close(release)
	r := Reader{Source: func(*mounts.Snapshot) (*mounts.Snapshot, error) { <-release; return nil, nil }}
	_, err := r.Read(ctx)
	if !errors.Is(err, cause) || !strings.HasSuffix(err.Error(), Hint) {
		t.Fatalf("got %v, want the cause with the hint", err)
	}
}

// Each read hands the Source the last table read, so an unchanged table
// can share its parse.
func TestReadPassesLastTable(t *testing.T) {
	var got []*mounts.Snapshot
	next := captured(t)
	r := Reader{Source: func(prev *mounts.Snapshot) (*mounts.Snapshot, error) { got = append(got, prev); return next(prev) }}
	first, err := r.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got[0] != nil || got[1] != first {
		t.Errorf("prev handed to the source: %p then %p, want nil then the first table %p", got[0], got[1], first)
	}
}

// Unparsable lines are logged when they differ from those logged last, not
// on every read.
func TestLogParseErrorsOncePerChange(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	log := zap.New(core)
	r := Reader{Source: captured(t)}
	for range 3 {
		s, err := r.Read(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		r.LogParseErrors(s, log)
	}
	entries := logs.FilterMessage("mount table line not parsed").All()
	if len(entries) != 1 || entries[0].ContextMap()["line"] != int64(3) {
		t.Fatalf("logged %d entries (%v), want line 3 once", len(entries), entries)
	}
	clean, err := mounts.ReadCaptured(strings.NewReader(strings.SplitN(table, "\n", 3)[0]+"\n"), "clean", mounts.Host{})
	if err != nil {
		t.Fatal(err)
	}
	r.LogParseErrors(clean, log)
	s, _ := r.Read(context.Background())
	r.LogParseErrors(s, log)
	if n := logs.FilterMessage("mount table line not parsed").Len(); n != 2 {
		t.Errorf("after a clean table and the broken one again: %d entries, want 2", n)
	}
}

// Own parses and indexes a table without classifying it; /dev/zero is a
// table too large, read no further than the bound.
func TestOwnBounded(t *testing.T) {
	_, err := (&Reader{Source: Own("/dev/zero", 1<<20)}).Read(context.Background())
	if !errors.Is(err, mounts.ErrTableTooLarge) {
		t.Fatalf("/dev/zero: %v, want ErrTableTooLarge", err)
	}
	s, err := (&Reader{Source: Own("/proc/self/mountinfo", 0)}).Read(context.Background())
	if err != nil || len(s.ByMountpoint("/")) == 0 {
		t.Fatalf("own table: %v, root mount indexed: %v", err, s != nil && len(s.ByMountpoint("/")) > 0)
	}
}
