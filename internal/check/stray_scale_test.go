package check

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

// strayPassWork runs one stray_overlay_xattr pass over a kubelet root of
// pods pods (each with an empty volumes directory, real directories in a
// temp dir) on a table that also grows with the pods: the live table plus
// two mounts per pod, as kubelet's emptyDir and projected volumes add. It
// returns the walker's mount-table lookups and the pass's allocations.
func strayPassWork(t *testing.T, pods int) (lookups uint64, allocs float64) {
	t.Helper()
	kubelet := t.TempDir()
	var lines []string
	for i := range pods {
		uid := fmt.Sprintf("%08x-0000-4000-8000-000000000000", i)
		if err := os.MkdirAll(filepath.Join(kubelet, "pods", uid, "volumes"), 0o755); err != nil {
			t.Fatal(err)
		}
		for v := range 2 {
			// Elsewhere than the kubelet root: mounts the walk never
			// meets, whose number alone must not cost it anything.
			lines = append(lines, fmt.Sprintf("%d 1 0:30 /e/%d-%d /var/lib/other/pods/%s/volumes/kubernetes.io~empty-dir/v%d rw - tmpfs tmpfs rw",
				1_000_000+2*i+v, i, v, uid, v))
		}
	}
	extra, _, _, err := mounts.ParseMountTableLimit(strings.NewReader(strings.Join(lines, "\n")), 0)
	if err != nil {
		t.Fatal(err)
	}
	s := snapshotFor(t, mounts.Host{KubeletRoot: kubelet})
	s.Mounts = append(s.Mounts, extra...)
	mounts.IndexSnapshot(s)

	c := &StrayOverlayXattrCheck{FullPass: true}
	allocs = testing.AllocsPerRun(1, func() {
		if _, err := runOne(c, s); err != nil && !strings.Contains(err.Error(), "CAP_SYS_ADMIN") {
			t.Fatal(err)
		}
	})
	if st := c.Stats(); st.Passes == 0 {
		t.Fatalf("no complete pass: %+v", st)
	}
	// AllocsPerRun runs the function twice (a warm-up, then the count).
	return c.w.MountLookups() / 2, allocs
}

// The walker's work per pass is linear in pods when the table grows with
// the pods too. Opening each pod's root once looped over every mount point
// of the table, so a pass cost pods × mounts: 12 s of --once at 10,000
// mounts (issue 11). Counted, never timed: mount-table lookups and
// allocations for N and 2N pods.
func TestStrayPassWorkLinearInPods(t *testing.T) {
	const n = 400
	l1, a1 := strayPassWork(t, n)
	l2, a2 := strayPassWork(t, 2*n)
	t.Logf("%d pods: %d lookups, %.0f allocs; %d pods: %d lookups, %.0f allocs", n, l1, a1, 2*n, l2, a2)
	if l1 == 0 || float64(l2) > 2.2*float64(l1) {
		t.Errorf("mount-table lookups grew from %d to %d when pods doubled: more than linear", l1, l2)
	}
	if a2 > 2.5*a1 {
		t.Errorf("allocations per pass grew from %.0f to %.0f when pods doubled: more than linear", a1, a2)
	}
}
