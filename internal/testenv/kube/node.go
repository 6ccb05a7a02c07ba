package kube

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
)

// BusyboxImage is the workload image, and the pause image too: its
// /bin/sleep is the sandbox's process.
const BusyboxImage = "localhost/mwe2e/busybox:1"

// containerd starts Debian's containerd with its CRI plugin: the root and
// state of a real node (tmpfs in the test's mount namespace), runc with
// the cgroupfs driver, the bridge CNI plugin on the test's own subnet.
// restrict_oom_score_adj: these machines lack CAP_SYS_RESOURCE, and runc
// fails every sandbox that asks to lower its score.
func (c *Cluster) containerd() *proc {
	c.ContainerdSocket = "/run/containerd/containerd.sock"
	cni := filepath.Join(c.Dir, "cni")
	c.write("cni/10-mwe2e.conflist", []byte(fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "mwe2e",
  "plugins": [{
    "type": "bridge", "bridge": "mwe2e-br", "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}
  }]
}`, podSubnet)))
	conf := c.write("containerd.toml", []byte(fmt.Sprintf(`version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
[grpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
`, c.ContainerdSocket, BusyboxImage, cni)))
	p := c.start("containerd", "--config", conf)
	c.waitFor(30*time.Second, "containerd answering", func() bool {
		_, err := c.Ctr("version")
		return err == nil
	}, p)
	return p
}

// Ctr runs ctr on the node's containerd, in the k8s.io namespace kubelet uses.
func (c *Cluster) Ctr(args ...string) (string, error) {
	return run("ctr", append([]string{"--address", c.ContainerdSocket, "-n", "k8s.io"}, args...)...)
}

// ImportImage imports an OCI or Docker archive into the node's containerd
// (the k8s.io namespace kubelet uses), as `ctr images import` does.
func (c *Cluster) ImportImage(archive string) {
	c.t.Helper()
	if out, err := c.Ctr("images", "import", "--all-platforms", archive); err != nil {
		c.t.Fatalf("import %s: %v\n%s", archive, err, out)
	}
}

// importBusybox builds the busybox image offline (umoci, skopeo) and
// imports it.
func (c *Cluster) importBusybox() {
	dir := filepath.Join(c.Dir, "image")
	layout := filepath.Join(dir, "oci")
	layer := testenv.BusyboxLayer(c.t)
	testenv.Run(c.t, "umoci", "init", "--layout", layout)
	testenv.Run(c.t, "umoci", "new", "--image", layout+":t")
	testenv.Run(c.t, "umoci", "raw", "add-layer", "--image", layout+":t", layer)
	testenv.Run(c.t, "umoci", "config", "--image", layout+":t", "--config.cmd", "/bin/sleep", "--config.cmd", "2147483647")
	archive := filepath.Join(dir, "busybox.tar")
	testenv.Run(c.t, "skopeo", "--insecure-policy", "copy", "--quiet", "oci:"+layout+":t", "oci-archive:"+archive+":"+BusyboxImage)
	c.ImportImage(archive)
}

func (c *Cluster) startKubelet() *proc {
	for _, h := range cgroupHierarchies() {
		d := filepath.Join(h, c.CgroupRoot)
		if err := os.MkdirAll(d, 0o755); err != nil {
			c.t.Fatal(err)
		}
	}
	resolv := c.write("resolv.conf", nil)
	conf := c.write("kubelet.yaml", []byte(fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %s
address: %s
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
makeIPTablesUtilChains: false
failSwapOn: false
podLogsDir: %s
resolvConf: %s
evictionHard: {memory.available: "1Mi", nodefs.available: "1%%", imagefs.available: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
syncFrequency: 10s
fileCheckFrequency: 10s
containerRuntimeEndpoint: unix://%s
`, c.CgroupRoot, c.NodeIP, c.PodLogsDir, resolv, c.ContainerdSocket)))
	return c.start(filepath.Join(c.Bin, "kubelet"), "--config", conf, "--kubeconfig", c.Kubeconfig,
		"--root-dir", c.RootDir, "--node-ip", c.NodeIP, "--hostname-override", c.NodeName, "--v=2")
}

// startCSI starts the suite's CSI node plugin and declares its driver;
// kubelet finds it through its plugin-registration socket.
func (c *Cluster) startCSI() {
	c.CSIState = filepath.Join(c.Dir, "csi")
	p := c.start(filepath.Join(c.Bin, "e2e-csi"), "--driver", c.CSIDriver, "--node-id", c.NodeName,
		"--kubelet-root", c.RootDir, "--state", c.CSIState, "--fake-ceph-fuse", testenv.FakeCephFuseBinary(c.t))
	c.Apply(c.t, fmt.Sprintf(`apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata: {name: %s}
spec:
  attachRequired: false
  podInfoOnMount: true
  volumeLifecycleModes: [Persistent]
`, c.CSIDriver))
	c.waitFor(time.Minute, "the CSI driver registered on the node", func() bool {
		out, err := c.KubectlErr("get", "csinode", c.NodeName, "-o", "jsonpath={.spec.drivers[*].name}")
		return err == nil && strings.Contains(out, c.CSIDriver)
	}, p, c.kubelet)
}

// cgroupHierarchies are the mounted cgroup hierarchies (v1 controllers and
// v2), where kubelet and runc make the pods' cgroups.
func cgroupHierarchies() []string {
	var out []string
	data, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if _, post, ok := strings.Cut(line, " - "); ok {
			f := strings.Fields(post)
			pre := strings.Fields(line)
			if len(f) > 0 && (f[0] == "cgroup" || f[0] == "cgroup2") && len(pre) > 4 {
				out = append(out, pre[4])
			}
		}
	}
	return out
}
