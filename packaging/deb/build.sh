#!/bin/sh
# Builds the Debian package of mountwatchd with dpkg-deb alone (no debhelper):
#   packaging/deb/build.sh BINARY VERSION GOARCH OUTDIR
# BINARY should be built with CGO_ENABLED=0 (static: the package depends on
# nothing); `make deb` does that. Prints the path of the .deb it wrote.
set -eu

[ $# -eq 4 ] || { echo "usage: $0 BINARY VERSION GOARCH OUTDIR" >&2; exit 2; }
bin=$1 version=$2 goarch=$3 out=$4
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)

# A Debian version must start with a digit; git describe gives v1.2.3,
# v1.2.3-4-gabcdef0, abcdef0 or ...-dirty. A '-' would start a Debian
# revision, and this is a native package: make it '+'.
v=${version#v}
case $v in
  [0-9]*) ;;
  *) v=0~git$v ;;
esac
v=$(printf '%s' "$v" | tr -- '-_' '++' | tr -cd 'A-Za-z0-9.+~')

case $goarch in
  amd64|arm64|ppc64le|s390x|riscv64|mips64le) arch=$goarch ;;
  386) arch=i386 ;;
  arm) arch=armhf ;;
  *) echo "$0: no Debian architecture for GOARCH $goarch" >&2; exit 2 ;;
esac

if file_out=$(LC_ALL=C readelf -l "$bin" 2>/dev/null) && printf '%s' "$file_out" | grep -q 'Requesting program interpreter'; then
  echo "$0: $bin is dynamically linked; build it with CGO_ENABLED=0" >&2
  exit 1
fi

stage=$(mktemp -d)
chmod 0755 "$stage"
trap 'rm -rf "$stage"' EXIT
umask 022
install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" \
  "$stage/usr/share/doc/mountwatchd" "$stage/etc/default"
install -m 0755 "$bin" "$stage/usr/bin/mountwatchd"
# mountwatchd-kube is built beside the binary (make deb); the daemon starts
# it only with a --kube.* switch. Not a command of its own: in the
# package's directory for helper programs, where the daemon looks.
install -d "$stage/usr/lib/mountwatchd"
install -m 0755 "$(dirname "$bin")/mountwatchd-kube" "$stage/usr/lib/mountwatchd/mountwatchd-kube"
install -m 0644 "$top/systemd/mountwatchd.service" "$stage/lib/systemd/system/mountwatchd.service"
install -m 0644 "$here/mountwatchd.default" "$stage/etc/default/mountwatchd"
install -m 0644 "$here/copyright" "$stage/usr/share/doc/mountwatchd/copyright"
install -d "$stage/usr/share/lintian/overrides"
install -m 0644 "$here/lintian-overrides" "$stage/usr/share/lintian/overrides/mountwatchd"
gzip -9n <"$top/README.md" >"$stage/usr/share/doc/mountwatchd/README.md.gz"
gzip -9n <"$top/systemd/README.md" >"$stage/usr/share/doc/mountwatchd/README.systemd.md.gz"
chmod 0644 "$stage/usr/share/doc/mountwatchd/"*.gz
# Native package: the changelog is one entry for the version built, dated
# from the last commit (reproducible) or now.
date=$(git -C "$top" log -1 --format=%aD 2>/dev/null || date -R)
{
  printf 'mountwatchd (%s) unstable; urgency=medium\n\n' "$v"
  printf '  * Built from %s.\n\n' "$version"
  printf ' -- mountwatchd maintainers <mountwatchd@users.noreply.github.com>  %s\n' "$date"
} | gzip -9n >"$stage/usr/share/doc/mountwatchd/changelog.gz"
chmod 0644 "$stage/usr/share/doc/mountwatchd/changelog.gz"

# The manual page comes from the flags themselves (kingpin's --help-man),
# with a proper title and NAME line; a cross-built binary cannot run here,
# so that package has none.
if "$bin" --help-man >"$stage/man.raw" 2>/dev/null; then
  install -d "$stage/usr/share/man/man8"
  {
    printf '.TH MOUNTWATCHD 8 "%s" "mountwatchd %s" "System Administration"\n' \
      "$(LC_ALL=C date -d "$date" +%Y-%m-%d 2>/dev/null || date +%Y-%m-%d)" "$v"
    sed -n '/^\.SH "NAME"/,$p' "$stage/man.raw" |
      sed '2s/.*/mountwatchd \\- find mounts that look fine and are not/'
  } | gzip -9n >"$stage/usr/share/man/man8/mountwatchd.8.gz"
  chmod 0644 "$stage/usr/share/man/man8/mountwatchd.8.gz"
fi
rm -f "$stage/man.raw"

for s in postinst prerm postrm; do
  install -m 0755 "$here/$s" "$stage/DEBIAN/$s"
done
printf '/etc/default/mountwatchd\n' >"$stage/DEBIAN/conffiles"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
  xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$stage/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<CONTROL
Package: mountwatchd
Version: $v
Architecture: $arch
Maintainer: mountwatchd maintainers <mountwatchd@users.noreply.github.com>
Installed-Size: $size
Section: admin
Priority: optional
Homepage: https://github.com/mountwatchd/mountwatchd
Description: node mount health daemon for Linux and Kubernetes nodes
 mountwatchd finds mounts that look fine and are not: bind mounts of deleted
 directories, dead and hung FUSE servers (ceph-fuse, s3fs, gcsfuse, sshfs),
 stale NFS, mounts hidden under other mounts, and overlay xattrs that hide
 image layers. It names the mount, the pod and the volume, and reports
 through Prometheus metrics, the systemd journal and a one-shot check
 (mountwatchd --once) usable as a node-problem-detector plugin.
 .
 It only reads. The service runs hardened, with three capabilities.
CONTROL

mkdir -p "$out"
deb="$out/mountwatchd_${v}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
