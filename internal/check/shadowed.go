package check

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/probe"
	"golang.org/x/sys/unix"
)

// ShadowedMountCheck finds mounts hidden under a later mount at the same
// mount point. Looking at the mount point shows the new mount, healthy,
// while bind mounts elsewhere (pod volumes) still use the hidden one.
//
// Not reported: a hidden pseudo filesystem or autofs trigger (see
// mounts.Mount.Pseudo); a hidden tmpfs with no other mount of it (runtimes
// stack /dev/shm); and a mount covered by the same directory of the same
// filesystem (mount --bind /x /x twice), which hides nothing.
//
// It is a function of the table; on a live system it also says whether the
// hidden mount's connection is dead from the latest probe results
// (UsesProbes: the run's round, or the probe lane's latest), without
// probing.
type ShadowedMountCheck struct{}

// ShadowedMount is the ID of ShadowedMountCheck.
const ShadowedMount finding.ID = "shadowed_mount"

var shadowedMountDecl = Decl{
	ID: ShadowedMount, Kind: finding.TableCheck, Needs: UsesProbes, Order: 40,
	MessageID:  "b54f1f2dd8154b68baf59c4299f22c7d",
	Severities: []finding.Severity{finding.Critical, finding.Warning},
	New:        func(*Config) Check { return ShadowedMountCheck{} },
}

func init() { Register(shadowedMountDecl) }

// Decl implements Check.
func (ShadowedMountCheck) Decl() Decl { return shadowedMountDecl }

// Run implements Check.
func (ShadowedMountCheck) Run(_ context.Context, env *Env) Outcome {
	s, latest := env.Snapshot, env.Probes
	var out []finding.Finding
	conns := newConnIndex(s)
	for _, m := range s.Mounts {
		top := s.CoveredBy(m)
		if top == nil || m.Pseudo() || (top.Dev() == m.Dev() && top.Root == m.Root) {
			continue
		}
		// m is covered, so not reachable itself: every reachable mount
		// of its connection is another one.
		others := conns.reachableOn(m.Dev())
		if m.FSType == "tmpfs" && others == 0 {
			continue
		}
		stale := ""
		if latest != nil {
			if res, ok := latest.Results[m.ID]; ok && res.State == probe.Failed && isStale(m, res.Errno) {
				stale = unix.ErrnoName(res.Errno)
			} else if ok && res.State == probe.Hung {
				stale = "hung"
			}
		}
		sev := finding.Warning
		if (m.FUSE || m.Network) && (others > 0 || stale != "") {
			sev = finding.Critical
		}
		f := newFinding(ShadowedMount, sev, m, shadowMessage(conns, m, top, others, stale))
		f.Details = map[string]string{
			"covered_by_mount_id": strconv.Itoa(top.ID),
			"covered_by_fstype":   top.FSType,
			"covered_by_source":   top.Source,
			"other_mounts":        strconv.Itoa(others),
		}
		if stale != "" {
			f.Details["hidden_state"] = stale
		}
		out = append(out, f)
	}
	return Outcome{Findings: out}
}

func shadowMessage(conns *connIndex, m, top *mounts.Mount, others int, stale string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Mount %d (%s from %s, connection %s) at %s is hidden under mount %d (%s from %s) made later at the same mount point: "+
		"whatever looks at %s sees the new mount. ", m.ID, m.FSType, m.Source, m.Dev(), m.Mountpoint, top.ID, top.FSType, top.Source, m.Mountpoint)
	if others > 0 {
		ci := conns.of(m)
		fmt.Fprintf(&b, "%s elsewhere (%s) still use the hidden filesystem. ", plural(others, "other mount"), plural(ci.podVolumes, "pod volume"))
	}
	switch stale {
	case "":
	case "hung":
		b.WriteString("The hidden filesystem does not answer (hung). ")
	default:
		fmt.Fprintf(&b, "The hidden filesystem is dead (%s), so those mounts fail while the mount point looks healthy. ", stale)
	}
	if m.FUSE || m.Network {
		fmt.Fprintf(&b, "Fix: unmount every mount of connection %s (findmnt -o TARGET,MAJ:MIN | grep %s) and remount the volumes "+
			"on the new mount, restarting the pods that use them.", m.Dev(), m.Dev())
	} else {
		fmt.Fprintf(&b, "Fix: if the lower mount is not wanted, unmount the top mount, unmount the hidden one, and mount again once.")
	}
	return b.String()
}
