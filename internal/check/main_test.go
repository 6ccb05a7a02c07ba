package check

import (
	"testing"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// TestMain runs the package's tests as root in a private mount namespace:
// the live tests mount tmpfs, bindfs and the ceph-fuse stand-in for real.
func TestMain(m *testing.M) { testenv.Main(m) }
