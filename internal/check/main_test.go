package check

import (
	"os"
	"testing"

	"github.com/mountwatchd/mountwatchd/internal/probe"
	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// TestMain makes the test binary a probe helper when probe.HelperFS starts
// it, and runs the package's tests as root in a private mount namespace:
// the live tests mount tmpfs, bindfs and the ceph-fuse stand-in for real.
func TestMain(m *testing.M) {
	if len(os.Args) == 2 && os.Args[1] == probe.HelperArg {
		os.Exit(probe.ServeHelper(os.Stdin, os.Stdout))
	}
	testenv.Main(m)
}
