//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/testenv"
	"github.com/mountwatchd/mountwatchd/internal/testenv/kube"
)

// volume is a PersistentVolume of the suite's CSI driver, bound to a claim
// of the same name, as ceph-csi users have them: its staging mount is a FUSE
// server the plugin starts at kubelet's staging path (attrs say which).
type volume struct {
	name    string
	backing string // the server's backing directory, where it has one
}

// newVolume makes the PersistentVolume and its claim, pre-bound (the
// controller-manager's binder completes the binding).
func newVolume(t *testing.T, c *kube.Cluster, name string, attrs map[string]string) volume {
	t.Helper()
	v := volume{name: name}
	if attrs == nil {
		v.backing = filepath.Join(c.Dir, "backing", name)
		if err := os.MkdirAll(v.backing, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(v.backing, "home.json"), []byte("{}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		attrs = map[string]string{"server": "fake-ceph-fuse", "backing": v.backing}
	}
	var a strings.Builder
	for k, val := range attrs {
		fmt.Fprintf(&a, "      %s: %q\n", k, val)
	}
	c.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: PersistentVolume
metadata: {name: %[1]s}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteMany]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  claimRef: {namespace: %[2]s, name: %[1]s}
  csi:
    driver: %[3]s
    volumeHandle: %[1]s
    volumeAttributes:
%[4]s---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  accessModes: [ReadWriteMany]
  storageClassName: ""
  volumeName: %[1]s
  resources: {requests: {storage: 1Gi}}
`, name, kube.Namespace, c.CSIDriver, a.String()))
	return v
}

// serverPID is the PID of the volume's FUSE server (the CSI plugin's
// record).
func (v volume) serverPID(t *testing.T, c *kube.Cluster) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(c.CSIState, v.name+".pid"))
	if err != nil {
		t.Fatalf("volume %s has no FUSE server: %v", v.name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func (v volume) signal(t *testing.T, c *kube.Cluster, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(v.serverPID(t, c), sig); err != nil {
		t.Fatalf("signal %v to volume %s's server: %v", sig, v.name, err)
	}
}

// podSpec is a pod of the busybox image whose container mounts claim at
// /data (subPath: a subdirectory of it), reads it every second, and ends
// on SIGTERM (kubelet then restarts it). Its ServiceAccount token is
// projected, as on every real pod.
func podSpec(name, claim, subPath string) string {
	sub := ""
	if subPath != "" {
		sub = "\n          subPath: " + subPath
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  terminationGracePeriodSeconds: 5
  containers:
    - name: app
      image: %[3]s
      command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do ls /data >/dev/null; sleep 1 & wait; done"]
      volumeMounts:
        - name: data
          mountPath: /data%[5]s
  volumes:
    - name: data
      persistentVolumeClaim: {claimName: %[4]s}
`, name, kube.Namespace, kube.BusyboxImage, claim, sub)
}

// runPod creates a pod and waits until it runs.
func runPod(t *testing.T, c *kube.Cluster, name, claim, subPath string) string {
	t.Helper()
	c.Apply(t, podSpec(name, claim, subPath))
	waitPodRunning(t, c, name)
	return c.Kubectl(t, "-n", kube.Namespace, "get", "pod", name, "-o", "jsonpath={.metadata.uid}")
}

func waitPodRunning(t *testing.T, c *kube.Cluster, name string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		phase, _ := c.KubectlErr("-n", kube.Namespace, "get", "pod", name, "-o", "jsonpath={.status.phase}")
		if phase == "Running" {
			return
		}
		if time.Now().After(deadline) {
			desc, _ := c.KubectlErr("-n", kube.Namespace, "describe", "pod", name)
			t.Fatalf("pod %s not Running within 2m:\n%s\n--- kubelet:\n%s", name, desc, tail(c.KubeletLog(), 40))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// events are the messages of the events on a pod, oldest first.
func events(c *kube.Cluster, pod string) string {
	out, _ := c.KubectlErr("-n", kube.Namespace, "get", "events", "--field-selector", "involvedObject.name="+pod,
		"--sort-by=.lastTimestamp", "-o", `jsonpath={range .items[*]}{.type} {.reason}: {.message}{"\n"}{end}`)
	return out
}

// waitEvent waits until an event on pod has a reason and message containing
// want, and returns it.
func waitEvent(t *testing.T, c *kube.Cluster, pod, want string) string {
	t.Helper()
	var ev string
	testenv.WaitUntil(t, 2*time.Minute, fmt.Sprintf("an event on pod %s saying %q", pod, want), func() bool {
		ev = events(c, pod)
		return strings.Contains(ev, want)
	})
	for _, line := range strings.Split(ev, "\n") {
		if strings.Contains(line, want) {
			return line
		}
	}
	return ev
}

// containerStatus is the pod's first container's status (waiting reason
// and message, restarts).
func containerStatus(c *kube.Cluster, pod string) string {
	out, _ := c.KubectlErr("-n", kube.Namespace, "get", "pod", pod, "-o",
		`jsonpath={.status.containerStatuses[0].state}{" restarts="}{.status.containerStatuses[0].restartCount}`)
	return out
}

// restartContainer ends the pod's container with SIGTERM through
// containerd, as an OOM kill or a crash would end it; kubelet restarts it.
func restartContainer(t *testing.T, c *kube.Cluster, pod string) {
	t.Helper()
	id := c.Kubectl(t, "-n", kube.Namespace, "get", "pod", pod, "-o", "jsonpath={.status.containerStatuses[0].containerID}")
	id = strings.TrimPrefix(id, "containerd://")
	if out, err := c.Ctr("tasks", "kill", "-s", "SIGTERM", id); err != nil {
		t.Fatalf("kill container %s of pod %s: %v\n%s", id, pod, err, out)
	}
}

// podVolumeDir is the pod's CSI volume directory as kubelet made it.
func podVolumeDir(c *kube.Cluster, uid, pv string) string {
	return filepath.Join(c.RootDir, "pods", uid, "volumes", "kubernetes.io~csi", pv, "mount")
}
