// Package kube runs a real one-node Kubernetes for the end-to-end suite
// (internal/e2e): etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, containerd with its CRI plugin and runc, and a kubelet,
// built from the Go module proxy at a pinned version (build/build.sh) and
// started with every file, mount and address of their own. The test binary
// runs in private mount and network namespaces (MainNet), so the node's
// address lives on an interface of the test's own and nothing it serves is
// seen outside; what namespaces do not isolate (cgroups, sysctls, shims
// re-parented to PID 1, directories made on the host) is undone by PID and by
// path when the test ends, pass or fail.
//
// It also runs the suite's own CSI node plugin (build/cmd/e2e-csi), whose
// volumes are FUSE mounts staged at kubelet's staging path, so that pods,
// volumes, vol_data.json, cgroups and logs are the real kubelet's.
//
// It is for tests only: it trusts its caller and changes the machine.
package kube
