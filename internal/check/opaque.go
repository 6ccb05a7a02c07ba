package check

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/containerd"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/walk"
)

// OpaquePropagation is the ID of OpaquePropagationCheck.
const OpaquePropagation ID = "opaque_propagation"

var opaquePropagationDecl = Decl{
	ID: OpaquePropagation, Kind: ScanCheck, Needs: NeedsLive | NeedsRoot, Order: 50,
	MessageID:  "7aac74898c294e34ac64c74e85f8b140",
	Severities: []Severity{Critical, Warning},
	New: func(cfg *Config) Check {
		return &OpaquePropagationCheck{SnapshotRoot: cfg.SnapshotRoot, ContainerdRoot: cfg.ContainerdRoot,
			Limits: cfg.ScanLimits, FullPass: cfg.FullPass}
	},
}

func init() { Register(opaquePropagationDecl) }

// maxDirList bounds how many entries of one directory are read to count the
// entries an opaque marker hides.
const maxDirList = 100_000

// OpaquePropagationCheck finds the shape the overlay copy-up bug left
// (fixed in Linux 4.8, "ovl: don't copy up opaqueness"): the same directory
// opaque in a layer and in the layer directly below it. The upper marker
// hides the lower layer's entries; containers see only the top layer's files.
//
// It walks every layer that has a layer below it, under the walker's budget,
// reading the opaque xattr of each directory; one Run resumes where the last
// stopped. Findings are worked out on every Run from the opaque directories
// known so far (the last complete pass and the pass in progress), each one
// checked again on the live layers before it is reported.
//
// Each marker that hides a marker below it is then verified against the
// layer's own tar in containerd's content store (package containerd): a
// marker whose tar has <dir>/.wh..wh..opq is the image's intent and not
// reported; one whose tar has none is propagation (critical when it hides
// entries); one that cannot be verified (not a containerd snapshot, blob
// gone, no access) is a warning that says why.
//
// The zero value scans with no budget; set Limits for the daemon. A check
// value keeps its cursor between Runs: use one value per schedule.
type OpaquePropagationCheck struct {
	// SnapshotRoot resolves relative lowerdirs (default
	// DefaultContainerdSnapshots); its parent is the snapshotter's
	// directory, with metadata.db.
	SnapshotRoot string
	// ContainerdRoot is containerd's root, as the inspected namespace sees
	// it (default containerd.DefaultRoot): the content store and meta.db.
	ContainerdRoot string
	Limits         walk.ScanLimits
	// FullPass makes a Run that stops at its budget before the pass is
	// complete an error (--once).
	FullPass bool

	scanner
	roots   []layerRoot                // the pass's roots, as walker.roots
	known   map[string]map[string]bool // last complete pass: layer key -> opaque dirs
	pending map[string]map[string]bool // pass in progress
	users   map[string]string          // layer dir -> a mount using it, for errors
	ver     *containerd.Verifier       // remembers what layer blobs said
	notes   []string                   // overlays the last Run left out, and why
}

// layerRoot is a layer directory walked with one xattr prefix.
type layerRoot struct {
	dir, prefix string
}

func (r layerRoot) key() string { return r.prefix + "\x00" + r.dir }

// Decl implements Check.
func (*OpaquePropagationCheck) Decl() Decl { return opaquePropagationDecl }

// Run implements Check. Its notes are the overlays whose layers the
// inspected root cannot reach, which the run did not scan.
func (c *OpaquePropagationCheck) Run(ctx context.Context, env *Env) Outcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	found, err := c.run(ctx, env.Snapshot, env.Root)
	st := c.w.Stats
	return Outcome{Findings: found, Err: err, Notes: slices.Clone(c.notes), Scan: &st}
}

