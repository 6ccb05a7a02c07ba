// Package remedy is mountwatchd's one action, opt-in: abort a hung FUSE
// connection by writing 1 to /sys/fs/fuse/connections/<N>/abort of the
// inspected namespace. The kernel then fails every request waiting on the
// connection with ENOTCONN, which frees every task stuck on it (SIGKILLed
// ones included) and turns the mount into a dead one that kubelet and the
// CSI driver know how to replace.
//
// Its one job is to decide, after a probe run, whether each hung FUSE
// connection may be aborted, and to do it or say why not: off by default;
// dry-run says exactly what would be done; on does it, only when every
// precondition holds right before acting (an allowed FUSE type, hung
// continuously past a threshold by the probe's timeout and by fusectl's
// waiting count, a fresh probe still unanswered), within a rate limit, and
// never twice for one connection (a record in the probe state directory).
// Every decision is one journal entry with its own MESSAGE_ID and a
// counter; the hung finding says when it was aborted, and a warning
// finding says when remediation is held back.
//
// It never unmounts, remounts, kills, or writes anywhere but that one
// fusectl file (and its own record). Do not use it for kernel network
// filesystems: they have no abort.
package remedy
