package testenv

import (
	"fmt"
	"os"
)

// RunWith runs `ctr run -d FLAGS... REF ID args...` and returns the task
// without waiting for anything: flags such as --rootfs, --with-ns,
// --cap-add/--cap-drop, --read-only and --seccomp shape the container the
// way a pod spec does. Like Run, it adds the test process's PID to the id,
// and the task, its shim and its cgroup directories go when the test ends.
func (c *Containerd) RunWith(flags []string, ref, name string, args ...string) Task {
	c.t.Helper()
	id := fmt.Sprintf("%s-%d", name, os.Getpid())
	c.tasks = append(c.tasks, id)
	all := append(append([]string{"run", "-d"}, flags...), ref, id)
	c.Ctr(append(all, args...)...)
	return Task{ID: id}
}
