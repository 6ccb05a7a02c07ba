package packaging

import (
	"os"
	"strings"
	"testing"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// LICENSE is the Apache License 2.0, word for word: Debian ships the
// canonical text in base-files, so compare with it (line breaks aside).
func TestLicense(t *testing.T) {
	ours, err := os.ReadFile(top + "/LICENSE")
	if err != nil {
		t.Fatal(err)
	}
	debian, err := os.ReadFile("/usr/share/common-licenses/Apache-2.0")
	testenv.Require(t, err == nil, "/usr/share/common-licenses/Apache-2.0 (apt package base-files): %v", err)
	if got, want := strings.Fields(string(ours)), strings.Fields(string(debian)); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("LICENSE is not the Apache License 2.0 (%d words, the canonical text %d)", len(got), len(want))
	}
	// The Debian package says so, in machine-readable form.
	cp, err := os.ReadFile(top + "/packaging/deb/copyright")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cp), "\nFiles: *\nCopyright: 2026 The mountwatchd authors\nLicense: Apache-2.0\n") ||
		!strings.Contains(string(cp), `"/usr/share/common-licenses/Apache-2.0"`) {
		t.Error("packaging/deb/copyright does not license Files: * under Apache-2.0 with the common-licenses pointer")
	}
}
