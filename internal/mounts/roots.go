package mounts

// KubeletRoots are the kubelet roots whose mounts s reads as kubelet's:
// its layout's (Host.KubeletRoot first, then every other root the table
// shows kubelet mounts under, unless a flag gave the root), or
// Host.KubeletRoot alone for a snapshot built without a layout.
func (s *Snapshot) KubeletRoots() []string {
	if len(s.Layout.KubeletRoots) > 0 {
		return s.Layout.KubeletRoots
	}
	return []string{s.Host.WithDefaults().KubeletRoot}
}

// KubeletRootOf returns the first of s's kubelet roots that p, an
// absolute clean path of the inspected namespace, is below.
func (s *Snapshot) KubeletRootOf(p string) (string, bool) { return kubeletRootOf(s.KubeletRoots(), p) }

func kubeletRootOf(roots []string, p string) (string, bool) {
	for _, r := range roots {
		if _, ok := kubeletRel(r, p); ok {
			return r, true
		}
	}
	return "", false
}
