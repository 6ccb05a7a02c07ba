package main

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
)

// A second kubelet's root in the seed's table (k0s's default root): a local
// volume whose directory on the node's disk was deleted.
const (
	k0sKubelet = "/var/lib/k0s/kubelet"
	k0sUID     = "4c3b2a19-0f8e-4d7c-b6a5-948372615aab"
	k0sVolume  = "pvc-logs"
	k0sMount   = k0sKubelet + "/pods/" + k0sUID + "/volumes/kubernetes.io~local-volume/" + k0sVolume
)

// TestOnceTwoKubeletRoots is issue 30's second item: pod volumes under two
// kubelet roots, the seed's /data/kubernetes/kubelet and a second
// kubelet's /var/lib/k0s/kubelet, none under the default /var/lib/kubelet,
// and no kubelet process in the node's mount namespace to decide. The
// deleted pod volumes under both roots are critical and name their pod and
// volume (the seed's its CSI driver, and live its pod's name and volume
// handle from kubelet's files under its root), live through --target.pid
// and from the same shape captured; the layout still says the root is
// ambiguous, with both candidates.
func TestOnceTwoKubeletRoots(t *testing.T) {
	pid, _ := seedNodeWith(t, fmt.Sprintf("mkdir -p $D/disk/%[1]s $D%[2]s && mount --bind $D/disk/%[1]s $D%[2]s && rmdir $D/disk/%[1]s", k0sVolume, k0sMount))
	live := mountwatchd(t, "--once", "--output=json", "--target.pid", strconv.Itoa(pid), "--probe.timeout=500ms", "--once.timeout=3s")
	captured := mountwatchd(t, "--mountinfo", "../../internal/mounts/testdata/layout-two-kubelets.mountinfo", "--output=json")
	for name, r := range map[string]result{"live": live, "captured": captured} {
		d := decode(t, r)
		if r.code != 1 {
			t.Errorf("%s: exit %d:\n%s%s", name, r.code, r.stdout, r.stderr)
		}
		seed, k0s := findingAt(d, seedMount), findingAt(d, k0sMount)
		if seed == nil || seed.Check != "deleted_root" || seed.Severity != "critical" || seed.PodUID != seedUID ||
			seed.Volume != seedVolume || seed.CSIDriver != "cephfs.csi.ceph.com" {
			t.Errorf("%s: the seed's pod volume under %s: %+v", name, seedKubelet, seed)
		}
		if k0s == nil || k0s.Check != "deleted_root" || k0s.Severity != "critical" || k0s.PodUID != k0sUID || k0s.Volume != k0sVolume {
			t.Errorf("%s: the pod volume under %s: %+v", name, k0sKubelet, k0s)
		}
		if name == "live" && (seed == nil || seed.PodName != "grafana-0" || seed.VolumeHandle != "0001-0024-csi-vol-7d1e") {
			t.Errorf("live: kubelet's files under %s not read: %+v", seedKubelet, seed)
		}
		l := d.Layout
		if l == nil {
			t.Fatalf("%s: no layout", name)
		}
		if c := sortedStrings(l.Kubelet.Candidates); l.Kubelet.Source != "default" || !slices.Equal(c, []string{seedKubelet, k0sKubelet}) {
			t.Errorf("%s: the ambiguity is not reported: %+v", name, l.Kubelet)
		}
		if !slices.Equal(l.KubeletRoots, []string{"/var/lib/kubelet", seedKubelet, k0sKubelet}) { // the one kept first, then by mounts
			t.Errorf("%s: kubelet roots used %q", name, l.KubeletRoots)
		}
	}
	// A flag given is the only root: the second kubelet's volume names no pod.
	d := decode(t, mountwatchd(t, "--mountinfo", "../../internal/mounts/testdata/layout-two-kubelets.mountinfo", "--output=json", "--path.kubelet="+seedKubelet))
	if f := findingAt(d, k0sMount); f == nil || f.PodUID != "" || len(d.Layout.KubeletRoots) != 1 {
		t.Errorf("with --path.kubelet: %+v, roots %q", f, d.Layout.KubeletRoots)
	}
}

func sortedStrings(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }
