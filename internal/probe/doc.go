// Package probe asks FUSE and network mounts whether their server answers:
// one probe (openat2, fstatfs, fstat, and the deep request: the root's
// first getdents64) per connection per run, never waited for past its
// deadline, and never a second probe to a connection whose first is still
// blocked, in this process or, through records in a state directory, in
// an earlier one.
//
// The syscalls run in helper processes (HelperFS, ServeHelper): a server
// that read a request and waits on its backend holds the thread that made
// it in uninterruptible sleep, and a process with such a thread cannot
// exit. SysFS makes them on the calling thread; only a helper should use
// it.
//
// check.Runner makes one Round per run of the checks and hands it to the
// checks that need it (stale_mount and hung_mount read it; shadowed_mount
// reads the latest); nothing else should make syscalls on a mount that can
// block. SysFS resolves each probed path below the inspected root
// (mounts.Root).
package probe
