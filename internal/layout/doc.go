// Package layout finds where kubelet and containerd keep their state on the
// inspected node when no flag says so: kubelet's root (pod volumes, CSI
// staging) and containerd's root and overlayfs snapshots directory.
//
// The mount table is the evidence that always exists, live or captured:
// kubelet's mounts sit at <root>/pods/<uid>/volumes/..., <root>/pods/<uid>/
// volume-subpaths/... and <root>/plugins/kubernetes.io/csi/.../globalmount,
// and containerd's overlay layers at <snapshots>/<n>/fs. On a live node the
// running kubelet's --root-dir and containerd's --root (or the root key of
// its config file) are believed first. A flag always wins; two candidates
// in the table and no process to decide, or none at all, keep the default,
// and Dir.Evidence says so. Unless a flag gave kubelet's root, every root
// the table shows kubelet mounts under is used besides the one decided
// (Layout.KubeletRoots): a pod volume's path says which root it is under.
//
// What the processes said is remembered by a ProcessCache that one run owns
// (the daemon, or one --once, hands it on in mounts.Host.Processes); the
// package keeps no state of its own.
//
// Kubelet's root directory is a command-line flag only (files such as
// /etc/default/kubelet reach kubelet through its command line, which is what
// is read); of kubelet's KubeletConfiguration file (its --config) only
// podLogsDir is read, and of containerd's config.toml only its top-level
// root. It is not a parser of either file.
package layout
