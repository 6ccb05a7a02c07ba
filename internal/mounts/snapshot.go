package mounts

import (
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mountwatchd/mountwatchd/internal/layout"
)

// Snapshot is one reading of a mount table, classified.
type Snapshot struct {
	// Path is the file the table was read from (/proc/<pid>/mountinfo, or a
	// captured copy); not to be confused with Mount.Source, a mount source.
	Path string
	// Live is false when the table is a captured file: the mount points are
	// not this machine's, so checks that look at files or make syscalls are
	// skipped.
	Live bool
	// Host is the namespace the table belongs to (meaningful when Live),
	// with KubeletRoot, ContainerdRoot and ContainerdSnapshots as Layout
	// decided them.
	Host Host
	// Layout is where kubelet and containerd keep their state, and what
	// said so (a flag, the processes, the table, the default).
	Layout layout.Layout
	// Taken is when the table was read.
	Taken time.Time

	Mounts []*Mount
	// ParseErrors lists the first MaxParseErrorsListed lines that could
	// not be parsed; ParseErrorCount counts them all.
	ParseErrors     []ParseError
	ParseErrorCount int

	byDev        map[string][]*Mount
	byMountpoint map[string][]*Mount
	ByID         map[int]*Mount
	coveredBy    map[int]*Mount

	chainsMu sync.Mutex
	chains   map[string]*overlayChains // by snapshot root

	// The digest and size of the table's bytes, as read (RereadSnapshot).
	sum  tableSum
	size int64
}

type overlayChains struct {
	chains []*OverlayChain
	errs   []error
}

// OverlayChains returns the layer chain of every overlay mount, relative
// lowerdirs resolved against snapshotRoot, and an error for each mount whose
// options could not be parsed. They are parsed once per snapshot: every
// scanning check of a run shares them.
func (s *Snapshot) OverlayChains(snapshotRoot string) ([]*OverlayChain, []error) {
	s.chainsMu.Lock()
	defer s.chainsMu.Unlock()
	if oc, ok := s.chains[snapshotRoot]; ok {
		return oc.chains, oc.errs
	}
	oc := &overlayChains{}
	for _, m := range s.Mounts {
		if !m.Overlay {
			continue
		}
		ch, err := ParseOverlayChain(m, snapshotRoot)
		if err != nil {
			oc.errs = append(oc.errs, err)
			continue
		}
		oc.chains = append(oc.chains, ch)
	}
	if s.chains == nil {
		s.chains = map[string]*overlayChains{}
	}
	s.chains[snapshotRoot] = oc
	return oc.chains, oc.errs
}

// SameTable reports whether s and o share one parse of the same table
// (RereadSnapshot found it unchanged): the same *Mount values, so whatever
// was derived from the mounts of one holds for the other.
func (s *Snapshot) SameTable(o *Snapshot) bool {
	return s != nil && o != nil && len(s.Mounts) > 0 && len(s.Mounts) == len(o.Mounts) && &s.Mounts[0] == &o.Mounts[0]
}

// podLogLister lists h's pod log directory at once, beside the read of
// the table (it does not depend on it), for a live table; the function it
// returns waits for the list, once, and returns it every time: the
// comparison of a table read again and its classification afresh see the
// same list.
func podLogLister(h Host, live bool) func() map[string][2]string {
	if !live {
		return func() map[string][2]string { return nil }
	}
	ch := make(chan map[string][2]string, 1)
	hd := h.WithDefaults() // a copy: the caller's h changes
	go func() { ch <- listPodLogs(hd) }()
	var listed map[string][2]string
	var got bool
	return func() map[string][2]string {
		if !got {
			listed, got = <-ch, true
		}
		return listed
	}
}

// again is prev (s) read again, unchanged, at taken: a snapshot sharing
// s's mounts and indexes, with its own layout and time; nil when the
// layout or the Kubernetes context of a mount would now be another than
// s's (a pod's log directory made since, a vol_data.json rewritten): the
// table must then be classified afresh, and s's mounts are not to be
// touched.
func (s *Snapshot) again(h Host, taken time.Time, pods func() map[string][2]string) *Snapshot {
	n := &Snapshot{Path: s.Path, Live: s.Live, Taken: taken, Mounts: s.Mounts,
		ParseErrors: s.ParseErrors, ParseErrorCount: s.ParseErrorCount,
		byDev: s.byDev, byMountpoint: s.byMountpoint, ByID: s.ByID, coveredBy: s.coveredBy, sum: s.sum, size: s.size}
	same := n.classify(h, pods, func(m *Mount, k *Kube) bool {
		return (k == nil) == (m.Kube == nil) && (k == nil || *k == *m.Kube)
	})
	if !same || n.Host != s.Host {
		return nil
	}
	return n
}

