package check

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/walk"
	"golang.org/x/sys/unix"
)

// StrayOverlayXattr is the ID of StrayOverlayXattrCheck.
const StrayOverlayXattr finding.ID = "stray_overlay_xattr"

var strayOverlayXattrDecl = Decl{
	ID: StrayOverlayXattr, Kind: finding.ScanCheck, Needs: NeedsLive | NeedsRoot, Order: 60,
	MessageID:  "2e99fe2d89da4cda87a3051b0f19042e",
	Severities: []finding.Severity{finding.Warning},
	New: func(cfg *Config) Check {
		// Its SnapshotRoot is left to each snapshot's layout.
		return &StrayOverlayXattrCheck{Roots: cfg.ScanRoots, Limits: cfg.ScanLimits, FullPass: cfg.Once}
	},
}

func init() { Register(strayOverlayXattrDecl) }

// StrayOverlayXattrCheck finds files and directories under the kubelet pod
// volume trees (<kubelet>/pods/*/volumes/**) and under Roots that carry
// trusted.overlay.* or user.overlay.* xattrs while not being inside a layer,
// upper or work directory of a live overlay mount: overlay metadata carried
// in by a copy, which hides data as soon as the tree is used as a layer.
//
// It walks under the walker's budget and resumes on the next Run. A hit is
// reported from the Run that finds it until a complete pass no longer finds
// it. The zero value scans the kubelet tree with no budget; a check value
// keeps its cursor between Runs: use one value per schedule.
type StrayOverlayXattrCheck struct {
	// Roots are more directories to scan, as the inspected namespace sees
	// them (real paths: a symlink in a root is refused).
	Roots []string
	// SnapshotRoot resolves relative lowerdirs of live overlays (default
	// DefaultContainerdSnapshots).
	SnapshotRoot string
	Limits       walk.ScanLimits
	// FullPass makes a Run that stops at its budget before the pass is
	// complete an error (--once).
	FullPass bool

	scanner
	generated []bool              // roots of the pass found under <kubelet>/pods
	found     map[string]strayHit // pass in progress, by path
	last      map[string]strayHit // last complete pass
}

type strayHit struct {
	path  string
	names []string
	mnt   int
	root  string
}

// Decl implements Check.
func (*StrayOverlayXattrCheck) Decl() Decl { return strayOverlayXattrDecl }

// Run implements Check.
func (c *StrayOverlayXattrCheck) Run(ctx context.Context, env *Env) Outcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := env.Snapshot
	snapRoot := snapshotRoot(c.SnapshotRoot, s)
	live := liveOverlayDirs(s, snapRoot)
	var errs []error
	if !walk.TrustedXattrsVisible() {
		errs = append(errs, ErrNoTrustedXattrs)
	}
	return c.scan(ctx, env, scanPass{
		id: StrayOverlayXattr, limits: c.Limits, fullPass: c.FullPass, errs: errs,
		roots: func() []walk.Root { return c.newPass(s) },
		visit: func(e *walk.Entry) bool { return c.visit(e, live, snapRoot) },
		rootErr: func(r *walk.RootError) error {
			if r.Index < len(c.generated) && c.generated[r.Index] && errors.Is(r.Err, unix.ENOENT) {
				return nil // a pod without volumes, or deleted since
			}
			return fmt.Errorf("stray_overlay_xattr: root not scanned: %w", r)
		},
		passDone: func() { c.last, c.found = c.found, nil },
		findings: func() ([]finding.Finding, error) {
			hits := map[string]strayHit{}
			for p, h := range c.last {
				hits[p] = h
			}
			for p, h := range c.found {
				hits[p] = h
			}
			return c.findings(s, hits, live), nil
		},
	})
}

// newPass starts a pass: the pod volume trees of the kubelet root, then
// Roots.
func (c *StrayOverlayXattrCheck) newPass(s *mounts.Snapshot) []walk.Root {
	c.found = map[string]strayHit{}
	var roots []walk.Root
	c.generated = nil
	for _, kubelet := range s.KubeletRoots() {
		pods := path.Join(kubelet, "pods")
		for _, v := range c.podVolumeDirs(kubelet) {
			roots = append(roots, walk.Root{Path: v, Base: pods})
			c.generated = append(c.generated, true)
		}
	}
	for _, r := range c.Roots {
		roots = append(roots, walk.Root{Path: r})
		c.generated = append(c.generated, false)
	}
	return roots
}

// visit records e's overlay xattrs; it does not descend into live layers
// and containerd's snapshots.
func (c *StrayOverlayXattrCheck) visit(e *walk.Entry, live map[string]bool, snapRoot string) bool {
	if e.Typ == unix.DT_DIR && live[e.Path] {
		return false // a live layer: its xattrs are overlay's own
	}
	if e.Typ == unix.DT_DIR && (e.Path == snapRoot || path.Dir(e.Path) == snapRoot) {
		return false // containerd's snapshots, mounted or not, are layers
	}
	names, err := e.ListXattrs()
	if errors.Is(err, walk.ErrNotScannable) {
		return false // a mount point the walk does not enter
	}
	if err != nil {
		return true
	}
	var ovl []string
	for _, n := range names {
		if strings.HasPrefix(n, "trusted.overlay.") || strings.HasPrefix(n, "user.overlay.") {
			ovl = append(ovl, n)
		}
	}
	if len(ovl) > 0 {
		slices.Sort(ovl)
		c.hits.Lock()
		c.found[e.Path] = strayHit{path: e.Path, names: ovl, mnt: e.Mnt, root: c.w.Roots[e.Root].Path}
		c.hits.Unlock()
	}
	return true
}

