// Package podlive tells whether a kubelet pod is still running on a node
// from the node's own state, without the Kubernetes API: a process in the
// pod's cgroup (kubelet's cgroupfs or systemd cgroup driver, on cgroup v1 or
// v2), or, where no kubelet cgroup can be seen, a sandbox task of the pod in
// containerd's state directory.
//
// Kubelet makes a pod's cgroup before it mounts the pod's volumes and starts
// the pod's first process (the sandbox) only once every volume is mounted;
// at tear-down it stops every container before it unmounts. So a pod whose
// cgroup holds a process has all its volumes mounted, and a cgroup without
// one is a pod being set up or torn down.
//
// It only reads: bounded reads of cgroup.events, cgroup.procs and
// containerd's config.json files, through os.Root (no path leaves the
// cgroup or containerd tree), never following a symlink it meets.
package podlive

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"syscall"

	"github.com/mountwatchd/mountwatchd/internal/kubecgroup"
)

// State is what the node says about a pod.
type State string

// States of a pod.
const (
	// Running: a process is in the pod's cgroup, or containerd has a
	// sandbox task of the pod.
	Running State = "running"
	// Stopped: the pod's cgroup exists and holds no process (kubelet is
	// setting the pod up or tearing it down).
	Stopped State = "stopped"
	// Gone: kubelet's pod cgroups can be seen and this pod has none, and
	// containerd (when readable) has no sandbox of it.
	Gone State = "gone"
	// Unknown: neither kubelet's cgroups nor containerd's state could be
	// read.
	Unknown State = "unknown"
)

// Pod is the node's answer for one pod.
type Pod struct {
	State State
	// Evidence names what the answer rests on: the cgroup directory (as
	// the inspected node names it) or containerd's sandbox task.
	Evidence string
}

// Limits of what one Reader reads.
const (
	maxSmallFile   = 4 << 10 // cgroup.events, the head of cgroup.procs
	maxConfig      = 1 << 20 // a task's config.json
	maxChildren    = 256     // container cgroups read under one pod cgroup (v1)
	maxTasks       = 4096    // task directories of containerd's k8s.io namespace
	containerdTask = "io.containerd.runtime.v2.task/k8s.io"
	sandboxUIDKey  = `"io.kubernetes.cri.sandbox-uid"`
)

// Reader answers for pods of one node. Make one per run: it caches what it
// read (the cgroup hierarchies, containerd's sandboxes) for the run's
// questions and holds descriptors until Close.
type Reader struct {
	// Cgroup is the node's cgroup filesystem root (/sys/fs/cgroup) as this
	// process reaches it; NodeCgroup is the same as the node names it, for
	// Evidence.
	Cgroup, NodeCgroup string
	// Containerd is containerd's state directory (/run/containerd) as this
	// process reaches it; "" does not look there.
	Containerd, NodeContainerd string

	opened      bool
	hierarchies []hierarchy
	kubepods    bool // some hierarchy has kubelet's kubepods cgroup
	sandboxes   map[string]string
	sandboxErr  error
}

// hierarchy is one mounted cgroup hierarchy: the v2 one, or a v1 controller.
type hierarchy struct {
	root *os.Root
	name string // below Cgroup: "" (v2 at the root), "unified", "pids", ...
	v2   bool
}

// Filesystem magics (statfs f_type).
const (
	cgroup2Magic = 0x63677270
	cgroup1Magic = 0x27e0eb
)

// v1Controllers are the v1 hierarchies looked at: kubelet's cgroupfs driver
// makes a pod's cgroup in every controller, its systemd driver in the
// named systemd hierarchy too.
var v1Controllers = []string{"pids", "memory", "cpu,cpuacct", "cpu", "systemd"}

func (r *Reader) open() {
	if r.opened {
		return
	}
	r.opened = true
	if r.Cgroup == "" {
		return
	}
	add := func(name string, v2 bool) {
		dir := r.Cgroup
		if name != "" {
			dir = r.Cgroup + "/" + name
		}
		// Lstat: a symlink (cpu -> cpu,cpuacct) is the same hierarchy
		// under another name, and is never followed.
		if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
			return
		}
		var st syscall.Statfs_t
		if syscall.Statfs(dir, &st) != nil {
			return
		}
		if (v2 && st.Type != cgroup2Magic) || (!v2 && st.Type != cgroup1Magic) {
			return
		}
		root, err := os.OpenRoot(dir)
		if err != nil {
			return
		}
		h := hierarchy{root: root, name: name, v2: v2}
		r.hierarchies = append(r.hierarchies, h)
		for _, kp := range kubecgroup.Roots {
			if fi, err := root.Lstat(kp); err == nil && fi.IsDir() {
				r.kubepods = true
			}
		}
	}
	add("", true)        // unified (pure v2)
	add("unified", true) // hybrid: systemd's v2 hierarchy
	for _, c := range v1Controllers {
		add(c, false)
	}
}

// Close releases the descriptors the Reader holds.
func (r *Reader) Close() {
	for _, h := range r.hierarchies {
		h.root.Close()
	}
	r.hierarchies = nil
}

