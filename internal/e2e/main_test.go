//go:build e2e

package e2e

import (
	"testing"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// TestMain runs the suite in private mount and network namespaces: the
// node's mounts, address and pod network are the test's alone.
func TestMain(m *testing.M) { testenv.MainNet(m) }
