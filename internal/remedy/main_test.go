package remedy

import (
	"testing"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
