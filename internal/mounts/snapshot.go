package mounts

import (
	"fmt"
	"os"
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

// ReadSnapshot reads and classifies the mount table of h's namespace, with
// the Kubernetes context of each kubelet mount taken from kubelet's files.
func ReadSnapshot(h Host) (*Snapshot, error) {
	path := h.MountinfoPath()
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	s, err := newSnapshot(path, f, h, true)
	if err != nil {
		return nil, fmt.Errorf("read mount table %s: %w", path, err)
	}
	return s, nil
}

// ReadSnapshotFile reads a captured mount table (for example from a support
// bundle). Kubernetes context comes from mount points alone; kubeletRoot is
// the kubelet root of the machine the table was captured on.
func ReadSnapshotFile(path, kubeletRoot string) (*Snapshot, error) {
	return ReadCapturedTable(path, Host{KubeletRoot: kubeletRoot})
}

// ReadCapturedTable is ReadSnapshotFile with h's KubeletRoot and
// MaxTableBytes; its PID is not used (a captured table has no process).
func ReadCapturedTable(path string, h Host) (*Snapshot, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	s, err := newSnapshot(path, f, Host{KubeletRoot: h.KubeletRoot, ContainerdRoot: h.ContainerdRoot,
		ContainerdSnapshots: h.ContainerdSnapshots, MaxTableBytes: h.MaxTableBytes}, false)
	if err != nil {
		return nil, fmt.Errorf("read mount table %s: %w", path, err)
	}
	return s, nil
}

func newSnapshot(source string, f *os.File, h Host, live bool) (*Snapshot, error) {
	var podLogs chan map[string][2]string
	if live { // the pod log directory does not depend on the table: read both at once
		podLogs = make(chan map[string][2]string, 1)
		hd := h.WithDefaults() // a copy: h changes below
		go func() { podLogs <- listPodLogs(hd) }()
	}
	mounts, perrs, nerrs, err := ParseMountTableLimit(f, h.MaxTableBytes)
	if err != nil {
		return nil, err
	}
	if len(mounts) == 0 {
		if nerrs > 0 {
			return nil, fmt.Errorf("%w: none of its %d lines could be parsed (first: %w)", ErrEmptyTable, nerrs, perrs[0])
		}
		return nil, fmt.Errorf("%w (a live table always has the root mount): is it a mountinfo file?", ErrEmptyTable)
	}
	s := IndexSnapshot(&Snapshot{Path: source, Live: live, Taken: time.Now(), Mounts: mounts,
		ParseErrors: perrs, ParseErrorCount: nerrs})
	s.Layout = s.findLayout(h)
	h.KubeletRoot = s.Layout.Kubelet.Path
	h.ContainerdRoot = s.Layout.ContainerdRoot.Path
	h.ContainerdSnapshots = s.Layout.ContainerdSnapshots.Path
	h = h.WithDefaults()
	s.Host = h

	var kf *KubeFiles
	for _, m := range mounts {
		m.Kube = ParseKubePath(h.KubeletRoot, m.Mountpoint)
		if m.Kube == nil || !live {
			continue
		}
		if kf == nil {
			kf = openKubeFiles(h, <-podLogs)
			defer kf.Close()
		}
		kf.Enrich(m.Kube, h.KubeletRoot, m.Mountpoint)
	}
	s.driversFromStaging()
	return s, nil
}

// driversFromStaging names the CSI driver of a CSI pod volume that no
// vol_data.json named (a captured table, or the file unreadable) after the
// staging mounts of its filesystem: a pod volume published from a staging
// mount shares its major:minor, and the staging path names the driver.
// Only when every staging mount of that filesystem names the same one.
func (s *Snapshot) driversFromStaging() {
	for _, m := range s.Mounts {
		k := m.Kube
		if k == nil || k.Kind != PodVolume || k.VolumePlugin != CsiPlugin || k.CSIDriver != "" {
			continue
		}
		driver := ""
		for _, o := range s.byDev[m.Dev()] {
			if o.Kube == nil || o.Kube.Kind != CSIStaging || o.Kube.CSIDriver == "" {
				continue
			}
			if driver != "" && driver != o.Kube.CSIDriver {
				driver = ""
				break
			}
			driver = o.Kube.CSIDriver
		}
		k.CSIDriver = driver
	}
}

// findLayout decides the layout from h's given paths, the table and, live,
// the running kubelet and containerd (package layout).
func (s *Snapshot) findLayout(h Host) layout.Layout {
	given := layout.Given{KubeletRoot: h.KubeletRoot, ContainerdRoot: h.ContainerdRoot, ContainerdSnapshots: h.ContainerdSnapshots}
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
	if s.Live && (given.KubeletRoot == "" || given.ContainerdRoot == "") {
		proc = layout.Procs{Procfs: h.WithDefaults().Procfs, TargetPID: h.PID, Path: h.Path,
			MayHang: func(p string) bool { m, _ := s.HangsOnTheWay(p, nil); return m != nil }}.ReadCached()
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
