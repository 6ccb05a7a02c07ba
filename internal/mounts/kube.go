package mounts

import (
	"encoding/json"
	"io"
	"os"
	"path"
	"strings"
	"syscall"
)

// VolumeKind says what kind of kubelet mount a mount point is.
type VolumeKind string

// Kinds of kubelet mounts.
const (
	PodVolume  VolumeKind = "pod_volume"  // pods/<uid>/volumes/<plugin>/<volume>[/mount]
	SubPath    VolumeKind = "subpath"     // pods/<uid>/volume-subpaths/<volume>/<container>/<index>
	CSIStaging VolumeKind = "csi_staging" // plugins/kubernetes.io/csi/<driver>/<sha256>/globalmount
)

// Kube is what the mount point and kubelet's files say about the pod and
// volume behind a mount. Fields are empty when unknown.
type Kube struct {
	Kind         VolumeKind `json:"volume_kind,omitempty"`
	PodUID       string     `json:"pod_uid,omitempty"`
	PodNamespace string     `json:"pod_namespace,omitempty"`
	PodName      string     `json:"pod_name,omitempty"`
	VolumePlugin string     `json:"volume_plugin,omitempty"`
	Volume       string     `json:"volume,omitempty"`
	Container    string     `json:"container,omitempty"`
	CSIDriver    string     `json:"csi_driver,omitempty"`
	VolumeHandle string     `json:"volume_handle,omitempty"`
}

// CsiPlugin is the volume plugin directory of CSI volumes under a pod.
const CsiPlugin = "kubernetes.io~csi"

// kubeletRel is p relative to the kubelet root, and whether p is below it.
func kubeletRel(kubeletRoot, p string) (string, bool) {
	return strings.CutPrefix(p, strings.TrimSuffix(path.Clean(kubeletRoot), "/")+"/")
}

// ParseKubePath reads the Kubernetes context out of a mount point below the
// kubelet root. It only looks at the path; it returns nil for any other path.
func ParseKubePath(kubeletRoot, mountpoint string) *Kube {
	rel, ok := kubeletRel(kubeletRoot, mountpoint)
	if !ok {
		return nil
	}
	p := strings.Split(rel, "/")
	switch {
	case len(p) >= 5 && p[0] == "pods" && p[2] == "volumes":
		// pods/<uid>/volumes/<plugin>/<volume> or .../<volume>/mount (CSI)
		if len(p) > 6 || (len(p) == 6 && p[5] != "mount") {
			return nil
		}
		return &Kube{Kind: PodVolume, PodUID: p[1], VolumePlugin: p[3], Volume: p[4]}
	case len(p) == 6 && p[0] == "pods" && p[2] == "volume-subpaths":
		return &Kube{Kind: SubPath, PodUID: p[1], Volume: p[3], Container: p[4]}
	case len(p) == 6 && p[0] == "plugins" && p[1] == "kubernetes.io" && p[2] == "csi" && p[5] == "globalmount":
		k := &Kube{Kind: CSIStaging, VolumePlugin: CsiPlugin}
		if p[3] == "pv" { // kubelet before 1.24: plugins/kubernetes.io/csi/pv/<pv name>/globalmount
			k.Volume = p[4]
		} else {
			k.CSIDriver = p[3]
		}
		return k
	}
	return nil
}

// isStagingPath reports whether mountpoint may be a CSI staging mount
// (ParseKubePath says which are): below the kubelet root's
// plugins/kubernetes.io/csi.
func isStagingPath(kubeletRoot, mountpoint string) bool {
	rel, ok := kubeletRel(kubeletRoot, mountpoint)
	return ok && strings.HasPrefix(rel, "plugins/kubernetes.io/csi/")
}

// volData is the part of kubelet's vol_data.json that names a CSI volume.
type volData struct {
	DriverName   string `json:"driverName"`
	VolumeHandle string `json:"volumeHandle"`
	SpecVolID    string `json:"specVolID"`
}

// KubeFiles enriches Kube contexts from kubelet's files on a live host. It
// reads through os.Root, so no symlink in a pod's directory can lead it out
// of the kubelet root, and it caches what it read for one snapshot.
type KubeFiles struct {
	h       Host
	kubelet map[string]*os.Root  // by kubelet root, opened when first read; nil: cannot be opened
	pods    map[string][2]string // pod uid -> namespace, name
}

// OpenKubeFiles opens h's kubelet root and lists its pod log directory; what
// cannot be read is left out (nothing is enriched from it).
func OpenKubeFiles(h Host) *KubeFiles { return openKubeFiles(h, listPodLogs(h)) }

// openKubeFiles is OpenKubeFiles with the pod log directory listed.
func openKubeFiles(h Host, pods map[string][2]string) *KubeFiles {
	kf := &KubeFiles{h: h, pods: pods, kubelet: map[string]*os.Root{}}
	kf.root(h.KubeletRoot)
	return kf
}

