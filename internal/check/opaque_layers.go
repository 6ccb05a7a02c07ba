package check

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/containerd"
	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/walk"
)

// What opaque_propagation reads of a pair of layers on the live system, and
// what it makes of it.

// layerDir is one layer's copy of a directory, read live.
type layerDir struct {
	exists, opaque bool
	entries        []walk.Dirent
	whiteout       map[string]bool
	truncated      bool
}

func (c *OpaquePropagationCheck) readLayerDir(layer, rel, prefix string) (layerDir, error) {
	var ld layerDir
	fd, err := c.w.OpenRel(walk.Root{Path: layer, InRoot: true}, rel)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		return ld, nil // not a directory in this layer
	}
	if err != nil {
		return ld, err
	}
	defer unix.Close(fd)
	ld.exists = true
	mnt, err := walk.MountID(fd)
	if err != nil {
		return ld, err
	}
	// The directory's own marker, read like every other xattr: through the
	// walker's guard and its syscall fallback.
	if v, err := c.w.Entry(fd, mnt, ".", unix.DT_DIR).GetXattr(prefix + "opaque"); err == nil && string(v) == "y" {
		ld.opaque = true
	}
	ld.entries, err = walk.ReadDir(fd, maxDirList)
	if err != nil {
		return ld, err
	}
	ld.truncated = len(ld.entries) >= maxDirList
	ld.whiteout = map[string]bool{}
	for _, d := range ld.entries {
		if isWhiteout(c.w.Entry(fd, mnt, d.Name, d.Typ), prefix) {
			ld.whiteout[d.Name] = true
		}
	}
	return ld, nil
}

// isWhiteout: a 0/0 character device, or (kernel 6.7+) a file carrying the
// overlay whiteout xattr.
func isWhiteout(e *walk.Entry, prefix string) bool {
	switch e.Typ {
	case unix.DT_CHR:
		if e.Guard() != nil {
			return false
		}
		var st unix.Statx_t
		err := unix.Statx(e.Dirfd, e.Name, unix.AT_SYMLINK_NOFOLLOW|unix.AT_STATX_DONT_SYNC, unix.STATX_TYPE, &st)
		return err == nil && st.Rdev_major == 0 && st.Rdev_minor == 0
	case unix.DT_REG:
		v, err := e.GetXattr(prefix + "whiteout")
		return err == nil && v != nil
	}
	return false
}

// verification is one Run's verification of markers against layer tars.
type verification struct {
	pass     *containerd.Pass
	snapRoot string
}

// verify says whether layer l's opaque marker on dir is its image's intent.
func (v *verification) verify(l mounts.Layer, dir string) containerd.Result {
	id, ok := containerd.SnapshotID(v.snapRoot, l.Dir)
	switch {
	case l.Role == mounts.UpperLayer && copyUpKeepsOpaque():
		return containerd.Result{SnapshotID: id, Verdict: containerd.Unverified, Active: true,
			Reason: "it is the mount's writable upper layer, which no image layer describes, and this kernel (before 4.8) copies opaque markers up"}
	case l.Role == mounts.UpperLayer:
		// Overlay marks a directory opaque in the upper layer when the
		// container removes and recreates it through the mount, which is
		// what the container asked for; since Linux 4.8 ("ovl: don't copy
		// up opaqueness") the kernel never puts a marker there otherwise.
		return containerd.Result{SnapshotID: id, Verdict: containerd.Intended, Active: true,
			Reason: "it is the mount's writable upper layer: the container removed and recreated the directory"}
	case !ok:
		return containerd.Result{Verdict: containerd.Unverified,
			Reason: fmt.Sprintf("%s is not a snapshot of containerd's overlayfs snapshotter (%s/<id>/fs), so there is no image layer to check it against", l.Dir, v.snapRoot)}
	}
	return v.pass.Verify(id, dir)
}

// pairFinding checks layers i and i+1 of ch at dir on the live system, and
// the run of opaque layers below, against their layer tars.
func (c *OpaquePropagationCheck) pairFinding(ch *mounts.OverlayChain, i int, dir string, v *verification) (finding.Finding, bool, error) {
	run, err := c.opaqueRun(ch, i, dir)
	if err != nil || run == nil {
		return finding.Finding{}, false, err
	}
	p := &opaquePair{ch: ch, i: i, dir: dir, run: run}
	p.verify(v)
	if p.firstProp < 0 && p.firstUnver < 0 {
		return finding.Finding{}, false, nil // every marker is the image's intent
	}
	return p.finding(v), true, nil
}

