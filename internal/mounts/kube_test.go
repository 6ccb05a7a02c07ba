package mounts

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestParseKubePath(t *testing.T) {
	const kr = "/var/lib/kubelet"
	for _, c := range []struct {
		path string
		want *Kube
	}{
		{kr + "/pods/u1/volumes/kubernetes.io~csi/pvc-1/mount", &Kube{Kind: PodVolume, PodUID: "u1", VolumePlugin: "kubernetes.io~csi", Volume: "pvc-1"}},
		{kr + "/pods/u1/volumes/kubernetes.io~empty-dir/cache", &Kube{Kind: PodVolume, PodUID: "u1", VolumePlugin: "kubernetes.io~empty-dir", Volume: "cache"}},
		{kr + "/pods/u1/volume-subpaths/data/app/2", &Kube{Kind: SubPath, PodUID: "u1", Volume: "data", Container: "app"}},
		{kr + "/plugins/kubernetes.io/csi/cephfs.csi.ceph.com/abc/globalmount", &Kube{Kind: CSIStaging, VolumePlugin: "kubernetes.io~csi", CSIDriver: "cephfs.csi.ceph.com"}},
		{kr + "/plugins/kubernetes.io/csi/pv/pvc-9/globalmount", &Kube{Kind: CSIStaging, VolumePlugin: "kubernetes.io~csi", Volume: "pvc-9"}},
		{kr + "/pods/u1/volumes/kubernetes.io~empty-dir/cache/inner", nil}, // a mount inside a volume
		{kr + "/pods/u1/volumes/kubernetes.io~csi/pvc-1/other", nil},
		{kr + "/pods/u1/volumes", nil},
		{kr, nil},
		{"/var/lib/kubelet-other/pods/u1/volumes/p/v", nil},
		{"/srv", nil},
	} {
		got := ParseKubePath(kr+"/", c.path)
		if (got == nil) != (c.want == nil) || (got != nil && *got != *c.want) {
			t.Errorf("parseKubePath(%q) = %+v, want %+v", c.path, got, c.want)
		}
	}
}

