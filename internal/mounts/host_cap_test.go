package mounts

import (
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// A refused /proc/<pid>/root says whether this process lacks
// CAP_SYS_PTRACE or holds it (then something else denies the access, and
// "needs CAP_SYS_PTRACE" would send the operator after the wrong fix).
// Capabilities are per thread: the case without it runs on a thread that
// dropped it from its effective set and is then thrown away.
func TestNamespaceRootErrorSaysWhetherPtraceIsHeld(t *testing.T) {
	const held, missing = "although this one holds CAP_SYS_PTRACE", "needs CAP_SYS_PTRACE, which this process does not hold"
	check := func(t *testing.T, want string) {
		msg := rootError("/proc/1/root", true, unix.EACCES).Error()
		if !strings.Contains(msg, want) {
			t.Errorf("%q does not say %q", msg, want)
		}
	}
	t.Run("held", func(t *testing.T) {
		testenv.Require(t, hasEffectiveCap(unix.CAP_SYS_PTRACE), "CAP_SYS_PTRACE (root)")
		check(t, held)
	})
	t.Run("missing", func(t *testing.T) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			runtime.LockOSThread() // never unlocked: the thread goes with the goroutine
			hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
			var data [2]unix.CapUserData
			if err := unix.Capget(&hdr, &data[0]); err != nil {
				t.Error(err)
				return
			}
			data[unix.CAP_SYS_PTRACE/32].Effective &^= 1 << (unix.CAP_SYS_PTRACE % 32)
			if err := unix.Capset(&hdr, &data[0]); err != nil {
				t.Error(err)
				return
			}
			check(t, missing)
		}()
		<-done
	})
}
