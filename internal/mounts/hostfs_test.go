package mounts

import "testing"

// A path of the inspected namespace is reached below another process's
// root, and is itself in our own namespace; elements are joined.
func TestHostFSPath(t *testing.T) {
	for _, c := range []struct {
		h     Host
		elems []string
		want  string
	}{
		{Host{}, []string{"/var/lib/kubelet"}, "/var/lib/kubelet"},
		{Host{}, []string{"/var/log", "containers"}, "/var/log/containers"},
		{Host{PID: 1}, []string{"/var/lib/kubelet"}, "/proc/1/root/var/lib/kubelet"},
		{Host{PID: 42, Procfs: "/host/proc"}, []string{"/var/log", "containers"}, "/host/proc/42/root/var/log/containers"},
		{Host{PID: 1}, []string{"/"}, "/proc/1/root"},
	} {
		if got := c.h.FS().Path(c.elems...); got != c.want {
			t.Errorf("%+v.FS().Path(%q) = %q, want %q", c.h, c.elems, got, c.want)
		}
	}
	if fs := (Host{PID: 7}).FS(); fs != "/proc/7/root" {
		t.Errorf("FS of pid 7: %q", fs)
	}
}
