#!/usr/bin/env bash
# Rebuilds the captured mount tables in this directory from real mounts.
# Run as root: bash capture.sh   (needs bindfs; everything happens in a
# private mount namespace and is gone when the script ends).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ "${IN_NS:-}" != 1 ]; then
  exec env IN_NS=1 unshare -m --propagation private bash "$0" "$@"
fi
w=$(mktemp -d /tmp/mwcapture.XXXXXX)
mount -t tmpfs none "$w"
k=$w/var/lib/kubelet
uid=0d5f7a8e-4b1c-4e7e-9a63-3c2a1f0e9b11
mkdir -p "$w/src/volumes/csi/vol2" "$w/src/volumes/csi/vol3" "$w/fuse" \
  "$k/plugins/kubernetes.io/csi/cephfs.csi.ceph.com/3f2a/globalmount" \
  "$k/pods/$uid/volumes/kubernetes.io~csi/pvc-1/mount" \
  "$k/pods/$uid/volumes/kubernetes.io~csi/pvc-2/mount" \
  "$k/pods/$uid/volume-subpaths/pvc-2/app/0" \
  "$w/t/d" "$w/b" "$w/dir with space" "$w/tab	name" "$w/back\\slash" "$w/new
line"

# A ceph-fuse-like FUSE mount, its staging mount and pod bind mounts (F1).
bindfs -o subtype=ceph-fuse "$w/src" "$w/fuse"
trap 'pkill -f "bindfs -o subtype=ceph-fuse $w/src" || true' EXIT
mount --bind "$w/fuse" "$k/plugins/kubernetes.io/csi/cephfs.csi.ceph.com/3f2a/globalmount"
mount --bind "$w/fuse/volumes/csi/vol2" "$k/pods/$uid/volumes/kubernetes.io~csi/pvc-1/mount"
mount --bind "$w/fuse/volumes/csi/vol3" "$k/pods/$uid/volumes/kubernetes.io~csi/pvc-2/mount"
mount --bind "$w/fuse/volumes/csi/vol3" "$k/pods/$uid/volume-subpaths/pvc-2/app/0"
rm -rf "$w/fuse/volumes/csi/vol2"

# A tmpfs bind mount whose source directory is deleted.
mount -t tmpfs tmpfs-t "$w/t"
mkdir "$w/t/d2"
mount --bind "$w/t/d2" "$w/b"
rmdir "$w/t/d2"

# Escapes: space, tab, newline and backslash in mount points.
mount -t tmpfs "src with space" "$w/dir with space"
mount -t tmpfs none "$w/tab	name"
mount -t tmpfs none "$w/back\\slash"
mount -t tmpfs none "$w/new
line"

# Shared propagation gives optional fields.
mkdir -p "$w/shared"; mount -t tmpfs none "$w/shared"; mount --make-shared "$w/shared"

sed "s#$w#/w#g" /proc/self/mountinfo > "$here/capture-bindfs-deleted.mountinfo"
echo "wrote $here/capture-bindfs-deleted.mountinfo"