// opaqueRun reads dir in layer i and the layers below it: the run of
// consecutive layers where it is opaque, from i down; nil when dir is not
// opaque in both i and i+1.
func (c *OpaquePropagationCheck) opaqueRun(ch *mounts.OverlayChain, i int, dir string) ([]layerDir, error) {
	prefix := ch.XattrPrefix()
	top, err := c.readLayerDir(ch.Layers[i].Dir, dir, prefix)
	if err != nil || !top.opaque {
		return nil, err
	}
	below, err := c.readLayerDir(ch.Layers[i+1].Dir, dir, prefix)
	if err != nil || !below.opaque {
		return nil, err
	}
	run := []layerDir{top, below}
	for k := i + 2; k < len(ch.Layers); k++ {
		ld, err := c.readLayerDir(ch.Layers[k].Dir, dir, prefix)
		if err != nil {
			return nil, err
		}
		if !ld.exists || !ld.opaque {
			break
		}
		run = append(run, ld)
	}
	return run, nil
}

// opaquePair is a directory opaque in layer i of ch and in the layers of
// run below it, with each marker's verdict.
type opaquePair struct {
	ch  *mounts.OverlayChain
	i   int
	dir string
	run []layerDir
	// res is the verdict on each marker that hides a marker below it; the
	// run's last marker hides only non-opaque copies and is taken as real.
	res                   []containerd.Result
	firstProp, firstUnver int // first propagated and unverified marker; -1: none
}

func (p *opaquePair) verify(v *verification) {
	p.res = make([]containerd.Result, len(p.run)-1)
	p.firstProp, p.firstUnver = -1, -1
	for m := range p.res {
		p.res[m] = v.verify(p.ch.Layers[p.i+m], p.dir)
		switch p.res[m].Verdict {
		case containerd.Propagated:
			if p.firstProp < 0 {
				p.firstProp = m
			}
		case containerd.Unverified:
			if p.firstUnver < 0 {
				p.firstUnver = m
			}
		}
	}
}

// hidden is what the container would not see were the markers what the
// image says: layers contribute from the top down to the first marker that
// is not propagated (unverified markers taken as propagated when nothing is
// known to be, to say what is at stake). Everything in that but the top
// layer's own entries is hidden; truncated when a directory had more
// entries than were read.
func (p *opaquePair) hidden() (hidden int, truncated bool) {
	end := len(p.run) - 1
	for m := range p.res {
		if p.res[m].Verdict == containerd.Intended || (p.firstProp >= 0 && p.res[m].Verdict == containerd.Unverified) {
			end = m
			break
		}
	}
	top := p.run[0]
	seen := map[string]bool{}
	for _, d := range top.entries {
		seen[d.Name] = true
	}
	truncated = top.truncated
	for _, ld := range p.run[1 : end+1] {
		truncated = truncated || ld.truncated
		for _, d := range ld.entries {
			if seen[d.Name] {
				continue
			}
			seen[d.Name] = true
			if !ld.whiteout[d.Name] {
				hidden++
			}
		}
	}
	return hidden, truncated
}

// finding is the pair's finding: critical when a propagated marker hides
// entries, a warning otherwise.
func (p *opaquePair) finding(v *verification) finding.Finding {
	ch, i := p.ch, p.i
	hidden, truncated := p.hidden()
	sev := finding.Warning
	if p.firstProp >= 0 && hidden > 0 {
		sev = finding.Critical
	}
	image := ""
	if ch.Container != "" {
		image = v.pass.ContainerImage(ch.ContainerNamespace, ch.Container)
	}
	f := newFinding(OpaquePropagation, sev, ch.Mount, "")
	f.Path = "/" + p.dir
	f.Directory = path.Join(ch.Mount.Mountpoint, p.dir)
	f.Details = map[string]string{
		"directory":      "/" + p.dir,
		"upper_layer":    ch.Layers[i].Dir,
		"upper_role":     string(ch.Layers[i].Role),
		"lower_layer":    ch.Layers[i+1].Dir,
		"layer_index":    strconv.Itoa(i),
		"opaque_layers":  strconv.Itoa(len(p.run)),
		"hidden_entries": strconv.Itoa(hidden),
		"xattr":          ch.XattrPrefix() + "opaque",
	}
	if truncated {
		f.Details["hidden_entries"] += "+"
	}
	m := p.verdictDetails(f.Details)
	r := p.res[m]
	for k, val := range map[string]string{"layer_digest": r.Layer, "snapshot_id": r.SnapshotID, "chain_id": r.ChainID} {
		if val != "" {
			f.Details[k] = val
		}
	}
	if image == "" {
		image = strings.Join(r.Images, ",")
	}
	if image != "" {
		f.Details["image"] = image
	}
	if ch.Container != "" {
		f.Details["container"] = ch.Container
		f.Details["container_namespace"] = ch.ContainerNamespace
	}
	f.Message = opaqueMessage(ch, i, i+m, p.dir, hidden, r, image)
	return f
}

