package check

import (
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/finding"
)

func TestTrackerFirstSeenAndChanges(t *testing.T) {
	tr := NewTracker()
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	a := finding.Finding{Check: DeletedRoot, Severity: finding.Warning, MountID: 1, MountPoint: "/a"}
	b := finding.Finding{Check: StaleMount, Severity: finding.Critical, MountID: 2, MountPoint: "/b"}

	run1 := []finding.Finding{a, b}
	tr.Stamp(t0, run1)
	if !run1[0].FirstSeen.Equal(t0) || !run1[1].FirstSeen.Equal(t0) {
		t.Errorf("first run: %v", run1)
	}
	if ch := tr.Changes(); len(ch) != 2 || ch[0].Event != "appeared" || ch[1].Event != "appeared" {
		t.Errorf("first run changes: %+v", ch)
	}

	// Same problems, many polls later: FirstSeen kept, nothing to log.
	for i := 1; i <= 5; i++ {
		run := []finding.Finding{a, b}
		tr.Stamp(t0.Add(time.Duration(i)*time.Minute), run)
		if !run[0].FirstSeen.Equal(t0) {
			t.Errorf("poll %d: FirstSeen %v", i, run[0].FirstSeen)
		}
		if ch := tr.Changes(); len(ch) != 0 {
			t.Errorf("poll %d: changes %+v", i, ch)
		}
	}

	// a escalates, b clears.
	a2 := a
	a2.Severity = finding.Critical
	run := []finding.Finding{a2}
	tr.Stamp(t0.Add(time.Hour), run)
	ch := tr.Changes()
	if len(ch) != 2 || ch[0].Event != "changed" || ch[0].Was != finding.Warning || ch[1].Event != "cleared" || ch[1].Finding.MountPoint != "/b" {
		t.Errorf("changes: %+v", ch)
	}
	if !run[0].FirstSeen.Equal(t0) {
		t.Errorf("severity change reset FirstSeen")
	}

	// The same problem twice in one run counts once.
	tr.Stamp(t0.Add(2*time.Hour), []finding.Finding{a2, a2, b, b})
	if ch := tr.Changes(); len(ch) != 1 || ch[0].Event != "appeared" {
		t.Errorf("duplicate findings: %+v", ch)
	}
}
