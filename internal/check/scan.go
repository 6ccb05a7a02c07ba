package check

import (
	"sync"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/walk"
)

// scanner is what the scanning checks (opaque_propagation,
// stray_overlay_xattr) share: a walker kept between runs, whose cursor lets
// the next run resume where a budget stopped this one, and the lock that
// makes Stats safe beside a Run.
type scanner struct {
	mu sync.Mutex
	w  walk.Walker
}

// Stats is the progress of the check's scan since the check value was made
// (Outcome.Scan).
func (s *scanner) Stats() walk.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Stats
}

// snapshotRoot is root, or containerd's default overlayfs snapshot root.
func snapshotRoot(root string) string {
	if root == "" {
		return mounts.DefaultContainerdSnapshots
	}
	return root
}
