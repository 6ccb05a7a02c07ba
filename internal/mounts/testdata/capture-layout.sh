#!/usr/bin/env bash
# shellcheck disable=SC2016 # the node shapes are scripts run in the namespace: single quotes
# Rebuilds the kubelet/containerd layout tables from real mounts on this
# kernel: each node shape is made under a tmpfs in a private mount namespace
# of its own, its /proc/self/mountinfo written with the tmpfs prefix cut off
# (so mount points read as on the node): the tmpfs is the node's / and the
# machine's own root line is left out.
#   layout-f1-data-kubernetes.mountinfo  the F1 seed: kubelet at
#     /data/kubernetes/kubelet, ceph-fuse (bindfs with subtype ceph-fuse)
#     staged and its volume directory published to pod 92f2591b-… volume
#     dashboard-folder, then deleted on the server
#   layout-nvme.mountinfo  kubelet at /data/nvme0n1/kubelet, containerd at
#     /data/nvme0n1/containerd with a task's overlay rootfs
#   layout-k3s.mountinfo  k3s: containerd under
#     /var/lib/rancher/k3s/agent/containerd, tasks under /run/k3s/containerd
#   layout-two-roots.mountinfo  pod volumes under two kubelet roots
#   layout-two-kubelets.mountinfo  the F1 seed under /data/kubernetes/kubelet
#     (staging and pod volume, 2 mounts) and a second kubelet's pod volume
#     under /var/lib/k0s/kubelet (a local volume whose directory on the
#     node's disk was deleted, 1 mount); nothing at /var/lib/kubelet
# Run as root: bash capture-layout.sh [NAME...] (needs bindfs); with names,
# only those tables are written.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
only=("$@")

# capture NAME SCRIPT: run SCRIPT (with $w the node's /) in a private mount
# namespace and write NAME.mountinfo.
capture() {
  local name=$1 body=$2 W
  if [ "${#only[@]}" -gt 0 ] && [[ " ${only[*]} " != *" $name "* ]]; then return; fi
  W=$(mktemp -d /tmp/mwlayout.XXXXXX)
  W=$W NAME=$name HERE=$here BODY=$body \
    unshare -m --propagation private bash -euo pipefail -c '
w=$W
mount -t tmpfs node "$w"
eval "$BODY"
awk -v w="$w" '"'"'$5 == "/" { next } $5 == w { $5 = "/" } { print }'"'"' /proc/self/mountinfo | sed "s#$w/#/#g" > "$HERE/$NAME.mountinfo"
cleanup'
  rmdir "$W" 2>/dev/null || true
  echo "wrote $here/$name.mountinfo"
}

capture layout-f1-data-kubernetes '
k=$w/data/kubernetes/kubelet
uid=92f2591b-66b5-4843-b7a7-42d0acd2be07
stage=$k/plugins/kubernetes.io/csi/cephfs.csi.ceph.com/0f3a9c1b2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8/globalmount
vol=$k/pods/$uid/volumes/kubernetes.io~csi/dashboard-folder/mount
mkdir -p "$w/srv/cephfs/volumes/csi/csi-vol-7d1e" "$w/fuse" "$stage" "$vol"
bindfs -f -o subtype=ceph-fuse "$w/srv/cephfs" "$w/fuse" & fusepid=$!
cleanup() { kill "$fusepid"; wait "$fusepid" || true; }
for _ in $(seq 100); do mountpoint -q "$w/fuse" && break; sleep 0.05; done
mount --bind "$w/fuse" "$stage"
mount --bind "$w/fuse/volumes/csi/csi-vol-7d1e" "$vol"
rm -rf "$w/fuse/volumes/csi/csi-vol-7d1e"
mkdir -p "$k/pods/$uid/volumes/kubernetes.io~projected/kube-api-access-9xq2d"
mount -t tmpfs tmpfs "$k/pods/$uid/volumes/kubernetes.io~projected/kube-api-access-9xq2d"
'