// verdictDetails records the verdict the finding names (the first
// propagated marker, else the first unverified one) and returns its index
// in res.
func (p *opaquePair) verdictDetails(d map[string]string) int {
	if m := p.firstProp; m >= 0 {
		d["verification"] = string(containerd.Propagated)
		d["propagated_layer"] = p.ch.Layers[p.i+m].Dir
		d["propagated_layers"] = strconv.Itoa(countVerdicts(p.res, containerd.Propagated))
		return m
	}
	m := p.firstUnver
	d["verification"] = string(containerd.Unverified)
	d["unverified_layer"] = p.ch.Layers[p.i+m].Dir
	d["unverified_reason"] = p.res[m].Reason
	return m
}

func countVerdicts(rs []containerd.Result, v containerd.Verdict) int {
	n := 0
	for _, r := range rs {
		if r.Verdict == v {
			n++
		}
	}
	return n
}

// opaqueMessage explains a finding; m is the layer the verdict names.
func opaqueMessage(ch *mounts.OverlayChain, i, m int, dir string, hidden int, r containerd.Result, image string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Directory /%s is opaque (%sopaque=y) in layer %s and in the layer below it, %s",
		dir, ch.XattrPrefix(), ch.Layers[i].Dir, ch.Layers[i+1].Dir)
	if image != "" {
		fmt.Fprintf(&b, " (image %s)", image)
	}
	b.WriteString(". ")
	who := "this overlay shows"
	if ch.Container != "" {
		who = "container " + ch.Container + " sees"
	}
	if r.Verdict != containerd.Propagated {
		fmt.Fprintf(&b, "The marker in %s could not be verified against its image layer: %s. ", ch.Layers[m].Dir, r.Reason)
		if hidden > 0 {
			fmt.Fprintf(&b, "If the image did not put it there, it hides %d entries of the lower layers. ", hidden)
		}
		b.WriteString("An image whose consecutive layers each replace the directory looks the same; " +
			"check that layer's tar for /" + dir + "/.wh..wh..opq (give mountwatchd read access to containerd's root to have it checked).")
		return b.String()
	}
	layer := r.Layer
	if layer == "" {
		layer = "its layer"
	}
	fmt.Fprintf(&b, "The marker in %s was not put there by the image: layer %s has no /%s/.wh..wh..opq. ", ch.Layers[m].Dir, layer, dir)
	if hidden > 0 {
		fmt.Fprintf(&b, "It hides %d entries the image puts there, so %s only the upper layers' files. ", hidden, who)
	} else {
		b.WriteString("It hides nothing here today, but it hides the layer below from every image built on that layer. ")
	}
	b.WriteString("This is the shape left by the overlay copy-up bug fixed in Linux 4.8 (containerd <= 1.2 unpacking " +
		"layers through an overlay mount) or by a tool that copied overlay xattrs between trees. " +
		"Fix: re-pull the image on a fixed node (remove the image and its snapshots first) or rebuild it; do not copy " + ch.XattrPrefix() + "* xattrs into layers.")
	return b.String()
}

// copyUpKeepsOpaque reports whether the running kernel is older than 4.8,
// whose overlay copied a directory's opaque marker up with the directory.
var copyUpKeepsOpaque = sync.OnceValue(func() bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	var major, minor int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor); err != nil {
		return false
	}
	return major < 4 || (major == 4 && minor < 8)
})
