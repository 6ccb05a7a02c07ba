package daemon

import (
	"github.com/mountwatchd/mountwatchd/internal/check"
	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

// store is the table the loop checks against: the latest snapshot, its
// number, and how long each of its mounts has been in the table. Owned by
// the loop.
type store struct {
	snap *mounts.Snapshot
	seq  uint64 // how many tables have been read successfully, snap's number
	// since is, for each mount of snap, the number of the first table of
	// the unbroken run of tables it is in. The kernel reuses mount ids, so
	// a mount unmounted and made again at the same place has the same id
	// and mount point: only this tells a probe result about the old mount
	// from one about the new.
	since map[mountKey]uint64
}

type mountKey struct {
	id int
	mp string
}

// setSnapshot makes s the current table and numbers it. A table read again
// unchanged (s.SameTable) keeps since as it is: every mount in it is in
// the unbroken run it was in.
func (st *store) setSnapshot(s *mounts.Snapshot) {
	st.seq++
	if s.SameTable(st.snap) {
		st.snap = s
		return
	}
	since := make(map[mountKey]uint64, len(s.Mounts))
	for _, m := range s.Mounts {
		k := mountKey{m.ID, m.Mountpoint}
		if n, ok := st.since[k]; ok {
			since[k] = n
		} else {
			since[k] = st.seq
		}
	}
	st.snap, st.since = s, since
}

// merge builds the current report: the latest table with the latest findings
// of every lane, results in the order of checks. Findings of runs over an
// older table are kept only while their mount has been in every table read
// since: one that went away is no longer broken, and a new mount that reuses
// its id and mount point has not been checked yet.
func (st *store) merge(lanes []*lane, checks []check.Check) *finding.Report {
	rep := &finding.Report{Snapshot: st.snap}
	byID := map[finding.ID]finding.Result{}
	for _, l := range lanes {
		if l.last == nil {
			continue
		}
		for _, c := range l.last.Checks {
			byID[c.Check] = c
		}
		if l.last.Probe != nil {
			p := *l.last.Probe
			rep.Probe = &p
		}
		if l.last.Scan != nil {
			s := *l.last.Scan
			rep.Scan = &s
		}
		if l.last.Table != nil {
			t := *l.last.Table
			rep.Table = &t
		}
		if l.last.Tasks != nil {
			rep.Tasks = l.last.Tasks // immutable once made
		}
		for _, f := range l.last.Findings {
			if l.lastSeq != st.seq && !st.unbroken(f, l.lastSeq) {
				continue // gone, or gone and made again: not the mount that was checked
			}
			rep.Findings = append(rep.Findings, f)
		}
	}
	for _, c := range checks {
		if r, ok := byID[c.Decl().ID]; ok {
			rep.Checks = append(rep.Checks, r)
		}
	}
	check.SortFindings(rep.Findings)
	return rep
}

// unbroken reports whether f's mount has been in every table since table
// seq.
func (st *store) unbroken(f finding.Finding, seq uint64) bool {
	n, ok := st.since[mountKey{f.MountID, f.MountPoint}]
	return ok && n <= seq
}
