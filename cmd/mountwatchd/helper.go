package main

import (
	"os"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/flagname"
	"github.com/mountwatchd/mountwatchd/internal/probe"
)

// isProbeHelper reports whether this process was started as a probe
// helper (probe.HelperFS starts `mountwatchd __probe-helper`, never a user).
func isProbeHelper() bool { return len(os.Args) == 2 && os.Args[1] == probe.HelperArg }

// init names a probe helper in ps and /proc/<pid>/stat: init runs on the
// main thread, whose name is the process's.
func init() {
	if isProbeHelper() {
		if name, err := unix.BytePtrFromString(probe.HelperName); err == nil {
			_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(name)), 0, 0, 0)
		}
	}
}

// newProbeFS is how the prober makes its syscalls: in helper processes
// (probe.HelperFS), which record probes left stuck in --probe.state-dir.
// A state directory that cannot be used costs only the memory of stuck
// probes across runs: logged, and probing goes on.
func newProbeFS(cfg config, log *zap.Logger, live bool) probe.FS {
	hc := probe.HelperConfig{}
	if live {
		if err := probe.PrepareStateDir(cfg.probe.StateDir); err != nil {
			log.Warn("stuck probes will not be remembered across runs (--"+flagname.ProbeStateDir+")", zap.Error(err))
		} else {
			hc.StateDir = cfg.probe.StateDir
		}
	}
	return probe.NewHelperFS(hc)
}