// classify decides s's layout and host (s.Layout, s.Host) and works out
// the Kubernetes context of each of its mounts from the table and, live,
// the running processes and kubelet's files (the pod log directory as
// pods lists it), handing each mount and its context (nil for a mount not
// under the kubelet root) to use, in table order, until use returns
// false. It does not change the mounts itself: again compares what it
// finds with a snapshot read before, without keeping it.
//
// The CSI driver of a CSI pod volume that no vol_data.json names, and of
// a subPath (kubelet names its directory by the pod's name for the volume,
// not the PersistentVolume's, so no vol_data.json is found by it), comes
// from the staging mounts of its filesystem: a pod volume published from
// a staging mount shares its major:minor, and the staging path (or its
// vol_data.json) names the driver. Only when every staging mount of that
// filesystem names the same one (a captured table, or the file
// unreadable).
func (s *Snapshot) classify(h Host, pods func() map[string][2]string, use func(*Mount, *Kube) bool) bool {
	s.Layout = s.findLayout(h)
	if listed := h.WithDefaults().PodLogDir; s.Layout.PodLogs.Path != listed {
		// kubelet's config file names another pod log directory than
		// the one listed beside the read: list that one.
		h.PodLogDir = s.Layout.PodLogs.Path
		pods = podLogLister(h, s.Live)
	}
	h.PodLogDir = s.Layout.PodLogs.Path
	h.KubeletRoot = s.Layout.Kubelet.Path
	h.ContainerdRoot = s.Layout.ContainerdRoot.Path
	h.ContainerdSnapshots = s.Layout.ContainerdSnapshots.Path
	h = h.WithDefaults()
	s.Host = h

	roots := s.KubeletRoots()
	var kf *KubeFiles
	context := func(m *Mount) *Kube {
		root, ok := kubeletRootOf(roots, m.Mountpoint)
		if !ok {
			return nil
		}
		k := ParseKubePath(root, m.Mountpoint)
		if k == nil || !s.Live {
			return k
		}
		if kf == nil {
			kf = openKubeFiles(h, pods())
		}
		kf.Enrich(k, root, m.Mountpoint)
		return k
	}
	defer func() {
		if kf != nil {
			kf.Close()
		}
	}()
	staging, stagingKube := s.stagingDrivers(roots, context)
	for _, m := range s.Mounts {
		k, ok := stagingKube[m]
		if !ok {
			k = context(m)
		}
		if k != nil && k.CSIDriver == "" && staging != nil &&
			(k.Kind == PodVolume && k.VolumePlugin == CsiPlugin || k.Kind == SubPath) {
			k.CSIDriver = staging[m.Dev()]
		}
		if !use(m, k) {
			return false
		}
	}
	return true
}

// stagingDrivers reads the context of the staging mounts (a few, one per
// CSI volume on the node) with context, and returns their drivers by
// major:minor ("" where two disagree) and the contexts read; nil maps when
// there is none.
func (s *Snapshot) stagingDrivers(roots []string, context func(*Mount) *Kube) (map[string]string, map[*Mount]*Kube) {
	var staging map[string]string
	var stagingKube map[*Mount]*Kube
	for _, m := range s.Mounts {
		if root, ok := kubeletRootOf(roots, m.Mountpoint); !ok || !isStagingPath(root, m.Mountpoint) {
			continue
		}
		k := context(m)
		if stagingKube == nil {
			staging, stagingKube = map[string]string{}, map[*Mount]*Kube{}
		}
		stagingKube[m] = k
		if k == nil || k.Kind != CSIStaging || k.CSIDriver == "" {
			continue
		}
		dev := m.Dev()
		if d, ok := staging[dev]; !ok {
			staging[dev] = k.CSIDriver
		} else if d != k.CSIDriver {
			staging[dev] = ""
		}
	}
	return staging, stagingKube
}

