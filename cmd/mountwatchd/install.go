package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/mountwatchd/mountwatchd/internal/flagname"
)

// installTo copies the running binary to dir/mountwatchd (mode 0755,
// through a temporary file renamed into place, so a reader never sees half
// a binary). It is how node-problem-detector gets the plugin: an init
// container of the NPD pod runs the mountwatchd image with --install-to on
// a volume it shares with NPD. The image has no shell and no cp.
func installTo(dir string) error {
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return fmt.Errorf("--"+flagname.InstallTo+": %w", err)
	}
	defer self.Close()
	tmp, err := os.CreateTemp(dir, ".mountwatchd-*")
	if err != nil {
		return fmt.Errorf("--"+flagname.InstallTo+": %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err = io.Copy(tmp, self); err == nil {
		err = tmp.Chmod(0o755)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, "mountwatchd"))
	}
	if err != nil {
		return fmt.Errorf("--"+flagname.InstallTo+": %w", err)
	}
	return nil
}
