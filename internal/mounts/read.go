package mounts

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// RereadSnapshot reads and classifies the mount table of h's namespace,
// with the Kubernetes context of each kubelet mount taken from kubelet's
// files, for a reader that read the table before as prev (nil: never; the
// daemon's and --once's reads go through package tableread). When the
// table's bytes are those prev was parsed from, and the layout and the
// Kubernetes context a fresh read would find now are prev's, the new
// snapshot shares prev's parsed mounts and indexes (SameTable) instead of
// parsing a second copy of the table: only its Taken and Layout are new.
// Either way the result is what a fresh read would return: kubelet's files
// and the running processes (through h.Processes) are read again on every
// read.
//
// prev is only read, never changed: it may be in use by checks running
// over it.
func RereadSnapshot(h Host, prev *Snapshot) (*Snapshot, error) {
	path := h.MountinfoPath()
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	s, err := newSnapshot(path, f, h, true, prev)
	if err != nil {
		return nil, fmt.Errorf("read mount table %s: %w", path, err)
	}
	return s, nil
}

// ReadCapturedTable reads a captured mount table (for example from a
// support bundle). Kubernetes context comes from mount points alone, under
// h's KubeletRoot and containerd directories (those of the machine the
// table was captured on); h's MaxTableBytes bounds the read; its PID and
// Procfs are not used (a captured table has no process).
func ReadCapturedTable(path string, h Host) (*Snapshot, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	return ReadCaptured(f, path, h)
}

// ReadCaptured reads a captured mount table from r, as ReadCapturedTable
// does from a file; source names it in the snapshot (Path) and in errors.
// Tests and benchmarks parse a table held in a string with it
// (strings.NewReader), as moby/sys/mountinfo's GetMountsFromReader.
func ReadCaptured(r io.Reader, source string, h Host) (*Snapshot, error) {
	s, err := newSnapshot(source, r, Host{KubeletRoot: h.KubeletRoot, ContainerdRoot: h.ContainerdRoot,
		ContainerdSnapshots: h.ContainerdSnapshots, MaxTableBytes: h.MaxTableBytes}, false, nil)
	if err != nil {
		return nil, fmt.Errorf("read mount table %s: %w", source, err)
	}
	return s, nil
}

// ParseSnapshot parses and indexes the table read from r (at most maxBytes,
// 0: DefaultMaxTableBytes) without classifying it: no layout, no
// Kubernetes context, no files read beside it. It is for a table whose
// mounts are only looked up (mountwatchd's own, beside the inspected one);
// its unparsable lines are counted in ParseErrors as RereadSnapshot's are.
func ParseSnapshot(r io.Reader, source string, maxBytes int64) (*Snapshot, error) {
	ms, perrs, nerrs, err := ParseMountTableLimit(r, maxBytes)
	if err != nil {
		return nil, fmt.Errorf("read mount table %s: %w", source, err)
	}
	return IndexSnapshot(&Snapshot{Path: source, Live: true, Mounts: ms, ParseErrors: perrs, ParseErrorCount: nerrs}), nil
}

// newSnapshot reads, parses and classifies the table in r, or, when prev
// is a snapshot of the same bytes and the same context, shares its parse
// (RereadSnapshot). With prev, r must be an io.Seeker: an unchanged table
// whose context changed is read again from its start.
func newSnapshot(source string, r io.Reader, h Host, live bool, prev *Snapshot) (*Snapshot, error) {
	maxBytes := h.MaxTableBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxTableBytes
	}
	var last int64
	if prev != nil {
		last = prev.size
	}
	pods := podLogLister(h, live)
	raw, err := readTable(r, maxBytes, last)
	if err != nil {
		return nil, err
	}
	taken := time.Now()
	if prev != nil && prev.sum == raw.sum && prev.Path == source && prev.Live == live && len(prev.Mounts) > 0 {
		raw = nil // prev's bytes, parsed: not kept alive while the context is compared
		if s := prev.again(h, taken, pods); s != nil {
			return s, nil
		}
		// The table is unchanged but what kubelet's files say is not (a
		// pod's log directory made since): read it again to classify it
		// afresh. Rare, so it costs a second read rather than keeping the
		// bytes of every read alive until the comparison is done.
		f, ok := r.(io.Seeker)
		if !ok {
			return nil, errors.New("a table read again must be seekable")
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		if raw, err = readTable(r, maxBytes, last); err != nil {
			return nil, err
		}
		taken = time.Now()
	}
	mounts, perrs, nerrs, err := parseTable(raw.String())
	if err != nil {
		return nil, err
	}
	if len(mounts) == 0 {
		if nerrs > 0 {
			return nil, fmt.Errorf("%w: none of its %d lines could be parsed (first: %w)", ErrEmptyTable, nerrs, perrs[0])
		}
		return nil, fmt.Errorf("%w (a live table always has the root mount): is it a mountinfo file?", ErrEmptyTable)
	}
	s := IndexSnapshot(&Snapshot{Path: source, Live: live, Taken: taken, Mounts: mounts,
		ParseErrors: perrs, ParseErrorCount: nerrs, sum: raw.sum, size: raw.size})
	s.classify(h, pods, func(m *Mount, k *Kube) bool { m.Kube = k; return true })
	return s, nil
}
