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

// connIndex answers connOf and reachableOn for one run of a check, each
// once per connection: every mount of a broken connection gets a finding
// that names what depends on the connection, and counting that anew per
// mount made a dead connection with k pod volumes cost k² (issue 11).
type connIndex struct {
	s         *mounts.Snapshot
	conns     map[string]connInfo
	reachable map[string]int
}

func newConnIndex(s *mounts.Snapshot) *connIndex {
	return &connIndex{s: s, conns: map[string]connInfo{}, reachable: map[string]int{}}
}

// of is connOf(m), counted once per connection.
func (x *connIndex) of(m *mounts.Mount) connInfo {
	ci, ok := x.conns[m.Dev()]
	if !ok {
		ci = connOf(x.s, m)
		x.conns[m.Dev()] = ci
	}
	return ci
}

// reachableOn is how many mounts of connection dev are reachable by their
// mount point (Snapshot.Reachable), counted once per connection.
func (x *connIndex) reachableOn(dev string) int {
	n, ok := x.reachable[dev]
	if !ok {
		for _, mm := range x.s.ByDev(dev) {
			if x.s.Reachable(mm) {
				n++
			}
		}
		x.reachable[dev] = n
	}
	return n
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

func connDetails(conns *connIndex, m *mounts.Mount) map[string]string {
	ci := conns.of(m)
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
