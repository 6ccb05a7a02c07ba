package layout

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// Defaults kept when nothing was given or found.
const (
	DefaultKubeletRoot    = "/var/lib/kubelet"
	DefaultContainerdRoot = "/var/lib/containerd"
	// OverlayfsDir is containerd's overlayfs snapshotter directory under its root.
	OverlayfsDir = "io.containerd.snapshotter.v1.overlayfs"
)

// Source says where a directory came from.
type Source string

// Sources, most authoritative first.
const (
	FromFlag      Source = "flag"
	FromProcess   Source = "command line" // kubelet's --root-dir, containerd's --root
	FromConfig    Source = "config file"  // containerd's config.toml root
	FromTable     Source = "mount table"
	FromDerived   Source = "derived" // the snapshots directory under a root found otherwise
	FromDefault   Source = "default"
	maxCandidates        = 8
)

// Dir is one directory of the node's layout and how it was decided.
type Dir struct {
	Path   string `json:"path"`
	Source Source `json:"source"`
	// Evidence says what showed it: "flag --path.kubelet", "14 mounts",
	// "kubelet pid 812 --root-dir", "no kubelet mounts in the table".
	Evidence string `json:"evidence,omitempty"`
	// Candidates are the different directories the table showed when
	// there was more than one (the default was kept unless a process or
	// a flag decided); at most 8.
	Candidates []string `json:"candidates,omitempty"`
}

// String is "PATH (SOURCE: EVIDENCE)".
func (d Dir) String() string {
	s := d.Path + " (" + string(d.Source)
	if d.Evidence != "" {
		s += ": " + d.Evidence
	}
	return s + ")"
}

// Layout is where kubelet and containerd keep their state on the inspected
// node, as its mount namespace sees it.
type Layout struct {
	Kubelet Dir `json:"kubelet_root"`
	// KubeletRoots are every kubelet root whose mounts are read as
	// kubelet's: Kubelet.Path first, then each other root the mount table
	// shows pod volume, subpath or CSI staging mounts under (most mounts
	// first, at most 8), unless a flag gave the root: two kubelets sharing
	// a table (kind, k3d, a second kubelet) or a root that moved while old
	// mounts remain. Their shapes are unmistakable, so each names its pods
	// and volumes while Kubelet.Candidates still reports the ambiguity.
	KubeletRoots        []string `json:"kubelet_roots,omitempty"`
	ContainerdRoot      Dir      `json:"containerd_root"`
	ContainerdSnapshots Dir      `json:"containerd_snapshots"`
	// PodLogs is kubelet's pod log directory, whose
	// <namespace>_<name>_<uid> entries name the pods.
	PodLogs Dir `json:"pod_logs"`
}

// Given are the directories set by flags; "" is not given.
type Given struct {
	KubeletRoot, ContainerdRoot, ContainerdSnapshots, PodLogs string
}

// Entry is what the table says about one mount: its mount point and, for
// an overlay, its absolute layer directories (upper, lower, work).
type Entry struct {
	Mountpoint string
	Layers     []string
}

// TableEvidence counts, per candidate directory, the mounts that show it.
type TableEvidence struct {
	Kubelet    map[string]int // kubelet root -> pod volume, subpath and CSI staging mounts under it
	Snapshots  map[string]int // containerd overlayfs snapshots directory -> layers in it
	Containerd map[string]int // containerd root -> layers under it (snapshots dirs under <root>/io.containerd.snapshotter.v1.overlayfs)
}

// FromEntries reads the evidence of a mount table: kubelet roots from mount
// points <root>/pods/<uid>/volumes/<plugin>/<volume>[/mount],
// <root>/pods/<uid>/volume-subpaths/<volume>/<container>/<index> and
// <root>/plugins/kubernetes.io/csi/<driver>/<hash>/globalmount; containerd's
// snapshots directory from overlay layers <dir>/<n>/fs (and /work), and its
// root when that directory is <root>/io.containerd.snapshotter.v1.overlayfs/snapshots.
func FromEntries(entries []Entry) TableEvidence {
	ev := TableEvidence{Kubelet: map[string]int{}, Snapshots: map[string]int{}, Containerd: map[string]int{}}
	for _, e := range entries {
		if r, ok := KubeletRootOf(e.Mountpoint); ok {
			ev.Kubelet[r]++
		}
		for _, l := range e.Layers {
			snaps, ok := SnapshotsDirOf(l)
			if !ok {
				continue
			}
			ev.Snapshots[snaps]++
			if root, ok := strings.CutSuffix(snaps, "/"+OverlayfsDir+"/snapshots"); ok && root != "" {
				ev.Containerd[root]++
			}
		}
	}
	return ev
}

