// Package kubecgroup names kubelet's pod cgroups, once: the QoS classes,
// the paths kubelet's cgroupfs and systemd cgroup drivers give a pod and
// its containers (the systemd driver writes a UID's '-' as '_'), and the
// way back from a cgroup path to the pod, QoS class and container. It only
// computes names; it reads nothing. Package podlive looks for a pod's
// cgroup by these names, package tasks parses a task's cgroup with them,
// and the tests' stand-in pods are made with them.
package kubecgroup

import "strings"

// Kubelet's cgroup drivers.
const (
	// Cgroupfs names a pod kubepods[/<qos>]/pod<uid> and a container
	// <pod>/<container id>.
	Cgroupfs = "cgroupfs"
	// Systemd names a pod kubepods.slice[/kubepods-<qos>.slice]/
	// kubepods[-<qos>]-pod<uid with _ for ->.slice and a container
	// <pod>/<runtime>-<container id>.scope.
	Systemd = "systemd"
)

// Pod QoS classes, as kubelet writes them in cgroup names. A guaranteed
// pod has no QoS level in its path.
const (
	Guaranteed = "guaranteed"
	Burstable  = "burstable"
	BestEffort = "besteffort"
)

// Drivers and QoSClasses are every driver and class, in the order PodPaths
// lists their paths.
var (
	Drivers    = []string{Cgroupfs, Systemd}
	QoSClasses = []string{Guaranteed, Burstable, BestEffort}
)

// Roots are the cgroups below which kubelet makes every pod's, one per
// driver: kubepods (cgroupfs) and kubepods.slice (systemd).
var Roots = []string{"kubepods", "kubepods.slice"}

// ValidUID reports whether uid can be a pod UID in a cgroup name: letters,
// digits and '-' only (a UUID, or a static pod's hash), at most 64. Only
// such a UID is put into a path.
func ValidUID(uid string) bool {
	if uid == "" || len(uid) > 64 {
		return false
	}
	for _, c := range uid {
		if !uidRune(c) {
			return false
		}
	}
	return true
}

func uidRune(c rune) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-'
}

// PodPath is the cgroup kubelet's driver makes for pod uid of class qos,
// relative to a hierarchy's root.
func PodPath(driver, qos, uid string) string {
	if driver == Systemd {
		u := strings.ReplaceAll(uid, "-", "_")
		if qos == Guaranteed {
			return "kubepods.slice/kubepods-pod" + u + ".slice"
		}
		return "kubepods.slice/kubepods-" + qos + ".slice/kubepods-" + qos + "-pod" + u + ".slice"
	}
	if qos == Guaranteed {
		return "kubepods/pod" + uid
	}
	return "kubepods/" + qos + "/pod" + uid
}

// PodPaths are the cgroups pod uid can have, relative to a hierarchy's
// root: each driver's path of each QoS class.
func PodPaths(uid string) []string {
	var out []string
	for _, d := range Drivers {
		for _, q := range QoSClasses {
			out = append(out, PodPath(d, q, uid))
		}
	}
	return out
}

// Pod is what a cgroup path says of the pod it belongs to.
type Pod struct {
	UID string
	QoS string // Guaranteed, Burstable or BestEffort
	// ContainerID is the runtime's id of the container whose cgroup the
	// path is in; "" for the pod's own cgroup (or a runtime's monitor).
	ContainerID string
}

// Parse reads the pod and container out of a cgroup path (one line's path
// of /proc/<pid>/cgroup), under either driver, wherever kubelet's tree is
// rooted (kubelet.slice/kubelet-kubepods.slice/kubepods.slice/...). ok is
// false when the path is not in a pod's cgroup.
func Parse(cgPath string) (p Pod, ok bool) {
	segs := strings.Split(strings.Trim(cgPath, "/"), "/")
	for i, s := range segs {
		var next string
		if i+1 < len(segs) {
			next = segs[i+1]
		}
		if p, ok = parseCgroupfs(segs, i, next); ok {
			return p, true
		}
		if p, ok = parseSystemd(s, next); ok {
			return p, true
		}
	}
	return Pod{}, false
}

// parseCgroupfs reads segs[i] as the cgroupfs driver's pod<uid>, below
// kubepods or kubepods/<qos>.
func parseCgroupfs(segs []string, i int, next string) (Pod, bool) {
	uid, ok := strings.CutPrefix(segs[i], "pod")
	if !ok || !isUID(uid) || i == 0 {
		return Pod{}, false
	}
	p := Pod{UID: uid}
	switch prev := segs[i-1]; prev {
	case Burstable, BestEffort:
		p.QoS = prev
	case "kubepods":
		p.QoS = Guaranteed
	default:
		return Pod{}, false
	}
	if IsContainerID(next) {
		p.ContainerID = next
	}
	return p, true
}

// parseSystemd reads s as the systemd driver's kubepods[-<qos>]-pod<uid with
// _ for ->.slice.
func parseSystemd(s, next string) (Pod, bool) {
	name, ok := strings.CutSuffix(s, ".slice")
	if !ok || !strings.HasPrefix(name, "kubepods") {
		return Pod{}, false
	}
	j := strings.LastIndex(name, "-pod")
	if j < 0 {
		return Pod{}, false
	}
	p := Pod{UID: strings.ReplaceAll(name[j+len("-pod"):], "_", "-")}
	if !isUID(p.UID) {
		return Pod{}, false
	}
	switch qos := strings.TrimPrefix(name[:j], "kubepods"); qos {
	case "-" + Burstable, "-" + BestEffort:
		p.QoS = qos[1:]
	case "":
		p.QoS = Guaranteed
	default:
		return Pod{}, false
	}
	p.ContainerID = scopeID(next)
	return p, true
}

// scopeID is the container id of a runtime's systemd scope
// (cri-containerd-<id>.scope, crio-<id>.scope, docker-<id>.scope), or "" for
// anything else (crio-conmon-<id>.scope is CRI-O's monitor, not a container).
func scopeID(s string) string {
	name, ok := strings.CutSuffix(s, ".scope")
	if !ok || strings.HasPrefix(name, "crio-conmon-") {
		return ""
	}
	for _, prefix := range []string{"cri-containerd-", "crio-", "docker-"} {
		if id, ok := strings.CutPrefix(name, prefix); ok && IsContainerID(id) {
			return id
		}
	}
	return ""
}

// isUID accepts what kubelet gives a pod as UID in the cgroups it names: a
// UUID, or the 32 hex digits of a static pod.
func isUID(s string) bool {
	if len(s) < 32 || len(s) > 36 {
		return false
	}
	return strings.Trim(s, "0123456789abcdef-") == ""
}

// IsContainerID accepts a container id: hex digits, at most 64 of them
// (runtimes use 64; tests and other runtimes may use fewer).
func IsContainerID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	return strings.Trim(s, "0123456789abcdef") == ""
}
