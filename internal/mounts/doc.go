// Package mounts reads a mount table into a Snapshot: every line parsed and
// classified once (FUSE, network, overlay, kubelet pod volume, subpath, CSI
// staging), the overlay layer chains, and Host, the mount namespace inspected
// and how to reach its files: HostFS (Host.FS), the namespace's root as
// this process reaches it, turns each path of the namespace into one this
// process opens, and Root, that root held open, is how the checks resolve
// a path of it without following a symlink out.
//
// Parsing is a function of the table's bytes, read from an io.Reader
// (ParseMountTableLimit, ParseSnapshot, ReadCaptured), so tests parse tables
// held in strings. Classifying a live table (RereadSnapshot) is not: it
// also reads a few small kubelet files (vol_data.json, the pod log
// directory) and, through the run's layout.ProcessCache (Host.Processes),
// the running kubelet's and containerd's command lines. The checks can
// still be tested on captured tables without root. It never touches a
// mounted filesystem's contents.
//
// It does not own the deadline of a read, the reuse of an unchanged table
// across reads or the logging of unparsable lines: read a table through
// package tableread. It is not a general mountinfo library: use
// github.com/moby/sys/mountinfo for that.
package mounts
