// Package tasks finds the node's tasks (threads) stuck on a FUSE or network
// filesystem: asleep in the kernel waiting for a server that does not answer.
// It reads only /proc files that never take a blocked task's locks — stat,
// status, wchan, syscall, fdinfo, cgroup, mountinfo and the ns/mnt link —
// and never cmdline, environ or mem, which take the task's mm lock and hang
// the reader as ps hangs on such nodes.
//
// A Scanner attributes each stuck task to a connection (major:minor) where
// the kernel says which: the mnt_id of the descriptor its system call works
// on, or, for a FUSE wait with no such descriptor, the only FUSE connection
// with requests waiting in fusectl. It names the pod and container from the
// task's cgroup, and remembers across scans since when it has seen each task
// stuck. It is not a process monitor: tasks that sleep on other things, or
// wait on a VFS lock held by a stuck task with nothing to say which mount,
// are not counted.
package tasks