// findLayout decides the layout from h's given paths, the table and, live,
// the running kubelet and containerd (package layout).
func (s *Snapshot) findLayout(h Host) layout.Layout {
	given := layout.Given{KubeletRoot: h.KubeletRoot, ContainerdRoot: h.ContainerdRoot, ContainerdSnapshots: h.ContainerdSnapshots,
		PodLogs: h.PodLogDir}
	entries := make([]layout.Entry, 0, len(s.Mounts))
	for _, m := range s.Mounts {
		e := layout.Entry{Mountpoint: m.Mountpoint}
		if m.Overlay {
			// Relative layers say nothing about where the snapshots are.
			if ch, err := ParseOverlayChain(m, "/"); err == nil {
				for _, l := range append(slices.Clone(ch.Layers), ch.Data...) {
					if path.IsAbs(l.Option) {
						e.Layers = append(e.Layers, l.Dir)
					}
				}
			}
		}
		entries = append(entries, e)
	}
	var proc layout.ProcessEvidence
	if s.Live && (given.KubeletRoot == "" || given.ContainerdRoot == "" || given.PodLogs == "") {
		proc = h.Processes.Read(layout.Procs{Procfs: h.WithDefaults().Procfs, TargetPID: h.PID, Path: func(p string) string { return h.FS().Path(p) },
			MayHang: func(p string) bool { m, _ := s.HangsOnTheWay(p, nil); return m != nil }})
	}
	return layout.Decide(given, layout.FromEntries(entries), proc)
}

// IndexSnapshot builds the lookups every check uses.
func IndexSnapshot(s *Snapshot) *Snapshot {
	s.byDev = make(map[string][]*Mount)
	s.byMountpoint = make(map[string][]*Mount, len(s.Mounts))
	s.ByID = make(map[int]*Mount, len(s.Mounts))
	s.coveredBy = make(map[int]*Mount)
	for _, m := range s.Mounts {
		s.byDev[m.Dev()] = append(s.byDev[m.Dev()], m)
		s.byMountpoint[m.Mountpoint] = append(s.byMountpoint[m.Mountpoint], m)
		s.ByID[m.ID] = m
	}
	// A mount made on top of another at the same mount point has the lower
	// mount as its parent.
	for _, m := range s.Mounts {
		if p := s.ByID[m.Parent]; p != nil && p != m && p.Mountpoint == m.Mountpoint {
			s.coveredBy[p.ID] = m
		}
	}
	return s
}

// ParseErrorTotal is how many lines could not be parsed, listed or not.
func (s *Snapshot) ParseErrorTotal() int { return max(s.ParseErrorCount, len(s.ParseErrors)) }

// CoveredBy returns the mount stacked directly on top of m at the same mount
// point, which hides m from path lookups; nil when m is not shadowed.
func (s *Snapshot) CoveredBy(m *Mount) *Mount { return s.coveredBy[m.ID] }

// Reachable reports whether m's mount point leads to m itself: neither m
// nor a mount it sits in is shadowed, and its mount point was not deleted.
func (s *Snapshot) Reachable(m *Mount) bool {
	if strings.HasSuffix(m.Mountpoint, DeletedMountSuffix) {
		return false
	}
	if s.coveredBy[m.ID] != nil {
		return false
	}
	// Walk up: a mount sitting in a parent that something else covers is
	// hidden with it (the cover of its own parent is what is seen).
	for depth := 0; depth < 4096 && m.Parent != m.ID; depth++ {
		p := s.ByID[m.Parent]
		if p == nil {
			break
		}
		if c := s.coveredBy[p.ID]; c != nil && c != m {
			return false
		}
		m = p
	}
	return true
}

// ByDev returns every mount of the filesystem (FUSE connection) dev, as
// "major:minor", in table order.
func (s *Snapshot) ByDev(dev string) []*Mount {
	return s.byDev[dev]
}

// ByMountpoint returns every mount at mount point p, in table order.
func (s *Snapshot) ByMountpoint(p string) []*Mount { return s.byMountpoint[p] }

// HangsOnTheWay returns a mount other than except that may hang among those
// a lookup of the absolute, clean path p crosses: mounted at p or at one of
// its parents, and how many mount points it looked up (one per path
// component, whatever the size of the table). nil when there is none.
func (s *Snapshot) HangsOnTheWay(p string, except *Mount) (m *Mount, lookups int) {
	for {
		lookups++
		for _, m := range s.byMountpoint[p] {
			if m != except && m.MayHang() {
				return m, lookups
			}
		}
		if p == "/" || p == "" {
			return nil, lookups
		}
		if i := strings.LastIndexByte(p, '/'); i > 0 {
			p = p[:i]
		} else {
			p = "/"
		}
	}
}
