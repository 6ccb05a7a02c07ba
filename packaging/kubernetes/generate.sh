#!/bin/sh
# Renders what packaging/ ships from the Helm chart, so the plain manifests
# and the chart cannot drift:
#   packaging/kubernetes/generate.sh OUTROOT
# writes OUTROOT/packaging/kubernetes/daemonset.yaml (this directory's
# daemonset.head.yaml, then the chart with its defaults),
# OUTROOT/packaging/prometheus/servicemonitor.yaml and prometheusrule.yaml.
# `make manifests` runs it with OUTROOT=. after copying the rules, the
# dashboard and the NPD plugin config into the chart's files/. HELM names
# the helm program (default: helm).
set -eu
[ $# -eq 1 ] || { echo "usage: $0 OUTROOT" >&2; exit 2; }
out=$1
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
chart=$top/packaging/helm/mountwatchd
helm=${HELM:-helm}
# The release and namespace of the plain manifest; Kubernetes 1.30 is the
# chart's oldest (securityContext.appArmorProfile).
render() {
  "$helm" template mountwatchd "$chart" --namespace mountwatchd --kube-version 1.30.0 "$@"
}
mkdir -p "$out/packaging/kubernetes" "$out/packaging/prometheus"
{
  cat "$here/daemonset.head.yaml"
  render
} >"$out/packaging/kubernetes/daemonset.yaml.tmp"
mv "$out/packaging/kubernetes/daemonset.yaml.tmp" "$out/packaging/kubernetes/daemonset.yaml"
render --set prometheus.monitor.enabled=true --show-only templates/servicemonitor.yaml \
  >"$out/packaging/prometheus/servicemonitor.yaml"
render --set prometheusRule.enabled=true --show-only templates/prometheusrule.yaml \
  >"$out/packaging/prometheus/prometheusrule.yaml"
