// Package probe reads a mount table into a Snapshot and runs the checks that
// find broken mounts in it.
//
// Everything after "read the mount table" is a function of the Snapshot, so a
// check can be tested on a captured table without root. Checks that need the
// live system (stat, statfs, xattrs) say so through Check.Kind and are skipped
// when the table comes from a file.
//
// Every check returns Findings; the exporters (text, JSON, metrics, journal)
// consume Findings and Reports and never reach back into the checks.
//
// This package only reads: it never mounts, unmounts or writes to a watched
// filesystem. It is Linux-only and not meant as a general mountinfo library;
// use github.com/moby/sys/mountinfo for that.
package probe
