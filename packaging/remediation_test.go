package packaging

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// The chart keeps remediation off and grants nothing for it; its value
// turns it on (or dry-run) with the flags, its record of decisions in the
// probe state directory the chart always gives the pod, and nothing more.
func TestHelmRemediation(t *testing.T) {
	has := func(args []string, prefix string) bool {
		return slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, prefix) })
	}
	off := decodeObjects(t, template(t, "mountwatchd")).daemonSet(t, "mountwatchd")
	c := off.Spec.Template.Spec.Containers[0]
	if has(c.Args, "--remediation") {
		t.Errorf("defaults: args %v; want remediation off", c.Args)
	}
	for _, mode := range []string{"dry-run", "on"} {
		ds := decodeObjects(t, template(t, "mountwatchd", "remediation.mode="+mode, "remediation.maxPerHour=1")).daemonSet(t, "mountwatchd")
		c := ds.Spec.Template.Spec.Containers[0]
		for _, a := range []string{"--remediation.mode=" + mode, "--remediation.max-per-hour=1"} {
			if !slices.Contains(c.Args, a) {
				t.Errorf("%s: args %v lack %s", mode, c.Args, a)
			}
		}
		vols := ds.Spec.Template.Spec.Volumes
		if len(vols) != 1 || vols[0].HostPath == nil || vols[0].HostPath.Path != "/run/mountwatchd" ||
			vols[0].HostPath.Type == nil || *vols[0].HostPath.Type != corev1.HostPathDirectoryOrCreate {
			t.Errorf("%s: volumes %+v, want the node's /run/mountwatchd", mode, vols)
		}
		if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/run/mountwatchd" || c.VolumeMounts[0].ReadOnly {
			t.Errorf("%s: mounts %+v, want /run/mountwatchd writable", mode, c.VolumeMounts)
		}
		if has(c.Args, "--probe.state-dir") {
			t.Errorf("%s: args %v; want the default state directory, /run/mountwatchd as root", mode, c.Args)
		}
		if caps := c.SecurityContext.Capabilities.Add; len(caps) != 3 {
			t.Errorf("%s: capabilities %v, want the same three (the abort file is root's)", mode, caps)
		}
	}
}
