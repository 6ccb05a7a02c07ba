#!/usr/bin/env bash
# Builds the pinned Kubernetes binaries the end-to-end suite runs into
# OUTDIR (default: $XDG_CACHE_HOME/mountwatchd-e2e/kube-<version>), from the
# Go module proxy only. Skips the build when OUTDIR already holds all of them
# for this go.mod (a stamp with its hash); Go's build cache makes a rebuild
# after a change quick too. Cold: ~6 min and ~3 GB of build cache on 2 cores.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version=v1.34.4
out="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/mountwatchd-e2e/kube-$version}"
cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
stamp="$(cat "$here/go.mod" "$here/go.sum" "$0" "$here"/cmd/*/*.go | sha256sum | cut -c1-16)"
if [ "$(cat "$out/.stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "kube: $out is current ($version)"
  exit 0
fi
mkdir -p "$out"
# The version checks between kubelet, the API server and kubectl read these.
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=34 \
  -X $pkg.gitTreeState=clean -X $pkg.buildDate=2026-01-01T00:00:00Z"
ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=$version -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=34"
cd "$here"
# One go build for all of them: the packages they share are compiled once
# and the links run in parallel. Into a temporary directory first, so a
# build cut short leaves no binary that looks current.
tmp="$out/.tmp"
rm -rf "$tmp" && mkdir -p "$tmp"
echo "kube: building ${cmds[*]} $version and the suite's CSI plugin into $out"
pkgs=()
for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp/" "${pkgs[@]}" ./cmd/e2e-csi
mv "$tmp"/* "$out/" && rmdir "$tmp"
echo "$stamp" > "$out/.stamp"
echo "kube: built ${cmds[*]} e2e-csi in $out"
