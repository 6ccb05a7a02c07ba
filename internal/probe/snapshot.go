package probe

import (
	"fmt"
	"os"
	"time"
)

// Snapshot is one reading of a mount table, classified.
type Snapshot struct {
	// Source is the file the table was read from.
	Source string
	// Live is false when the table is a captured file: the mount points are
	// not this machine's, so checks that look at files or make syscalls are
	// skipped.
	Live bool
	// Host is the namespace the table belongs to (meaningful when Live).
	Host Host
	// Taken is when the table was read.
	Taken time.Time

	Mounts      []*Mount
	ParseErrors []ParseError

	byDev map[string][]*Mount
}

// ReadSnapshot reads and classifies the mount table of h's namespace, with
// the Kubernetes context of each kubelet mount taken from kubelet's files.
func ReadSnapshot(h Host) (*Snapshot, error) {
	h = h.withDefaults()
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
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	s, err := newSnapshot(path, f, Host{KubeletRoot: kubeletRoot}.withDefaults(), false)
	if err != nil {
		return nil, fmt.Errorf("read mount table %s: %w", path, err)
	}
	return s, nil
}

func newSnapshot(source string, f *os.File, h Host, live bool) (*Snapshot, error) {
	mounts, perrs, err := ParseMountTable(f)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{Source: source, Live: live, Host: h, Taken: time.Now(), Mounts: mounts, ParseErrors: perrs,
		byDev: make(map[string][]*Mount)}
	for _, m := range mounts {
		s.byDev[m.Dev()] = append(s.byDev[m.Dev()], m)
	}

	var kf *kubeFiles
	for _, m := range mounts {
		m.Kube = parseKubePath(h.KubeletRoot, m.Mountpoint)
		if m.Kube == nil || !live {
			continue
		}
		if kf == nil {
			kf = openKubeFiles(h)
			defer kf.Close()
		}
		kf.enrich(m.Kube, h.KubeletRoot, m.Mountpoint)
	}
	return s, nil
}

// ByDev returns every mount of the filesystem (FUSE connection) dev, as
// "major:minor", in table order.
func (s *Snapshot) ByDev(dev string) []*Mount {
	return s.byDev[dev]
}
