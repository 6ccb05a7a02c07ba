// Package mounts reads a mount table into a Snapshot: every line parsed and
// classified once (FUSE, network, overlay, kubelet pod volume, subpath, CSI
// staging), the overlay layer chains, and Host, the mount namespace inspected
// and how to reach its files. Root, its root held open, is how the checks
// reach a path of that namespace; some callers still build paths from
// Host.Path strings, and the layout (package layout) also reads the running
// kubelet's and containerd's command lines through a cache of its own.
//
// Parsing is a function of the table's bytes; classifying a live table also
// reads a few small kubelet files (vol_data.json, the pod log directory), so
// the checks can be tested on captured tables without root. It never touches
// a mounted filesystem's contents. It is not a general mountinfo library:
// use github.com/moby/sys/mountinfo for that.
package mounts
