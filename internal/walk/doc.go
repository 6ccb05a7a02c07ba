// Package walk scans directory trees for xattrs under a budget: resumable
// between runs, rate-limited, never following a symlink, never crossing into
// a mount it was not asked to scan, never opening a FIFO or device.
//
// It is for the scanning checks (package check); it reads and never writes.
package walk