// KubeletRootOf returns the kubelet root of a kubelet mount point: a pod
// volume, a subpath or a CSI staging mount, in the shapes kubelet makes
// (mounts.ParseKubePath reads the same shapes). The root cannot be "/".
func KubeletRootOf(mountpoint string) (string, bool) {
	p := path.Clean(mountpoint)
	if !path.IsAbs(p) || p != mountpoint {
		return "", false
	}
	c := strings.Split(p, "/")[1:]
	for i := 0; i < len(c); i++ {
		if kubeletShape(c[i:]) {
			if i == 0 {
				return "", false // the kubelet root cannot be /
			}
			return "/" + strings.Join(c[:i], "/"), true
		}
	}
	return "", false
}

// kubeletShape reports whether rest, a mount point's components from one
// below the kubelet root, is a kubelet mount's.
func kubeletShape(rest []string) bool {
	switch {
	case len(rest) >= 5 && rest[0] == "pods" && podUID(rest[1]) && rest[2] == "volumes":
		return len(rest) == 5 || (len(rest) == 6 && rest[5] == "mount")
	case len(rest) == 6 && rest[0] == "pods" && podUID(rest[1]) && rest[2] == "volume-subpaths":
		return true
	case len(rest) == 6 && rest[0] == "plugins" && rest[1] == "kubernetes.io" && rest[2] == "csi":
		return rest[5] == "globalmount"
	}
	return false
}

// podUID reports whether s looks like a pod UID: a UUID from the API
// server, or the 32 hex digits of a static pod's hash.
func podUID(s string) bool {
	switch len(s) {
	case 36:
		for i, r := range s {
			if (i == 8 || i == 13 || i == 18 || i == 23) != (r == '-') || (r != '-' && !isHex(r)) {
				return false
			}
		}
		return true
	case 32:
		for _, r := range s {
			if !isHex(r) {
				return false
			}
		}
		return true
	}
	return false
}

func isHex(r rune) bool { return '0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F' }

// SnapshotsDirOf returns the overlayfs snapshots directory of a layer
// directory <dir>/<n>/fs or <dir>/<n>/work, where the last component of
// dir is "snapshots" and n a number.
func SnapshotsDirOf(layer string) (string, bool) {
	p := path.Clean(layer)
	if !path.IsAbs(p) {
		return "", false
	}
	rest, last := path.Split(p)
	if last != "fs" && last != "work" {
		return "", false
	}
	rest, n := path.Split(strings.TrimSuffix(rest, "/"))
	if n == "" || strings.Trim(n, "0123456789") != "" {
		return "", false
	}
	dir := strings.TrimSuffix(rest, "/")
	if path.Base(dir) != "snapshots" || dir == "/snapshots" {
		return "", false
	}
	return dir, true
}

// decideTable picks the one candidate of counts. With none or several it
// returns false and the candidates, sorted, most mounts first.
func decideTable(counts map[string]int) (string, []string, bool) {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if counts[a] != counts[b] {
			return counts[b] - counts[a]
		}
		return strings.Compare(a, b)
	})
	if len(keys) == 1 {
		return keys[0], keys, true
	}
	return "", keys[:min(len(keys), maxCandidates)], false
}

func candidatesText(keys []string, counts map[string]int) string {
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s (%d)", k, counts[k])
	}
	return strings.Join(parts, ", ")
}