// podVolumeDirs lists <kubelet>/pods/*/volumes, read without following
// symlinks.
func (c *StrayOverlayXattrCheck) podVolumeDirs(kubeletRoot string) []string {
	pods := path.Join(kubeletRoot, "pods")
	fd, _, err := c.w.OpenRoot(walk.Root{Path: pods})
	if err != nil {
		return nil // no kubelet here; nothing to scan
	}
	defer unix.Close(fd)
	ents, _ := walk.ReadDir(fd, maxDirList)
	var out []string
	for _, e := range ents {
		if e.Typ == unix.DT_DIR {
			out = append(out, pods+"/"+e.Name+"/volumes")
		}
	}
	slices.Sort(out)
	return out
}

// liveOverlayDirs is every directory a live overlay mount of s uses.
func liveOverlayDirs(s *mounts.Snapshot, snapRoot string) map[string]bool {
	live := map[string]bool{}
	chains, _ := s.OverlayChains(snapRoot) // opaque_propagation reports the errors
	for _, ch := range chains {
		for _, d := range ch.Dirs() {
			live[d] = true
		}
	}
	return live
}

// insideLive reports whether p is a live overlay directory or below one.
func insideLive(p string, live map[string]bool) bool {
	for ; p != "/" && p != "." && p != ""; p = path.Dir(p) {
		if live[p] {
			return true
		}
	}
	return false
}

func (c *StrayOverlayXattrCheck) findings(s *mounts.Snapshot, hits map[string]strayHit, live map[string]bool) []finding.Finding {
	if len(hits) == 0 {
		return nil
	}
	h := s.Host.WithDefaults()
	byID := map[int]*mounts.Mount{}
	for _, m := range s.Mounts {
		byID[m.ID] = m
	}
	var kf *mounts.KubeFiles
	var out []finding.Finding
	for _, hit := range hits {
		if insideLive(hit.path, live) {
			continue
		}
		m := byID[hit.mnt]
		if m == nil {
			m = containingMount(s, hit.path)
		}
		if m == nil {
			continue
		}
		f := newFinding(StrayOverlayXattr, finding.Warning, m, strayMessage(hit))
		f.Path = hit.path
		f.Kube = mounts.Kube{}
		kubelet, _ := s.KubeletRootOf(hit.path)
		if f.Directory = mounts.KubeVolumeDir(kubelet, hit.path); f.Directory == "" {
			f.Directory = hit.root // bounded, unlike the file: the pod volume or the scan root
		}
		if k := mounts.ParseKubeFilePath(kubelet, hit.path); k != nil {
			if s.Live {
				if kf == nil {
					kf = mounts.OpenKubeFiles(h)
					defer kf.Close()
				}
				kf.Enrich(k, kubelet, kubeMountPath(kubelet, k))
			}
			f.Kube = *k
		}
		f.Details = map[string]string{"xattrs": strings.Join(hit.names, ","), "scan_root": hit.root}
		out = append(out, f)
	}
	SortFindings(out)
	return out
}

// kubeMountPath is the mount point kubelet uses for k's volume.
func kubeMountPath(kubeletRoot string, k *mounts.Kube) string {
	p := path.Join(kubeletRoot, "pods", k.PodUID, "volumes", k.VolumePlugin, k.Volume)
	if k.VolumePlugin == mounts.CsiPlugin {
		p += "/mount"
	}
	return p
}

// containingMount is the mount whose mount point is the longest prefix of
// p (the last one in table order when several share it).
func containingMount(s *mounts.Snapshot, p string) *mounts.Mount {
	var best *mounts.Mount
	for _, m := range s.Mounts {
		mp := m.Mountpoint
		if mp == p || mp == "/" || strings.HasPrefix(p, mp+"/") {
			if best == nil || len(mp) >= len(best.Mountpoint) {
				best = m
			}
		}
	}
	return best
}

func strayMessage(h strayHit) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s carries overlay xattrs (%s) but is not inside a layer, upper or work directory of any overlay "+
		"mounted in this namespace: overlay metadata carried in by a copy (cp -a, rsync -X, tar --xattrs of a layer). ",
		h.path, strings.Join(h.names, ", "))
	opaque := slices.ContainsFunc(h.names, func(n string) bool { return strings.HasSuffix(n, ".overlay.opaque") })
	if opaque {
		b.WriteString("As soon as this tree is used as an overlay layer (image builders keep their layers in pod volumes), " +
			"the opaque marker hides everything below this directory in lower layers. ")
	} else {
		b.WriteString("As soon as this tree is used as an overlay layer (image builders keep their layers in pod volumes), " +
			"overlay acts on this metadata and can hide or redirect files. ")
	}
	b.WriteString("Fix: remove the xattrs (setfattr -x NAME PATH) or recreate the files without copying xattrs.")
	return b.String()
}
