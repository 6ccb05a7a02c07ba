#!/usr/bin/env bash
# Rebuilds capture-overlay.mountinfo from real overlay mounts on this kernel:
# the F5 propagation chain, containerd's relative lowerdirs (mounted from a
# process whose working directory is the snapshotter root, as containerd's
# mount helper does), userxattr, escapes in layer paths, data-only layers,
# and lowerdir+/datadir+ through the new mount API (needs the Go toolchain).
# Run as root: bash capture-overlay.sh. Everything happens in a private mount
# namespace and is gone when the script ends.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ "${IN_NS:-}" != 1 ]; then
  exec env IN_NS=1 unshare -m --propagation private bash "$0" "$@"
fi
w=$(mktemp -d /tmp/mwovl.XXXXXX)
mount -t tmpfs none "$w"
snap=$w/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots
task=$w/run/containerd/io.containerd.runtime.v2.task/k8s.io
for i in 1 2 3 4; do mkdir -p "$snap/$i/fs" "$snap/$i/work"; done
mkdir -p "$snap/1/fs/func" && touch "$snap/1/fs/func/min"
mkdir -p "$task/abc123/rootfs" "$task/def456/rootfs" "$w/m/userx" "$w/m/esc" "$w/m/data" "$w/m/newapi" \
  "$w/l/sp ace" "$w/l/co:lon" "$w/l/com,ma" "$w/l/back\\sl" "$w/l/data1" "$w/l/up" "$w/l/wk"

# The propagation shape: 2/fs made opaque through an overlay, 3/fs carrying
# the marker as the copy-up bug left it.
mount -t overlay overlay -o "lowerdir=$snap/1/fs,upperdir=$snap/2/fs,workdir=$snap/2/work" "$w/m/data"
rm -rf "$w/m/data/func"; mkdir "$w/m/data/func"; touch "$w/m/data/func/max"
umount "$w/m/data"
mkdir "$snap/3/fs/func"; setfattr -n trusted.overlay.opaque -v y "$snap/3/fs/func"

# A containerd task rootfs with absolute lowerdirs, and one with relative
# lowerdirs mounted from the snapshotter root.
mount -t overlay overlay -o "lowerdir=$snap/3/fs:$snap/2/fs:$snap/1/fs,upperdir=$snap/4/fs,workdir=$snap/4/work" "$task/abc123/rootfs"
(cd "$snap" && mount -t overlay overlay -o "lowerdir=3/fs:2/fs:1/fs" "$task/def456/rootfs")
# userxattr.
mount -t overlay overlay -o "userxattr,lowerdir=$snap/2/fs:$snap/1/fs" "$w/m/userx"
# Escapes: space (octal), colon and comma (overlay's backslash), backslash.
mount -t overlay overlay -o "lowerdir=$w/l/sp ace:$w/l/co\\:lon:$w/l/com\\,ma:$w/l/back\\\\sl,upperdir=$w/l/up,workdir=$w/l/wk" "$w/m/esc"
# A data-only layer after "::".
mount -t overlay overlay -o "lowerdir=$w/l/sp ace::$w/l/data1" "$w/m/data"
# lowerdir+ and datadir+ through fsopen/fsconfig.
tool=$(mktemp -d)
cat > "$tool/main.go" <<'GO'
package main

import (
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

func main() {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		panic(err)
	}
	for _, kv := range os.Args[2:] {
		k, v, _ := strings.Cut(kv, "=")
		if err := unix.FsconfigSetString(fd, k, v); err != nil {
			panic(k + ": " + err.Error())
		}
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		panic(err)
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		panic(err)
	}
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, os.Args[1], unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		panic(err)
	}
}
GO
(cd "$here/../../.." && go build -o "$tool/fsmount" "$tool/main.go")
"$tool/fsmount" "$w/m/newapi" "lowerdir+=$w/l/co:lon" "lowerdir+=$w/l/com,ma" "lowerdir+=$w/l/back\\sl" \
  "datadir+=$w/l/data1" "upperdir=$w/l/up" "workdir=$w/l/wk"
rm -rf "$tool"

grep -E ' - overlay ' /proc/self/mountinfo | sed "s#$w#/w#g" > "$here/capture-overlay.mountinfo"
echo "wrote $here/capture-overlay.mountinfo"
