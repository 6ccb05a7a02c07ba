package tasks

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/mountwatchd/mountwatchd/internal/kubecgroup"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

// nameCluster fills in pod namespaces and names (from the mount table's pod
// volumes, else kubelet's pod log directory) and container names (from
// kubelet's container log links), reading kubelet's files only when a
// stuck task is in a pod.
func (x *scan) nameCluster() {
	need := false
	for _, t := range x.tasks {
		need = need || t.Pod != nil
	}
	if !need {
		return
	}
	known := map[string][2]string{}
	if x.snap != nil {
		for _, m := range x.snap.Mounts {
			if k := m.Kube; k != nil && k.PodUID != "" && k.PodName != "" {
				known[k.PodUID] = [2]string{k.PodNamespace, k.PodName}
			}
		}
	}
	h := x.sc.cfg.Host
	var kf *mounts.KubeFiles
	containers := containerLogNames(h)
	for i := range x.tasks {
		p := x.tasks[i].Pod
		if p == nil {
			continue
		}
		if nn, ok := known[p.UID]; ok {
			p.Namespace, p.Name = nn[0], nn[1]
		} else {
			if kf == nil {
				kf = mounts.OpenKubeFiles(h)
				defer kf.Close()
			}
			if ns, name, ok := kf.Pod(p.UID); ok {
				p.Namespace, p.Name = ns, name
				known[p.UID] = [2]string{ns, name}
			}
		}
		if c, ok := containers[p.ContainerID]; ok {
			p.Container = c.container
			if p.Name == "" {
				p.Namespace, p.Name = c.namespace, c.pod
			}
		}
	}
}

type containerLog struct{ pod, namespace, container string }

// containerLogNames reads kubelet's container log links,
// <pod>_<namespace>_<container>-<container id>.log in the containers
// directory beside the pod log directory (/var/log/containers): the one
// place on a node that names a container by its runtime id without asking
// the runtime. Only the names are read; no link is followed.
func containerLogNames(h mounts.Host) map[string]containerLog {
	out := map[string]containerLog{}
	entries, err := os.ReadDir(h.FS().Path(filepath.Dir(filepath.Clean(h.PodLogDir)), "containers"))
	if err != nil {
		return out
	}
	for _, e := range entries {
		if c, id, ok := parseContainerLog(e.Name()); ok {
			out[id] = c
		}
	}
	return out
}

// parseContainerLog splits <pod>_<namespace>_<container>-<id>.log. Neither
// pod, namespace nor container names hold '_'; the id is the part after the
// container name's last '-'.
func parseContainerLog(name string) (containerLog, string, bool) {
	base, ok := strings.CutSuffix(name, ".log")
	if !ok {
		return containerLog{}, "", false
	}
	parts := strings.Split(base, "_")
	if len(parts) != 3 {
		return containerLog{}, "", false
	}
	i := strings.LastIndexByte(parts[2], '-')
	if i <= 0 || !kubecgroup.IsContainerID(parts[2][i+1:]) || parts[0] == "" || parts[1] == "" {
		return containerLog{}, "", false
	}
	return containerLog{pod: parts[0], namespace: parts[1], container: parts[2][:i]}, parts[2][i+1:], true
}