// root is kubeletRoot (a path of h's namespace) opened, once; nil when it
// cannot be opened.
func (kf *KubeFiles) root(kubeletRoot string) *os.Root {
	r, ok := kf.kubelet[kubeletRoot]
	if !ok {
		r, _ = os.OpenRoot(kf.h.FS().Path(kubeletRoot))
		kf.kubelet[kubeletRoot] = r
	}
	return r
}

// listPodLogs lists h's pod log directory, /var/log/pods/<namespace>_<name>_<uid>:
// neither namespaces, names nor UIDs may contain "_", so the split is exact.
func listPodLogs(h Host) map[string][2]string {
	pods := map[string][2]string{}
	if entries, err := os.ReadDir(h.FS().Path(h.PodLogDir)); err == nil {
		for _, e := range entries {
			if ns, name, uid, ok := parsePodLogDir(e.Name()); ok && e.IsDir() {
				pods[uid] = [2]string{ns, name}
			}
		}
	}
	return pods
}

// parsePodLogDir splits a kubelet pod log directory name,
// <namespace>_<name>_<uid>.
func parsePodLogDir(dir string) (ns, name, uid string, ok bool) {
	parts := strings.Split(dir, "_")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// Close releases the directories.
func (kf *KubeFiles) Close() {
	for _, r := range kf.kubelet {
		if r != nil {
			r.Close()
		}
	}
}

// Enrich fills in the pod name and the CSI driver and volume handle from
// the files of kubeletRoot, the kubelet root mountpoint is under (any of
// the snapshot's KubeletRoots). Missing or unreadable files leave the
// fields empty.
func (kf *KubeFiles) Enrich(k *Kube, kubeletRoot, mountpoint string) {
	if nn, ok := kf.pods[k.PodUID]; ok && k.PodUID != "" {
		k.PodNamespace, k.PodName = nn[0], nn[1]
	}
	var dir string
	switch {
	case k.Kind == PodVolume && k.VolumePlugin == CsiPlugin:
		dir = path.Join("pods", k.PodUID, "volumes", CsiPlugin, k.Volume)
	case k.Kind == CSIStaging:
		rel, _ := kubeletRel(kubeletRoot, mountpoint)
		dir = path.Dir(rel)
	default:
		return
	}
	vd, ok := kf.readVolData(kf.root(kubeletRoot), path.Join(dir, "vol_data.json"))
	if !ok {
		return
	}
	if vd.DriverName != "" {
		k.CSIDriver = vd.DriverName
	}
	k.VolumeHandle = vd.VolumeHandle
	if k.Kind == CSIStaging && k.Volume == "" {
		k.Volume = vd.SpecVolID
	}
}

func (kf *KubeFiles) readVolData(root *os.Root, name string) (volData, bool) {
	var vd volData
	if root == nil {
		return vd, false
	}
	// O_NONBLOCK: a FIFO planted in place of the file must not block us.
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return vd, false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return vd, false
	}
	data, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return vd, false
	}
	return parseVolData(data)
}

// parseVolData reads kubelet's vol_data.json.
func parseVolData(data []byte) (volData, bool) {
	var vd volData
	if json.Unmarshal(data, &vd) != nil {
		return volData{}, false
	}
	return vd, true
}

// ParseKubeFilePath is parseKubePath for any file inside a pod volume or a
// subpath: it names the pod and the volume the file belongs to, or returns
// nil.
func ParseKubeFilePath(kubeletRoot, p string) *Kube {
	d := KubeVolumeDir(kubeletRoot, p)
	if d == "" {
		return nil
	}
	return ParseKubePath(kubeletRoot, d)
}

// KubeVolumeDir returns the directory of the pod volume or subpath that p,
// a path below kubeletRoot, is in or is: the mount point kubelet uses for
// it (<root>/pods/<uid>/volumes/<plugin>/<volume>[/mount],
// <root>/pods/<uid>/volume-subpaths/<volume>/<container>/<index>); "" when
// p is in none.
func KubeVolumeDir(kubeletRoot, p string) string {
	rel, ok := kubeletRel(kubeletRoot, p)
	if !ok {
		return ""
	}
	root := p[:len(p)-len(rel)] // the kubelet root, with its trailing slash
	parts := strings.Split(rel, "/")
	switch {
	case len(parts) >= 5 && parts[0] == "pods" && parts[2] == "volumes":
		n := 5
		if len(parts) >= 6 && parts[3] == CsiPlugin && parts[5] == "mount" {
			n = 6
		}
		return root + strings.Join(parts[:n], "/")
	case len(parts) >= 6 && parts[0] == "pods" && parts[2] == "volume-subpaths":
		return root + strings.Join(parts[:6], "/")
	}
	return ""
}

// Pod returns the namespace and name of the pod with this UID, from
// kubelet's pod log directory.
func (kf *KubeFiles) Pod(uid string) (namespace, name string, ok bool) {
	nn, ok := kf.pods[uid]
	return nn[0], nn[1], ok && uid != ""
}
