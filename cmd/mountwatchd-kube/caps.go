package main

import (
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dropCapabilities empties this process's capability sets, on every
// thread, and sets no_new_privs: talking to the API server needs none of
// the three the daemon holds (SYS_ADMIN, SYS_PTRACE, DAC_READ_SEARCH),
// which a root child would otherwise inherit. It works in the static
// builds the packages and the image ship; a cgo build cannot change every
// thread (syscall.AllThreadsSyscall: ENOTSUP) and keeps them.
func dropCapabilities() error {
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); e != 0 {
		return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS) on every thread: %w", e)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData // all zero: no capability in any set
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return fmt.Errorf("capset on every thread: %w", e)
	}
	return nil
}
