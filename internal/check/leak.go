package check

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

// Defaults for LeakConfig.
const (
	// DefaultMaxStacked: more mounts than this on one mount point is a
	// leak. Nodes stack two or three (/dev/shm, a remount over a
	// volume); a remount loop stacks one per retry.
	DefaultMaxStacked = 10
	// DefaultLeakGrowth: a group of mounts (one FUSE or network source and
	// root, or one filesystem and root) that grew by this many over
	// consecutive reads without coming down is a leak. It is above what a
	// full node makes legitimately: one bind mount of a shared volume per
	// pod, and kubelet runs at most 110 pods by default.
	DefaultLeakGrowth = 200
	// DefaultTableFraction: a table at this share of fs.mount-max is a
	// warning; at criticalTableFraction, critical (at the max every mount,
	// and so every new pod, fails with ENOSPC).
	DefaultTableFraction  = 0.8
	criticalTableFraction = 0.95
	// maxStackWalk bounds the walk up one stack.
	maxStackWalk = 1 << 20
)

// LeakConfig are mount_leak's thresholds.
type LeakConfig struct {
	MaxStacked    int     // more mounts stacked on one mount point than this
	Growth        int     // a group grown by at least this without coming down
	TableFraction float64 // the table at this share of fs.mount-max
}

func (c LeakConfig) withDefaults() LeakConfig {
	if c.MaxStacked <= 0 {
		c.MaxStacked = DefaultMaxStacked
	}
	if c.Growth <= 0 {
		c.Growth = DefaultLeakGrowth
	}
	if c.TableFraction <= 0 || c.TableFraction > 1 {
		c.TableFraction = DefaultTableFraction
	}
	return c
}

// LeakState is what mount_leak remembers from one table read to the next:
// the size of the first table, and for each stack and each group of more
// than one mount, its count when first seen and when it last came down.
// It is the check's memory, explicit: FindLeaks takes the previous state
// and returns the next.
type LeakState struct {
	Reads      int
	FirstSize  int
	FirstTaken time.Time
	groups     map[uint64]leakTrack // by groupHash
	stacks     map[string]leakTrack
	seed       maphash.Seed
	// counts is the counting map of the last read, cleared and reused by
	// the next so that a read allocates no map (it is a scratch space,
	// not memory: FindLeaks takes it over from prev).
	counts map[uint64]int32
}

// groupHash names the group of mounts m is in, that a leak multiplies. A
// FUSE or network mount is grouped by fstype, source and root, since every
// retry of a FUSE mount is a new connection (a new major:minor); any other
// by its filesystem (major:minor) and root: overlay and tmpfs mounts all
// have the same source and root, and are each their own filesystem. The
// group is a 64-bit hash, so that counting a table of 10,000 mounts costs
// an integer-keyed map (two groups colliding, at odds of about 1 in 10^11
// for 10,000 groups, would count as one).
func groupHash(seed maphash.Seed, m *mounts.Mount) uint64 {
	h := maphash.String(seed, m.Root)
	if groupedBySource(m) {
		return mix(h ^ mix(maphash.String(seed, m.FSType)^1) ^ mix(mix(maphash.String(seed, m.Source))^2))
	}
	return mix(h ^ mix(uint64(uint32(m.Major))<<32|uint64(uint32(m.Minor))) ^ 3)
}

// mix is splitmix64's finalizer: every input bit moves every output bit.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func groupedBySource(m *mounts.Mount) bool { return m.FUSE || m.Network }

// leakTrack is one group's or stack's count over consecutive reads.
type leakTrack struct {
	base  int       // the count when first seen, or after it last came down
	since time.Time // when base was seen
	last  int       // the count at the previous read
	first int       // the count when first seen
}

func (t leakTrack) next(count int, now time.Time, seen bool) leakTrack {
	if !seen {
		return leakTrack{base: count, since: now, last: count, first: count}
	}
	if count < t.last { // came down: whatever grew is not leaking any more
		t.base, t.since = count, now
	}
	t.last = count
	return t
}

// FindLeaks is mount_leak as a function of its inputs: the table, the
// state after the previous read (nil for the first), the thresholds and
// the host's fs.mount-max (0: unknown). It returns the findings, the state
// to pass to the next read, and the table's size and growth.
//
// It costs one pass over the table with a map of (filesystem or source,
// root) to a count, and the state holds only stacks and groups of more than
// one mount.
func FindLeaks(s *mounts.Snapshot, prev *LeakState, cfg LeakConfig, mountMax int) ([]finding.Finding, *LeakState, finding.TableStats) {
	cfg = cfg.withDefaults()
	now := s.Taken
	size := len(s.Mounts) + s.ParseErrorTotal()
	next := &LeakState{Reads: 1, FirstSize: size, FirstTaken: now, seed: maphash.MakeSeed()}
	if prev != nil {
		next.Reads, next.FirstSize, next.FirstTaken, next.seed = prev.Reads+1, prev.FirstSize, prev.FirstTaken, prev.seed
	}
	stats := finding.TableStats{Size: size, MountMax: mountMax, Growth: size - next.FirstSize, FirstSize: next.FirstSize, FirstTaken: next.FirstTaken}
	var out []finding.Finding

	out = append(out, findStacks(s, prev, next, cfg)...)
	out = append(out, findGroups(s, prev, next, cfg)...)

	if mountMax > 0 && float64(size) >= cfg.TableFraction*float64(mountMax) {
		out = append(out, tableFinding(size, mountMax, stats, cfg))
	}
	return out, next, stats
}

