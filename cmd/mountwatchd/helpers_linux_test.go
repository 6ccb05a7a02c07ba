package main

import (
	"strconv"
	"syscall"
)

func itoa(n int) string { return strconv.Itoa(n) }

// newMountNS starts a child in a mount namespace of its own, as a node seen
// from a DaemonSet.
func newMountNS() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
}
