package probe

import (
	"testing"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// Tests that mount run as root in a private mount namespace.
func TestMain(m *testing.M) { testenv.Main(m) }