// Decide chooses the layout: a flag given always wins, then the running
// process's own word (kubelet --root-dir; containerd --root or its config
// file's root), then the mount table when it shows exactly one directory,
// then the default. Two candidates in the table, or none, keep the default
// and say so in Evidence (and Candidates).
func Decide(g Given, ev TableEvidence, proc ProcessEvidence) Layout {
	var l Layout
	l.Kubelet = decideDir(g.KubeletRoot, "--path.kubelet", proc.KubeletRoot, ev.Kubelet, DefaultKubeletRoot, "kubelet mounts")
	l.KubeletRoots = kubeletRoots(l.Kubelet, ev.Kubelet)
	l.ContainerdRoot = decideDir(g.ContainerdRoot, "--path.containerd-root", proc.ContainerdRoot, ev.Containerd, DefaultContainerdRoot, "overlay layers")
	l.PodLogs = decidePodLogs(g.PodLogs, proc.PodLogs)
	switch {
	case g.ContainerdSnapshots != "":
		l.ContainerdSnapshots = Dir{Path: path.Clean(g.ContainerdSnapshots), Source: FromFlag, Evidence: "--path.containerd-snapshots"}
	case l.ContainerdRoot.Source == FromFlag || l.ContainerdRoot.Source == FromProcess || l.ContainerdRoot.Source == FromConfig:
		l.ContainerdSnapshots = Dir{Path: path.Join(l.ContainerdRoot.Path, OverlayfsDir, "snapshots"), Source: FromDerived,
			Evidence: "under the containerd root"}
	default:
		l.ContainerdSnapshots = decideDir("", "", Found{}, ev.Snapshots, path.Join(l.ContainerdRoot.Path, OverlayfsDir, "snapshots"), "overlay layers")
		if l.ContainerdSnapshots.Source == FromDefault {
			l.ContainerdSnapshots.Source = FromDerived
			l.ContainerdSnapshots.Evidence = "under the containerd root; " + l.ContainerdSnapshots.Evidence
		}
	}
	return l
}

func decideDir(given, flag string, proc Found, counts map[string]int, def, what string) Dir {
	if given != "" {
		return Dir{Path: path.Clean(given), Source: FromFlag, Evidence: flag}
	}
	pick, cands, ok := decideTable(counts)
	if proc.Path != "" {
		d := Dir{Path: proc.Path, Source: proc.Source, Evidence: proc.Evidence}
		if !ok && len(cands) > 1 {
			d.Candidates = cands
		}
		return d
	}
	if ok {
		n := counts[pick]
		return Dir{Path: pick, Source: FromTable, Evidence: fmt.Sprintf("%d %s", n, plural(n, what))}
	}
	if len(cands) == 0 {
		return Dir{Path: def, Source: FromDefault, Evidence: "no " + what + " in the mount table"}
	}
	return Dir{Path: def, Source: FromDefault, Candidates: cands,
		Evidence: fmt.Sprintf("%d candidates in the mount table, kept the default: %s", len(counts), candidatesText(cands, counts))}
}

// kubeletRoots is the decided root followed by every other root counts
// show (most mounts first, at most maxCandidates of them); only the root
// when a flag gave it.
func kubeletRoots(d Dir, counts map[string]int) []string {
	roots := []string{d.Path}
	if d.Source == FromFlag {
		return roots
	}
	_, all, _ := decideTable(counts)
	for _, r := range all {
		if r != d.Path && len(roots) <= maxCandidates {
			roots = append(roots, r)
		}
	}
	return roots
}

func plural(n int, what string) string {
	if n == 1 {
		return strings.TrimSuffix(what, "s")
	}
	return what
}

// Decision is what was decided, without the evidence counts (which change
// as pods come and go): equal decisions give equal strings.
func (l Layout) Decision() string {
	var b strings.Builder
	for _, d := range []Dir{l.Kubelet, l.ContainerdRoot, l.ContainerdSnapshots, l.PodLogs} {
		fmt.Fprintf(&b, "%s\x00%s\x00%s\x00", d.Path, d.Source, strings.Join(d.Candidates, "\x01"))
	}
	b.WriteString(strings.Join(l.KubeletRoots, "\x01"))
	return b.String()
}

// decidePodLogs chooses the pod log directory: the flag, then kubelet's
// config file, then kubelet's default. The mount table says nothing of it.
func decidePodLogs(given string, proc Found) Dir {
	switch {
	case given != "":
		return Dir{Path: path.Clean(given), Source: FromFlag, Evidence: "--path.pod-logs"}
	case proc.Path != "":
		return Dir{Path: proc.Path, Source: proc.Source, Evidence: proc.Evidence}
	}
	return Dir{Path: DefaultPodLogsDir, Source: FromDefault, Evidence: "kubelet's default (no podLogsDir in a kubelet config file found)"}
}
