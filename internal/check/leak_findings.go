package check

import (
	"fmt"
	"hash/maphash"
	"strconv"
	"strings"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

// This file is mount_leak's findings: what each says and the details it
// carries.

func stackFinding(bottom, top *mounts.Mount, height int, t leakTrack, cfg LeakConfig) finding.Finding {
	f := newFinding(MountLeak, finding.Warning, bottom, fmt.Sprintf("%d mounts are stacked on %s (more than %d): the top one, mount %d (%s from %s), "+
		"hides the %d below it, which are never used again and each stay in the table. %s "+
		"A remount loop or a plugin that mounts without unmounting does this; %d were there when first seen, %d since %s. "+
		"Fix: stop what remounts (the CSI node plugin or FUSE server's retries), then unmount the stack down to one (umount %s, repeated).",
		height, bottom.Mountpoint, cfg.MaxStacked, top.ID, top.FSType, top.Source, height-1, podPart(bottom.Kube),
		t.first, height-t.base, t.since.UTC().Format(time.RFC3339), bottom.Mountpoint))
	f.Details = map[string]string{
		"kind":              "stacked",
		"count":             strconv.Itoa(height),
		"first_count":       strconv.Itoa(t.first),
		"growth":            strconv.Itoa(height - t.first),
		"top_mount_id":      strconv.Itoa(top.ID),
		"top_fstype":        top.FSType,
		"top_source":        top.Source,
		"growing_since":     t.since.UTC().Format(time.RFC3339),
		"growth_since_base": strconv.Itoa(height - t.base),
	}
	return f
}

// groupFindings reports the grown groups, one finding each, named by the
// group's filesystem or source and root, and by the pod its newest mount is
// in when the paths say so.
func groupFindings(s *mounts.Snapshot, seed maphash.Seed, grown []uint64, tracks map[uint64]leakTrack) []finding.Finding {
	type agg struct {
		n          int
		first, new *mounts.Mount
		pods       map[string]bool
		points     map[string]bool
	}
	aggs := make(map[uint64]*agg, len(grown))
	for _, k := range grown {
		aggs[k] = &agg{pods: map[string]bool{}, points: map[string]bool{}}
	}
	for _, m := range s.Mounts {
		a := aggs[groupHash(seed, m)]
		if a == nil {
			continue
		}
		a.n++
		if a.first == nil {
			a.first = m
		}
		a.new = m
		if m.Kube != nil && m.Kube.PodUID != "" {
			a.pods[m.Kube.PodUID] = true
		}
		a.points[m.Mountpoint] = true
	}
	var out []finding.Finding
	for _, k := range grown {
		a, t := aggs[k], tracks[k]
		m := a.new
		what := fmt.Sprintf("filesystem %s (%s from %s)", m.Dev(), m.FSType, m.Source)
		f := finding.Finding{Check: MountLeak, Severity: finding.Warning, FSType: m.FSType, Source: m.Source, Root: m.Root}
		if groupedBySource(m) {
			what = fmt.Sprintf("source %s (%s)", m.Source, m.FSType)
		} else {
			f.Dev = m.Dev()
		}
		if m.Kube != nil && m.Kube.PodUID != "" {
			f.Kube = *m.Kube
		}
		f.Message = fmt.Sprintf("The mounts of %s, root %s, grew from %d to %d over consecutive reads of the mount table without coming down "+
			"(since %s; %d when first seen), on %d mount points in %d pods; the newest is %s. %s"+
			"A plugin or FUSE server that mounts on every retry and never unmounts does this, until the table reaches fs.mount-max "+
			"and every mount on the node fails. Fix: find what mounts it (the CSI node plugin's log), stop it, and unmount the extra mounts "+
			"(findmnt -o TARGET,SOURCE,FSROOT | grep %s).",
			what, m.Root, t.base, a.n, t.since.UTC().Format(time.RFC3339), t.first, len(a.points), len(a.pods), m.Mountpoint,
			podPart(m.Kube), shellWord(m.Source))
		f.Details = map[string]string{
			"kind":            "growing",
			"count":           strconv.Itoa(a.n),
			"first_count":     strconv.Itoa(t.first),
			"growth":          strconv.Itoa(a.n - t.base),
			"growing_since":   t.since.UTC().Format(time.RFC3339),
			"mount_points":    strconv.Itoa(len(a.points)),
			"pods":            strconv.Itoa(len(a.pods)),
			"first_mount":     a.first.Mountpoint,
			"newest_mount":    m.Mountpoint,
			"newest_mount_id": strconv.Itoa(m.ID),
		}
		out = append(out, f)
	}
	return out
}

func tableFinding(size, mountMax int, st finding.TableStats, cfg LeakConfig) finding.Finding {
	sev := finding.Warning
	if float64(size) >= criticalTableFraction*float64(mountMax) {
		sev = finding.Critical
	}
	f := finding.Finding{Check: MountLeak, Severity: sev, Message: fmt.Sprintf("The mount table holds %d mounts, %.0f%% of fs.mount-max (%d; warning at %.0f%%), "+
		"%+d since this process first read it (%d at %s). At the max every new mount in this mount namespace fails with ENOSPC, "+
		"so no pod can start, and every tool that reads the table slows down. Fix: find what piles up (the other mount_leak findings, "+
		"or findmnt -o SOURCE,FSROOT | sort | uniq -c | sort -n | tail), stop it and unmount what it left.",
		size, 100*float64(size)/float64(mountMax), mountMax, 100*cfg.TableFraction, st.Growth, st.FirstSize, st.FirstTaken.UTC().Format(time.RFC3339))}
	f.Details = map[string]string{
		"kind":      "table_size",
		"count":     strconv.Itoa(size),
		"mount_max": strconv.Itoa(mountMax),
		"growth":    strconv.Itoa(st.Growth),
	}
	return f
}

func podPart(k *mounts.Kube) string {
	if k == nil || k.PodUID == "" {
		return ""
	}
	s := "Pod " + podName(k)
	if k.Volume != "" {
		s += ", volume " + k.Volume
	}
	return s + ". "
}

func shellSafe(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@", r)
}

// shellWord quotes s for a shell command line in a message.
func shellWord(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool { return !shellSafe(r) }) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
