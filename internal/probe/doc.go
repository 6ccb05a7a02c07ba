// Package probe asks FUSE and network mounts whether their server answers:
// one probe (openat2, fstatfs, fstat) per connection per run, on a goroutine
// of its own, never waited for past its deadline, and never a second probe
// to a connection whose first is still blocked.
//
// The checks that report dead and hung mounts (package check) read its
// Rounds; nothing else should make syscalls on a mount that can block.
package probe