// Pod says whether pod uid runs: Running when any hierarchy's pod cgroup
// holds a process (or, without kubelet cgroups, containerd has its
// sandbox), Stopped when a pod cgroup exists with no process, Gone when
// kubelet's cgroups are there and the pod has none.
func (r *Reader) Pod(uid string) Pod {
	if !kubecgroup.ValidUID(uid) {
		return Pod{State: Unknown, Evidence: "not a pod UID"}
	}
	r.open()
	var stopped string
	for _, h := range r.hierarchies {
		for _, rel := range kubecgroup.PodPaths(uid) {
			fi, err := h.root.Lstat(rel)
			if err != nil || !fi.IsDir() {
				continue
			}
			ev := path.Join(r.NodeCgroup, h.name, rel)
			if populated(h, rel) {
				return Pod{State: Running, Evidence: "cgroup " + ev + " holds a process"}
			}
			if stopped == "" {
				stopped = ev
			}
		}
	}
	if stopped != "" {
		return Pod{State: Stopped, Evidence: "cgroup " + stopped + " holds no process"}
	}
	if id, ok := r.sandbox(uid); ok {
		return Pod{State: Running, Evidence: "containerd sandbox task " + id}
	}
	if r.kubepods {
		return Pod{State: Gone, Evidence: "no pod cgroup under kubepods"}
	}
	if r.Containerd != "" && r.sandboxErr == nil {
		return Pod{State: Gone, Evidence: "no kubelet cgroups seen, and no containerd sandbox task of the pod"}
	}
	return Pod{State: Unknown, Evidence: "neither kubelet's pod cgroups nor containerd's tasks are readable"}
}

// populated reports whether the cgroup rel of h, or one below it, holds a
// process: cgroup.events' "populated 1" on v2; on v1 (no cgroup.events)
// a non-empty cgroup.procs in it or in one of its children (a container's
// cgroup), reading at most maxChildren.
func populated(h hierarchy, rel string) bool {
	if h.v2 {
		b := readSmall(h.root, rel+"/cgroup.events", maxSmallFile)
		return bytes.Contains(b, []byte("populated 1"))
	}
	if len(bytes.TrimSpace(readSmall(h.root, rel+"/cgroup.procs", 64))) > 0 {
		return true
	}
	d, err := h.root.Open(rel)
	if err != nil {
		return false
	}
	defer d.Close()
	ents, _ := d.ReadDir(maxChildren)
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if len(bytes.TrimSpace(readSmall(h.root, rel+"/"+e.Name()+"/cgroup.procs", 64))) > 0 {
			return true
		}
	}
	return false
}

// readSmall reads at most n bytes of the regular file name below root,
// without following a symlink at its end and without blocking on a FIFO.
func readSmall(root *os.Root, name string, n int64) []byte {
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(f, n))
	return b
}

// sandbox returns containerd's sandbox task of pod uid: a task directory of
// the k8s.io namespace whose config.json carries the CRI annotation
// io.kubernetes.cri.sandbox-uid = uid (containerd >= 1.5 writes it into
// the sandbox's OCI spec). The task directories exist from the task's
// creation to its deletion, which the CRI plugin does once it has exited.
func (r *Reader) sandbox(uid string) (string, bool) {
	if r.Containerd == "" {
		return "", false
	}
	if r.sandboxes == nil {
		r.sandboxes, r.sandboxErr = readSandboxes(r.Containerd)
	}
	id, ok := r.sandboxes[uid]
	return id, ok
}

// readSandboxes maps pod UIDs to their sandbox tasks' ids from the config
// files under containerd's state directory.
func readSandboxes(state string) (map[string]string, error) {
	out := map[string]string{}
	root, err := os.OpenRoot(state)
	if err != nil {
		return out, err
	}
	defer root.Close()
	d, err := root.Open(containerdTask)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return out, nil // no k8s.io task: nothing runs
		}
		return out, err
	}
	defer d.Close()
	ents, err := d.ReadDir(maxTasks)
	if err != nil && !errors.Is(err, io.EOF) {
		return out, err
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		b := readSmall(root, containerdTask+"/"+e.Name()+"/config.json", maxConfig)
		if uid, ok := SandboxUID(b); ok {
			out[uid] = e.Name()
		}
	}
	return out, nil
}

// SandboxUID finds the CRI annotation io.kubernetes.cri.sandbox-uid in an
// OCI runtime spec (config.json) and returns its value; only a sandbox's
// spec carries it.
func SandboxUID(spec []byte) (string, bool) {
	i := bytes.Index(spec, []byte(sandboxUIDKey))
	if i < 0 {
		return "", false
	}
	rest := bytes.TrimLeft(spec[i+len(sandboxUIDKey):], " \t\r\n")
	if len(rest) == 0 || rest[0] != ':' {
		return "", false
	}
	rest = bytes.TrimLeft(rest[1:], " \t\r\n")
	if len(rest) == 0 || rest[0] != '"' {
		return "", false
	}
	end := bytes.IndexByte(rest[1:], '"')
	if end < 0 {
		return "", false
	}
	uid := string(rest[1 : 1+end])
	if !kubecgroup.ValidUID(uid) {
		return "", false
	}
	return uid, true
}