// kubeletTree builds kubelet files for pod u1: a CSI volume with
// vol_data.json and a pod log directory naming the pod.
func kubeletTree(t *testing.T) (root string, h Host) {
	root = t.TempDir()
	kr := filepath.Join(root, "kubelet")
	vol := filepath.Join(kr, "pods/u1/volumes/kubernetes.io~csi/pvc-1")
	if err := os.MkdirAll(filepath.Join(vol, "mount"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(vol, "vol_data.json"), `{"driverName":"cephfs.csi.ceph.com","volumeHandle":"0001-0011-csi-vol-1","specVolID":"pvc-1"}`)
	stage := filepath.Join(kr, "plugins/kubernetes.io/csi/cephfs.csi.ceph.com/abc")
	if err := os.MkdirAll(filepath.Join(stage, "globalmount"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(stage, "vol_data.json"), `{"driverName":"cephfs.csi.ceph.com","volumeHandle":"0001-0011-csi-vol-1","specVolID":"pvc-1"}`)
	logs := filepath.Join(root, "pods-logs")
	if err := os.MkdirAll(filepath.Join(logs, "shop_web-0_u1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(logs, "not-a-pod"), 0o755); err != nil {
		t.Fatal(err)
	}
	return root, Host{KubeletRoot: kr, PodLogDir: logs}.WithDefaults()
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestKubeEnrich(t *testing.T) {
	_, h := kubeletTree(t)
	kf := OpenKubeFiles(h)
	defer kf.Close()

	mp := h.KubeletRoot + "/pods/u1/volumes/kubernetes.io~csi/pvc-1/mount"
	k := ParseKubePath(h.KubeletRoot, mp)
	kf.Enrich(k, h.KubeletRoot, mp)
	want := Kube{Kind: PodVolume, PodUID: "u1", PodNamespace: "shop", PodName: "web-0", VolumePlugin: "kubernetes.io~csi",
		Volume: "pvc-1", CSIDriver: "cephfs.csi.ceph.com", VolumeHandle: "0001-0011-csi-vol-1"}
	if *k != want {
		t.Errorf("pod volume: got %+v, want %+v", *k, want)
	}

	mp = h.KubeletRoot + "/plugins/kubernetes.io/csi/cephfs.csi.ceph.com/abc/globalmount"
	k = ParseKubePath(h.KubeletRoot, mp)
	kf.Enrich(k, h.KubeletRoot, mp)
	if k.VolumeHandle != "0001-0011-csi-vol-1" || k.Volume != "pvc-1" || k.CSIDriver != "cephfs.csi.ceph.com" {
		t.Errorf("staging: got %+v", *k)
	}
}

// A vol_data.json that is a symlink out of the kubelet root, or a FIFO, is
// neither followed nor waited on.
func TestKubeEnrichHostileFiles(t *testing.T) {
	root, h := kubeletTree(t)
	outside := filepath.Join(root, "outside.json")
	writeFile(t, outside, `{"driverName":"leaked","volumeHandle":"leaked"}`)
	vol := filepath.Join(h.KubeletRoot, "pods/u1/volumes/kubernetes.io~csi/pvc-1")
	os.Remove(filepath.Join(vol, "vol_data.json"))
	if err := os.Symlink(outside, filepath.Join(vol, "vol_data.json")); err != nil {
		t.Fatal(err)
	}
	vol2 := filepath.Join(h.KubeletRoot, "pods/u1/volumes/kubernetes.io~csi/pvc-2")
	if err := os.MkdirAll(vol2, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(vol2, "vol_data.json"), 0o644); err != nil {
		t.Fatal(err)
	}

	kf := OpenKubeFiles(h)
	defer kf.Close()
	for _, v := range []string{"pvc-1", "pvc-2"} {
		mp := h.KubeletRoot + "/pods/u1/volumes/kubernetes.io~csi/" + v + "/mount"
		k := ParseKubePath(h.KubeletRoot, mp)
		kf.Enrich(k, h.KubeletRoot, mp) // would block forever on the FIFO without O_NONBLOCK
		if k.CSIDriver != "" || k.VolumeHandle != "" {
			t.Errorf("%s: read a hostile vol_data.json: %+v", v, *k)
		}
		if k.PodName != "web-0" {
			t.Errorf("%s: pod name lost: %+v", v, *k)
		}
	}
}

func TestParseKubeFilePath(t *testing.T) {
	const kr = "/var/lib/kubelet"
	for _, c := range []struct {
		path string
		want *Kube
	}{
		{kr + "/pods/u1/volumes/kubernetes.io~csi/pvc-1/mount/a/b", &Kube{Kind: PodVolume, PodUID: "u1", VolumePlugin: "kubernetes.io~csi", Volume: "pvc-1"}},
		{kr + "/pods/u1/volumes/kubernetes.io~csi/pvc-1/vol_data.json", &Kube{Kind: PodVolume, PodUID: "u1", VolumePlugin: "kubernetes.io~csi", Volume: "pvc-1"}},
		{kr + "/pods/u1/volumes/kubernetes.io~empty-dir/cache/layers/1/fs/func", &Kube{Kind: PodVolume, PodUID: "u1", VolumePlugin: "kubernetes.io~empty-dir", Volume: "cache"}},
		{kr + "/pods/u1/volumes/kubernetes.io~empty-dir/cache", &Kube{Kind: PodVolume, PodUID: "u1", VolumePlugin: "kubernetes.io~empty-dir", Volume: "cache"}},
		{kr + "/pods/u1/volume-subpaths/data/app/2/x", &Kube{Kind: SubPath, PodUID: "u1", Volume: "data", Container: "app"}},
		{kr + "/pods/u1/volumes/kubernetes.io~empty-dir", nil},
		{kr + "/pods/u1/etc-hosts", nil},
		{"/srv/x/y/z/w/v", nil},
	} {
		got := ParseKubeFilePath(kr, c.path)
		if (got == nil) != (c.want == nil) || (got != nil && *got != *c.want) {
			t.Errorf("parseKubeFilePath(%q) = %+v, want %+v", c.path, got, c.want)
		}
	}
}