// findStacks walks up from each stack's bottom (a covered mount whose parent
// is not at the same mount point), records each stack's height in next and
// reports those over the threshold.
func findStacks(s *mounts.Snapshot, prev, next *LeakState, cfg LeakConfig) []finding.Finding {
	now := s.Taken
	var out []finding.Finding
	next.stacks = map[string]leakTrack{}
	for _, m := range s.Mounts {
		top := s.CoveredBy(m)
		if top == nil {
			continue
		}
		if p := s.ByID[m.Parent]; p != nil && p != m && p.Mountpoint == m.Mountpoint {
			continue // not the bottom
		}
		height := 1
		for c := top; c != nil && height < maxStackWalk; c = s.CoveredBy(c) {
			top = c
			height++
		}
		var t leakTrack
		var seen bool
		if prev != nil {
			t, seen = prev.stacks[m.Mountpoint]
		}
		t = t.next(height, now, seen)
		next.stacks[m.Mountpoint] = t
		if height > cfg.MaxStacked {
			out = append(out, stackFinding(m, top, height, t, cfg))
		}
	}
	return out
}

// findGroups counts the mounts of each group, records the groups of more
// than one mount in next and reports those grown past the threshold.
func findGroups(s *mounts.Snapshot, prev, next *LeakState, cfg LeakConfig) []finding.Finding {
	now := s.Taken
	var counts map[uint64]int32
	if prev != nil && prev.counts != nil {
		counts, prev.counts = prev.counts, nil
		clear(counts)
	} else {
		counts = make(map[uint64]int32, len(s.Mounts))
	}
	next.counts = counts
	var multi []uint64 // groups of more than one mount, without iterating the map
	for _, m := range s.Mounts {
		k := groupHash(next.seed, m)
		n := counts[k] + 1
		counts[k] = n
		if n == 2 {
			multi = append(multi, k)
		}
	}
	next.groups = make(map[uint64]leakTrack, len(multi))
	var grown []uint64
	for _, k := range multi {
		n := counts[k]
		var t leakTrack
		var seen bool
		if prev != nil {
			t, seen = prev.groups[k]
		}
		t = t.next(int(n), now, seen)
		next.groups[k] = t
		if int(n)-t.base >= cfg.Growth {
			grown = append(grown, k)
		}
	}
	if len(grown) == 0 {
		return nil
	}
	return groupFindings(s, next.seed, grown, next.groups)
}

// MountLeak is the ID of MountLeakCheck.
const MountLeak finding.ID = "mount_leak"

var mountLeakDecl = Decl{
	ID: MountLeak, Kind: finding.TableCheck, Order: 80,
	MessageID:  "45156a0644c7401490314ef36861a8da",
	Severities: []finding.Severity{finding.Critical, finding.Warning},
	New: func(cfg *Config) Check {
		return &MountLeakCheck{Config: cfg.Leak}
	},
}

func init() { Register(mountLeakDecl) }

// MountLeakCheck finds mounts that pile up: more than MaxStacked mounts
// stacked on one mount point, a group of mounts (one FUSE or network source
// and root, or one filesystem and root) grown by Growth or more over
// consecutive table reads without coming down, and a table at
// TableFraction of the host's fs.mount-max. It is a table check: one pass
// over the table. Its memory of earlier reads is the LeakState it keeps
// from one Run to the next (the daemon keeps the check value); --once and a
// captured table are one read, so only stacks (and, live, the table's size)
// can be found there.
type MountLeakCheck struct {
	Config LeakConfig
	// MountMaxPath is the inspected host's /proc/sys/fs/mount-max; ""
	// reads <procfs>/sys/fs/mount-max of the snapshot's host. The limit
	// counts mounts per mount namespace, which is what the table is.
	MountMaxPath string

	mu    sync.Mutex
	state *LeakState
}

// Decl implements Check.
func (*MountLeakCheck) Decl() Decl { return mountLeakDecl }

// Run implements Check.
func (c *MountLeakCheck) Run(_ context.Context, env *Env) Outcome {
	s := env.Snapshot
	mountMax, err := 0, error(nil)
	var notes []string
	if s.Live {
		mountMax, err = c.readMountMax(s)
		if errors.Is(err, fs.ErrNotExist) { // a procfs without it (a test's, or a kernel before 4.9)
			notes, err = []string{err.Error()}, nil
		}
	} else {
		notes = []string{"a captured table: its host's fs.mount-max is not known, and one read shows no growth"}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	found, next, stats := FindLeaks(s, c.state, c.Config, mountMax)
	c.state = next
	return Outcome{Findings: found, Err: err, Notes: notes, Table: &stats}
}

func (c *MountLeakCheck) readMountMax(s *mounts.Snapshot) (int, error) {
	p := c.MountMaxPath
	if p == "" {
		p = filepath.Join(s.Host.WithDefaults().Procfs, "sys/fs/mount-max")
	}
	b, err := readSmallFile(p, 64)
	if err != nil {
		return 0, fmt.Errorf("read fs.mount-max: %w (the table's size is not compared with it)", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("read fs.mount-max: %s holds %q, not a positive number", p, strings.TrimSpace(string(b)))
	}
	return n, nil
}

// readSmallFile reads at most n bytes of a regular file.
func readSmallFile(p string, n int) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, n)
	k, err := f.Read(buf)
	if k > 0 {
		return buf[:k], nil
	}
	return nil, err
}