capture layout-nvme '
k=$w/data/nvme0n1/kubelet
c=$w/data/nvme0n1/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots
uid=3b0c2e1d-5f4a-4b6c-8d7e-9f0a1b2c3d4e
cleanup() { :; }
for i in 101 102 103; do mkdir -p "$c/$i/fs" "$c/$i/work"; done
task=$w/run/containerd/io.containerd.runtime.v2.task/k8s.io/8e2f4a6c0b1d3e5f7a9b
mkdir -p "$task/rootfs" "$k/pods/$uid/volumes/kubernetes.io~empty-dir/cache" \
  "$k/pods/$uid/volumes/kubernetes.io~projected/kube-api-access-4k8mz" \
  "$k/pods/$uid/volumes/kubernetes.io~csi/pvc-0a1b2c3d/mount" \
  "$k/plugins/kubernetes.io/csi/ebs.csi.aws.com/5c1f0d9e8b7a69584736251403f2e1d0c9b8a7f6e5d4c3b2a1908f7e6d5c4b3a/globalmount" \
  "$w/disk"
mount -t tmpfs tmpfs "$k/pods/$uid/volumes/kubernetes.io~projected/kube-api-access-4k8mz"
mount -t tmpfs disk "$w/disk"
mount --bind "$w/disk" "$k/plugins/kubernetes.io/csi/ebs.csi.aws.com/5c1f0d9e8b7a69584736251403f2e1d0c9b8a7f6e5d4c3b2a1908f7e6d5c4b3a/globalmount"
mount --bind "$w/disk" "$k/pods/$uid/volumes/kubernetes.io~csi/pvc-0a1b2c3d/mount"
mount -t overlay overlay -o "lowerdir=$c/102/fs:$c/101/fs,upperdir=$c/103/fs,workdir=$c/103/work" "$task/rootfs"
'

capture layout-k3s '
k=$w/var/lib/kubelet
c=$w/var/lib/rancher/k3s/agent/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots
uid=6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d
cleanup() { :; }
for i in 7 8 9; do mkdir -p "$c/$i/fs" "$c/$i/work"; done
task=$w/run/k3s/containerd/io.containerd.runtime.v2.task/k8s.io/c0ffee1234
mkdir -p "$task/rootfs" "$k/pods/$uid/volumes/kubernetes.io~projected/kube-api-access-7bq5t" \
  "$w/var/lib/rancher/k3s/storage/pvc-11" "$k/pods/$uid/volumes/kubernetes.io~local-volume/pvc-11"
mount -t tmpfs tmpfs "$k/pods/$uid/volumes/kubernetes.io~projected/kube-api-access-7bq5t"
mount --bind "$w/var/lib/rancher/k3s/storage/pvc-11" "$k/pods/$uid/volumes/kubernetes.io~local-volume/pvc-11"
mount -t overlay overlay -o "lowerdir=$c/8/fs:$c/7/fs,upperdir=$c/9/fs,workdir=$c/9/work" "$task/rootfs"
'

capture layout-two-roots '
cleanup() { :; }
for k in "$w/var/lib/kubelet" "$w/data/kubelet"; do
  d=$k/pods/1e2d3c4b-5a69-4788-9a0b-c1d2e3f4a5b6/volumes/kubernetes.io~projected/kube-api-access-q1w2e
  mkdir -p "$d"; mount -t tmpfs tmpfs "$d"
done
'

capture layout-two-kubelets '
k=$w/data/kubernetes/kubelet
uid=92f2591b-66b5-4843-b7a7-42d0acd2be07
stage=$k/plugins/kubernetes.io/csi/cephfs.csi.ceph.com/0f3a9c1b2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8/globalmount
vol=$k/pods/$uid/volumes/kubernetes.io~csi/dashboard-folder/mount
mkdir -p "$w/srv/cephfs/volumes/csi/csi-vol-7d1e" "$w/fuse" "$stage" "$vol"
bindfs -f -o subtype=ceph-fuse "$w/srv/cephfs" "$w/fuse" & fusepid=$!
cleanup() { kill "$fusepid"; wait "$fusepid" || true; }
for _ in $(seq 100); do mountpoint -q "$w/fuse" && break; sleep 0.05; done
mount --bind "$w/fuse" "$stage"
mount --bind "$w/fuse/volumes/csi/csi-vol-7d1e" "$vol"
rm -rf "$w/fuse/volumes/csi/csi-vol-7d1e"
k0=$w/var/lib/k0s/kubelet
local=$k0/pods/4c3b2a19-0f8e-4d7c-b6a5-948372615aab/volumes/kubernetes.io~local-volume/pvc-logs
mkdir -p "$w/disk/pvc-logs" "$local"
mount --bind "$w/disk/pvc-logs" "$local"
rmdir "$w/disk/pvc-logs"
'
