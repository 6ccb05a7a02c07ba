package tasks

import (
	"strings"
)

// Pod names the Kubernetes pod and container a task runs in, from its
// cgroup path as kubelet makes it. Fields are empty when unknown.
type Pod struct {
	UID       string `json:"pod_uid,omitempty"`
	Namespace string `json:"pod_namespace,omitempty"`
	Name      string `json:"pod_name,omitempty"`
	QoS       string `json:"qos,omitempty"` // guaranteed, burstable or besteffort
	// ContainerID is the runtime's id from the cgroup; Container its name,
	// from kubelet's container log links when they name the id.
	ContainerID string `json:"container_id,omitempty"`
	Container   string `json:"container,omitempty"`
}

// parseCgroup reads the pod and container out of /proc/<pid>/cgroup, for
// both kubelet cgroup drivers and for cgroup v1 and v2:
//
//	cgroupfs: .../kubepods[/<qos>]/pod<uid>/<container id>
//	systemd:  .../kubepods.slice[/kubepods-<qos>.slice]/kubepods[-<qos>]-pod<uid with _ for ->.slice/<runtime>-<container id>.scope
//
// A guaranteed pod has no QoS level. With cgroup v1 every hierarchy has a
// line; the first that names a pod is used. ok is false when no line names
// a pod (a task of the node itself).
func parseCgroup(data []byte) (p Pod, ok bool) {
	for line := range strings.SplitSeq(string(data), "\n") {
		// hierarchy-ID:controller-list:cgroup-path; the path may hold ':'.
		_, rest, found := strings.Cut(line, ":")
		if !found {
			continue
		}
		_, cgPath, found := strings.Cut(rest, ":")
		if !found {
			continue
		}
		if p, ok = parseKubeCgroupPath(cgPath); ok {
			return p, true
		}
	}
	return Pod{}, false
}

func parseKubeCgroupPath(cgPath string) (Pod, bool) {
	segs := strings.Split(strings.Trim(cgPath, "/"), "/")
	for i, s := range segs {
		var p Pod
		switch {
		case strings.HasPrefix(s, "pod") && isUID(s[3:]) && i > 0: // cgroupfs
			p.UID = s[3:]
			switch prev := segs[i-1]; prev {
			case "besteffort", "burstable":
				p.QoS = prev
			case "kubepods":
				p.QoS = "guaranteed"
			default:
				continue
			}
			if i+1 < len(segs) && isID(segs[i+1]) {
				p.ContainerID = segs[i+1]
			}
			return p, true
		case strings.HasPrefix(s, "kubepods") && strings.HasSuffix(s, ".slice"): // systemd
			name := strings.TrimSuffix(s, ".slice")
			j := strings.LastIndex(name, "-pod")
			if j < 0 {
				continue
			}
			uid := strings.ReplaceAll(name[j+len("-pod"):], "_", "-")
			if !isUID(uid) {
				continue
			}
			switch qos := strings.TrimPrefix(name[:j], "kubepods"); qos {
			case "-besteffort", "-burstable":
				p.QoS = qos[1:]
			case "":
				p.QoS = "guaranteed"
			default:
				continue
			}
			p.UID = uid
			if i+1 < len(segs) {
				p.ContainerID = scopeID(segs[i+1])
			}
			return p, true
		}
	}
	return Pod{}, false
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
		if id, ok := strings.CutPrefix(name, prefix); ok && isID(id) {
			return id
		}
	}
	return ""
}

// isUID accepts a pod UID: a UUID, or the 32 hex digits kubelet gives a
// static pod.
func isUID(s string) bool {
	if len(s) < 32 || len(s) > 36 {
		return false
	}
	return strings.Trim(s, "0123456789abcdef-") == ""
}

// isID accepts a container id: hex digits, at most 64 of them (runtimes use
// 64; tests and other runtimes may use fewer).
func isID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	return strings.Trim(s, "0123456789abcdef") == ""
}
