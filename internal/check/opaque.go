package check

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/mountwatchd/mountwatchd/internal/containerd"
	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/mounts"
	"github.com/mountwatchd/mountwatchd/internal/walk"
)

// OpaquePropagation is the ID of OpaquePropagationCheck.
const OpaquePropagation finding.ID = "opaque_propagation"

var opaquePropagationDecl = Decl{
	ID: OpaquePropagation, Kind: finding.ScanCheck, Needs: NeedsLive | NeedsRoot, Order: 50,
	MessageID:  "7aac74898c294e34ac64c74e85f8b140",
	Severities: []finding.Severity{finding.Critical, finding.Warning},
	New: func(cfg *Config) Check {
		// Its SnapshotRoot and ContainerdRoot are left to each
		// snapshot's layout, which the flags decide when given.
		return &OpaquePropagationCheck{Limits: cfg.ScanLimits, FullPass: cfg.Once}
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
	verKey  string                     // the containerd root and snapshots directory ver reads
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
	s := env.Snapshot
	snapRoot := snapshotRoot(c.SnapshotRoot, s)
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
		st := c.w.Stats
		return Outcome{Err: errors.Join(errs...), Notes: slices.Clone(c.notes), Scan: &st}
	}
	if c.known == nil {
		c.known = map[string]map[string]bool{}
	}
	out := c.scan(ctx, env, scanPass{
		id: OpaquePropagation, limits: c.Limits, fullPass: c.FullPass, errs: errs,
		prepare: func() { chains, c.notes = c.reachableChains(chains) },
		roots:   func() []walk.Root { return c.newPass(chains) },
		visit:   c.visit,
		rootErr: func(r *walk.RootError) error {
			if r.Index >= len(c.roots) {
				return r
			}
			l := c.roots[r.Index].dir
			return fmt.Errorf("overlay %s: layer %s not scanned: %w", c.users[l], l, r.Err)
		},
		passDone: func() { c.known, c.pending = c.pending, nil },
		findings: func() ([]finding.Finding, error) { return c.findings(s, snapRoot, chains) },
	})
	out.Notes = slices.Clone(c.notes)
	return out
}

// newPass starts a pass over the layers of chains.
func (c *OpaquePropagationCheck) newPass(chains []*mounts.OverlayChain) []walk.Root {
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

// visit records the opaque directories of a layer.
func (c *OpaquePropagationCheck) visit(e *walk.Entry) bool {
	if e.Typ != unix.DT_DIR {
		return false
	}
	r := c.roots[e.Root]
	if v, err := e.GetXattr(r.prefix + "opaque"); err == nil && string(v) == "y" {
		c.hits.Lock()
		defer c.hits.Unlock()
		set := c.pending[r.key()]
		if set == nil {
			set = map[string]bool{}
			c.pending[r.key()] = set
		}
		set[e.Rel] = true
	}
	return true
}

// findings checks every pair of opaque layers known so far on the live
// layers and against their layer tars.
func (c *OpaquePropagationCheck) findings(s *mounts.Snapshot, snapRoot string, chains []*mounts.OverlayChain) ([]finding.Finding, error) {
	ctrRoot := c.ContainerdRoot
	if ctrRoot == "" {
		ctrRoot = cmp.Or(s.Host.ContainerdRoot, containerd.DefaultRoot)
	}
	if c.ver == nil || c.verKey != ctrRoot+"\x00"+snapRoot { // the layout found may change
		c.verKey = ctrRoot + "\x00" + snapRoot
		c.ver = containerd.NewVerifier(containerd.Config{
			Root:        s.Host.FS().Path(ctrRoot),
			Snapshotter: s.Host.FS().Path(path.Dir(snapRoot)),
			MaxEntries:  int64(c.Limits.Budget),
		})
	}
	v := &verification{pass: c.ver.Pass(), snapRoot: snapRoot}
	defer v.pass.Close()
	var (
		out  []finding.Finding
		errs []error
	)
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
func (c *OpaquePropagationCheck) chainFindings(ch *mounts.OverlayChain, v *verification) ([]finding.Finding, error) {
	var (
		out  []finding.Finding
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
