package check

import (
	"strconv"
	"strings"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

// What the probing checks (stale_mount, hung_mount) say about a connection:
// every mount of it, the pod volumes and CSI staging mounts that depend on it.

// connInfo counts what depends on m's connection.
type connInfo struct {
	mounts, podVolumes int
	staging            []string
}

func connOf(s *mounts.Snapshot, m *mounts.Mount) connInfo {
	var ci connInfo
	for _, mm := range s.ByDev(m.Dev()) {
		ci.mounts++
		if mm.Kube != nil {
			switch mm.Kube.Kind {
			case mounts.PodVolume, mounts.SubPath:
				ci.podVolumes++
			case mounts.CSIStaging:
				ci.staging = append(ci.staging, mm.Mountpoint)
			}
		}
	}
	return ci
}

func connDetails(s *mounts.Snapshot, m *mounts.Mount) map[string]string {
	ci := connOf(s, m)
	d := map[string]string{
		"connection":           m.Dev(),
		"mounts_on_connection": strconv.Itoa(ci.mounts),
		"pod_volumes":          strconv.Itoa(ci.podVolumes),
	}
	if len(ci.staging) > 0 {
		d["staging"] = strings.Join(ci.staging, " ")
	}
	return d
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}
