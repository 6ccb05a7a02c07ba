// Package testfuse holds FUSE servers for tests. fakecephfuse presents a
// directory as a ceph-fuse mount (fstype fuse.ceph-fuse, source ceph-fuse)
// and can be told to stop answering or to die, the two ways a real
// ceph-fuse breaks a node. It is a test tool, never shipped.
package testfuse
