package tasks

import (
	"strings"

	"github.com/mountwatchd/mountwatchd/internal/kubecgroup"
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
// both kubelet cgroup drivers (kubecgroup.Parse) and for cgroup v1 and v2:
// with cgroup v1 every hierarchy has a line; the first that names a pod is
// used. ok is false when no line names a pod (a task of the node itself).
func parseCgroup(data []byte) (Pod, bool) {
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
		if kp, ok := kubecgroup.Parse(cgPath); ok {
			return Pod{UID: kp.UID, QoS: kp.QoS, ContainerID: kp.ContainerID}, true
		}
	}
	return Pod{}, false
}
