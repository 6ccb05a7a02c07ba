// Package mounts reads a mount table into a Snapshot: every line parsed and
// classified once (FUSE, network, overlay, kubelet pod volume, subpath, CSI
// staging), the overlay layer chains, and Host, the mount namespace inspected
// and how to reach its files: Root, its root held open, is the one way any
// package resolves a path of that namespace.
//
// Everything here is a function of the table and of a few small kubelet
// files, so the checks can be tested on captured tables without root. It
// never touches a mounted filesystem's contents. It is not a general
// mountinfo library: use github.com/moby/sys/mountinfo for that.
package mounts
