package testenv

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// ScaleNode is a node's worth of real mounts in the test's private mount
// namespace, shaped like kubelet's: pods with emptyDir volumes bind-mounted
// into <Kubelet>/pods/<uid>/volumes/kubernetes.io~empty-dir/<volume>, a
// few ceph-fuse-typed FUSE connections (bindfs) with a CSI staging mount and
// pod volumes bound from it, and a few containerd-shaped overlay mounts.
// Everything sits on one tmpfs at Dir, detached (with every mount below
// it) when the test ends, so tearing down 50,000 mounts is one syscall.
type ScaleNode struct {
	Dir     string
	Kubelet string // --path.kubelet
	PodLogs string // --path.pod-logs
	// Snapshots is the containerd snapshotter root the overlays' layers
	// live in (--path.containerd-snapshots).
	Snapshots string
	// FUSE are the bindfs servers, one per connection.
	FUSE []*os.Process

	pods, overlays int
}

// NewScaleNode mounts a fresh tmpfs on dir and lays out an empty node there.
func NewScaleNode(t testing.TB, dir string) *ScaleNode {
	t.Helper()
	Tmpfs(t, dir)
	n := &ScaleNode{Dir: dir, Kubelet: filepath.Join(dir, "kubelet"), PodLogs: filepath.Join(dir, "pod-logs"),
		Snapshots: filepath.Join(dir, "containerd/io.containerd.snapshotter.v1.overlayfs/snapshots")}
	for _, d := range []string{n.Kubelet + "/pods", n.PodLogs, n.Snapshots, dir + "/emptydir"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// Pods is how many pods AddPods has made.
func (n *ScaleNode) Pods() int { return n.pods }

// PodUID is the UID of the i-th pod AddPods made.
func PodUID(i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i) }

// AddPods adds count pods, each with volumes emptyDir volumes: a directory
// under Dir/emptydir bind-mounted on the volume's path, as kubelet lays out
// a pod whose emptyDirs live on their own disk. Every 100th pod's first
// volume holds ten files. Each pod gets a log directory under PodLogs
// (namespace "bench", name "pod-<i>").
func (n *ScaleNode) AddPods(t testing.TB, count, volumes int) {
	t.Helper()
	for range count {
		i := n.pods
		n.pods++
		uid := PodUID(i)
		for v := range volumes {
			src := filepath.Join(n.Dir, "emptydir", fmt.Sprintf("%s-%d", uid, v))
			dst := filepath.Join(n.Kubelet, "pods", uid, "volumes/kubernetes.io~empty-dir", fmt.Sprintf("vol-%d", v))
			for _, d := range []string{src, dst} {
				if err := os.MkdirAll(d, 0o750); err != nil {
					t.Fatal(err)
				}
			}
			if i%100 == 0 && v == 0 {
				for f := range 10 {
					if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%d", f)), []byte("x"), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := syscall.Mount(src, dst, "", syscall.MS_BIND, ""); err != nil {
				t.Fatalf("bind %s on %s: %v (mounts per namespace are capped by sysctl fs.mount-max)", src, dst, err)
			}
		}
		if err := os.Mkdir(filepath.Join(n.PodLogs, fmt.Sprintf("bench_pod-%d_%s", i, uid)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// AddFUSE adds conns ceph-fuse-typed FUSE connections (bindfs with
// -o subtype=ceph-fuse), each with a CSI staging mount of a directory of it
// and pods pod volumes bound from the staging mount, as ceph-csi lays them
// out. It returns the servers it started; SIGSTOP makes one hang.
func (n *ScaleNode) AddFUSE(t testing.TB, conns, pods int) []*os.Process {
	t.Helper()
	var out []*os.Process
	for range conns {
		c := len(n.FUSE)
		name := fmt.Sprintf("c%d", c)
		backing := filepath.Join(n.Dir, "fuse-backing", name)
		if err := os.MkdirAll(filepath.Join(backing, "volumes/csi", name), 0o755); err != nil {
			t.Fatal(err)
		}
		mnt := filepath.Join(n.Dir, "fuse", name)
		p := Bindfs(t, backing, mnt, "subtype=ceph-fuse")
		n.FUSE = append(n.FUSE, p)
		out = append(out, p)
		handle := "0001-0011-" + name
		staging := filepath.Join(n.Kubelet, "plugins/kubernetes.io/csi/cephfs.csi.ceph.com",
			fmt.Sprintf("%x", sha256.Sum256([]byte(handle))), "globalmount")
		if err := os.MkdirAll(staging, 0o750); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mount(filepath.Join(mnt, "volumes/csi", name), staging, "", syscall.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
		for i := range pods {
			uid := fmt.Sprintf("%08x-0000-4000-8000-fffff%07x", i, c)
			pv := KubeletPodVolume(t, n.Kubelet, uid, "pvc-"+name, "cephfs.csi.ceph.com", handle)
			if err := syscall.Mount(staging, pv, "", syscall.MS_BIND, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

// AddOverlays adds count containerd-shaped overlay mounts (a task's rootfs)
// over three shared lower layers in Snapshots, each with its own upper and
// work directory; the layers hold a few directories and files.
func (n *ScaleNode) AddOverlays(t testing.TB, count int) {
	t.Helper()
	var lowers []string
	for l := 1; l <= 3; l++ {
		fs := filepath.Join(n.Snapshots, fmt.Sprint(l), "fs")
		for d := range 5 {
			dir := filepath.Join(fs, fmt.Sprintf("usr/lib/d%d-%d", l, d))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		lowers = append([]string{fs}, lowers...) // top first
	}
	for range count {
		i := n.overlays
		n.overlays++
		snap := filepath.Join(n.Snapshots, fmt.Sprint(100+i))
		id := fmt.Sprintf("%064x", sha256.Sum256([]byte(fmt.Sprint(i))))
		mp := filepath.Join(n.Dir, "run/containerd/io.containerd.runtime.v2.task/k8s.io", id, "rootfs")
		for _, d := range []string{snap + "/fs", snap + "/work", mp} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		data := "lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + snap + "/fs,workdir=" + snap + "/work"
		if err := syscall.Mount("overlay", mp, "overlay", 0, data); err != nil {
			t.Fatalf("overlay on %s: %v", mp, err)
		}
	}
}

// MountCount is the number of lines of this process's mount table.
func MountCount(t testing.TB) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), "\n")
}
