// Package probe asks FUSE and network mounts whether their server answers:
// one probe (openat2, fstatfs, fstat) per connection per run, on a goroutine
// of its own, never waited for past its deadline, and never a second probe
// to a connection whose first is still blocked.
//
// check.Runner makes one Round per run of the checks and hands it to the
// checks that need it (stale_mount and hung_mount read it; shadowed_mount
// reads the latest); nothing else should make syscalls on a mount that can
// block. SysFS resolves each probed path below the inspected root
// (mounts.Root).
package probe
