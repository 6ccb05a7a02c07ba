package check

import (
	"time"

	"github.com/mountwatchd/mountwatchd/internal/finding"
)

// Tracker remembers the active problems across runs: when each was first
// seen and how each changed. It is not safe for concurrent use.
type Tracker struct {
	active  map[string]finding.Finding
	changes []finding.Change
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker { return &Tracker{active: map[string]finding.Finding{}} }

// Stamp sets FirstSeen on each finding (now for a new problem, the earlier
// time for one already active), makes the findings the active set, and
// records what appeared, changed severity and cleared since the last call.
func (t *Tracker) Stamp(now time.Time, findings []finding.Finding) {
	next := make(map[string]finding.Finding, len(findings))
	for i := range findings {
		f := &findings[i]
		k := f.Key()
		if same, dup := next[k]; dup { // one problem reported twice in a run
			f.FirstSeen = same.FirstSeen
			continue
		}
		if prev, ok := t.active[k]; ok {
			f.FirstSeen = prev.FirstSeen
			if prev.Severity != f.Severity {
				t.changes = append(t.changes, finding.Change{Finding: *f, Event: "changed", Was: prev.Severity})
			}
		} else {
			f.FirstSeen = now
			t.changes = append(t.changes, finding.Change{Finding: *f, Event: "appeared"})
		}
		next[k] = *f
	}
	var cleared []finding.Finding
	for k, f := range t.active {
		if _, ok := next[k]; !ok {
			cleared = append(cleared, f)
		}
	}
	SortFindings(cleared)
	for _, f := range cleared {
		t.changes = append(t.changes, finding.Change{Finding: f, Event: "cleared"})
	}
	t.active = next
}

// Changes returns and forgets the changes recorded since the last call.
func (t *Tracker) Changes() []finding.Change {
	c := t.changes
	t.changes = nil
	return c
}