func (c *OpaquePropagationCheck) run(ctx context.Context, s *mounts.Snapshot, root *mounts.Root) ([]Finding, error) {
	c.w.Limits = c.Limits
	snapRoot := snapshotRoot(c.SnapshotRoot)

	chains, perrs := s.OverlayChains(snapRoot)
	errs := slices.Clone(perrs)
	trustedHidden := false
	for _, ch := range chains {
		trustedHidden = trustedHidden || !ch.UserXattr
	}
	if trustedHidden && !walk.TrustedXattrsVisible() {
		errs = append(errs, ErrNoTrustedXattrs)
	}
	if len(chains) == 0 && !c.w.InPass {
		c.w.Stats.Complete = true
		return nil, errors.Join(errs...)
	}

	if err := c.w.Begin(ctx, s, root); err != nil {
		return nil, errors.Join(append(errs, err)...)
	}
	defer c.w.End()
	chains, c.notes = c.reachableChains(chains)

	if c.known == nil {
		c.known = map[string]map[string]bool{}
	}
	newPass := func() []walk.Root {
		c.pending = map[string]map[string]bool{}
		c.roots = layerRoots(chains)
		c.users = map[string]string{}
		for _, ch := range chains {
			for _, l := range ch.Layers {
				if c.users[l.Dir] == "" {
					c.users[l.Dir] = fmt.Sprintf("%s (mount %d)", ch.Mount.Mountpoint, ch.Mount.ID)
				}
			}
		}
		out := make([]walk.Root, len(c.roots))
		for i, r := range c.roots {
			out[i] = walk.Root{Path: r.dir, InRoot: true}
		}
		return out
	}
	visit := func(e *walk.Entry) bool {
		if e.Typ != unix.DT_DIR {
			return false
		}
		r := c.roots[e.Root]
		if v, err := e.GetXattr(r.prefix + "opaque"); err == nil && string(v) == "y" {
			set := c.pending[r.key()]
			if set == nil {
				set = map[string]bool{}
				c.pending[r.key()] = set
			}
			set[e.Rel] = true
		}
		return true
	}
	completed, rootErrs, err := c.w.Run(newPass, visit)
	for _, re := range rootErrs {
		var r *walk.RootError
		if errors.As(re, &r) && r.Index < len(c.roots) {
			errs = append(errs, fmt.Errorf("overlay %s: layer %s not scanned: %w", c.users[c.roots[r.Index].dir], c.roots[r.Index].dir, r.Err))
			continue
		}
		errs = append(errs, re)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("opaque_propagation: scan stopped: %w", err))
	}
	if completed {
		c.known, c.pending = c.pending, nil
	} else if c.FullPass && err == nil {
		errs = append(errs, fmt.Errorf("%w (%d entries); raise --scan.once-budget", walk.ErrScanIncomplete, c.w.Done))
	}
	if err := c.w.TooDeepErr(); err != nil && c.FullPass {
		errs = append(errs, err)
	}

	if c.ver == nil {
		root := c.ContainerdRoot
		if root == "" {
			root = containerd.DefaultRoot
		}
		c.ver = containerd.NewVerifier(containerd.Config{
			Root:        s.Host.Path(root),
			Snapshotter: s.Host.Path(path.Dir(snapRoot)),
			MaxEntries:  int64(c.Limits.Budget),
		})
	}
	v := &verification{pass: c.ver.Pass(), snapRoot: snapRoot}
	defer v.pass.Close()
	var out []Finding
	for _, ch := range chains {
		found, err := c.chainFindings(ch, v)
		out = append(out, found...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// reachableChains drops the overlays whose layer directories cannot be
// reached from the inspected root, with a note for each. That is the root
// overlay of a node that is itself a container (nspawn, kind, k3d): its
// layers were named in the mount namespace that mounted it, outside this
// one, so the paths do not exist here or lead into the overlay itself.
// Such an overlay is not this node's to scan; a layer that is reachable but
// cannot be read stays an error of the walk.
func (c *OpaquePropagationCheck) reachableChains(chains []*mounts.OverlayChain) ([]*mounts.OverlayChain, []string) {
	var out []*mounts.OverlayChain
	var notes []string
	for _, ch := range chains {
		var why []string
		for _, l := range ch.Layers {
			if !path.IsAbs(l.Option) {
				continue // resolved against --path.containerd-snapshots: missing is a wrong setting, an error
			}
			if r := c.w.Unreachable(l.Dir, ch.Mount.ID); r != "" {
				why = append(why, r)
			}
		}
		if len(why) == 0 {
			out = append(out, ch)
			continue
		}
		notes = append(notes, fmt.Sprintf("overlay %s (mount %d) not scanned: its layers are not reachable from the inspected root (%s); "+
			"it was mounted from another mount namespace, as the root of a node that is itself a container is",
			ch.Mount.Mountpoint, ch.Mount.ID, strings.Join(why, "; ")))
	}
	return out, notes
}

// layerRoots are the layers to walk: every merged layer that has a layer
// below it, once per xattr prefix, in a stable order.
func layerRoots(chains []*mounts.OverlayChain) []layerRoot {
	seen := map[layerRoot]bool{}
	var out []layerRoot
	for _, ch := range chains {
		for i := 0; i+1 < len(ch.Layers); i++ {
			r := layerRoot{dir: ch.Layers[i].Dir, prefix: ch.XattrPrefix()}
			if !seen[r] {
				seen[r] = true
				out = append(out, r)
			}
		}
	}
	slices.SortFunc(out, func(a, b layerRoot) int { return strings.Compare(a.key(), b.key()) })
	return out
}

// opaqueDirs is what is known of a layer's opaque directories.
func (c *OpaquePropagationCheck) opaqueDirs(r layerRoot) []string {
	var out []string
	for d := range c.known[r.key()] {
		out = append(out, d)
	}
	for d := range c.pending[r.key()] {
		if !c.known[r.key()][d] {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out
}

// chainFindings reports each directory of ch opaque in a layer and in the
// layer directly below, checked on the live layers. One finding per
// directory: the topmost such pair, with the run of opaque layers below it.
func (c *OpaquePropagationCheck) chainFindings(ch *mounts.OverlayChain, v *verification) ([]Finding, error) {
	var (
		out  []Finding
		errs []error
		done = map[string]bool{}
	)
	prefix := ch.XattrPrefix()
	for i := 0; i+1 < len(ch.Layers); i++ {
		for _, dir := range c.opaqueDirs(layerRoot{dir: ch.Layers[i].Dir, prefix: prefix}) {
			if done[dir] {
				continue
			}
			f, ok, err := c.pairFinding(ch, i, dir, v)
			if err != nil {
				errs = append(errs, fmt.Errorf("overlay %s (mount %d): %s: %w", ch.Mount.Mountpoint, ch.Mount.ID, "/"+dir, err))
				continue
			}
			if ok {
				done[dir] = true
				out = append(out, f)
			}
		}
	}
	return out, errors.Join(errs...)
}

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
func (c *OpaquePropagationCheck) pairFinding(ch *mounts.OverlayChain, i int, dir string, v *verification) (Finding, bool, error) {
	prefix := ch.XattrPrefix()
	top, err := c.readLayerDir(ch.Layers[i].Dir, dir, prefix)
	if err != nil || !top.opaque {
		return Finding{}, false, err
	}
	below, err := c.readLayerDir(ch.Layers[i+1].Dir, dir, prefix)
	if err != nil || !below.opaque {
		return Finding{}, false, err
	}
	// The run of consecutive opaque layers from i down.
	run := []layerDir{top, below}
	for k := i + 2; k < len(ch.Layers); k++ {
		ld, err := c.readLayerDir(ch.Layers[k].Dir, dir, prefix)
		if err != nil {
			return Finding{}, false, err
		}
		if !ld.exists || !ld.opaque {
			break
		}
		run = append(run, ld)
	}
	// Each marker that hides a marker below it is suspect; the run's last
	// marker hides only non-opaque copies and is taken as real.
	res := make([]containerd.Result, len(run)-1)
	firstProp, firstUnver := -1, -1
	for m := range res {
		res[m] = v.verify(ch.Layers[i+m], dir)
		switch res[m].Verdict {
		case containerd.Propagated:
			if firstProp < 0 {
				firstProp = m
			}
		case containerd.Unverified:
			if firstUnver < 0 {
				firstUnver = m
			}
		}
	}
	if firstProp < 0 && firstUnver < 0 {
		return Finding{}, false, nil // every marker is the image's intent
	}
	// What the container would see were the markers what the image says:
	// layers contribute from the top down to the first marker that is not
	// propagated (unverified markers taken as propagated when nothing is
	// known to be, to say what is at stake). Everything in that but the
	// top layer's own entries is hidden.
	end := len(run) - 1
	for m := range res {
		if res[m].Verdict == containerd.Intended || (firstProp >= 0 && res[m].Verdict == containerd.Unverified) {
			end = m
			break
		}
	}
	seen := map[string]bool{}
	for _, d := range top.entries {
		seen[d.Name] = true
	}
	hidden, truncated := 0, top.truncated
	for _, ld := range run[1 : end+1] {
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
	sev := Warning
	if firstProp >= 0 && hidden > 0 {
		sev = Critical
	}
	image := ""
	if ch.Container != "" {
		image = v.pass.ContainerImage(ch.ContainerNamespace, ch.Container)
	}
	f := newFinding(OpaquePropagation, sev, ch.Mount, "")
	f.Path = "/" + dir
	f.Details = map[string]string{
		"directory":      "/" + dir,
		"upper_layer":    ch.Layers[i].Dir,
		"upper_role":     string(ch.Layers[i].Role),
		"lower_layer":    ch.Layers[i+1].Dir,
		"layer_index":    strconv.Itoa(i),
		"opaque_layers":  strconv.Itoa(len(run)),
		"hidden_entries": strconv.Itoa(hidden),
		"xattr":          prefix + "opaque",
	}
	if truncated {
		f.Details["hidden_entries"] += "+"
	}
	m := firstUnver
	if firstProp >= 0 {
		m = firstProp
		f.Details["verification"] = string(containerd.Propagated)
		f.Details["propagated_layer"] = ch.Layers[i+m].Dir
		f.Details["propagated_layers"] = strconv.Itoa(countVerdicts(res, containerd.Propagated))
	} else {
		f.Details["verification"] = string(containerd.Unverified)
		f.Details["unverified_layer"] = ch.Layers[i+m].Dir
		f.Details["unverified_reason"] = res[m].Reason
	}
	r := res[m]
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
	f.Message = opaqueMessage(ch, i, i+m, dir, hidden, r, image)
	return f, true, nil
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
