package containerd

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/mountwatchd/mountwatchd/internal/mounts"
)

// Paths under containerd's root.
const (
	DefaultRoot        = mounts.DefaultContainerdRoot
	OverlayfsDir       = mounts.ContainerdOverlayfsDir
	contentBlobsDir    = "io.containerd.content.v1.content/blobs"
	metaDBPath         = "io.containerd.metadata.v1.bolt/meta.db"
	snapshotterDBName  = "metadata.db"
	maxJSONBlobBytes   = 4 << 20
	maxCachedBlobScans = 512
)

// Defaults of Config's bounds.
const (
	DefaultMaxEntries = 5_000_000
	DefaultMaxBytes   = 8 << 30
)

// Verdict is what a layer's tar says of an opaque marker in its snapshot.
type Verdict string

// Verdicts.
const (
	// Intended: the layer tar has <dir>/.wh..wh..opq; the image replaces
	// the directory there.
	Intended Verdict = "intended"
	// Propagated: the layer tar has no opaque whiteout for the directory;
	// the marker did not come from the image.
	Propagated Verdict = "propagated"
	// Unverified: the layer could not be found or read; Reason says why.
	Unverified Verdict = "unverified"
)

// Result is the verdict on one snapshot directory's opaque marker, with
// what is known of the snapshot.
type Result struct {
	Verdict Verdict
	// Reason says why the marker could not be verified (Unverified only).
	Reason string
	// SnapshotID is the snapshot's directory name under snapshots/.
	SnapshotID string
	// Key is the snapshotter's key ("<ns>/<seq>/<name>"), Namespace its
	// containerd namespace, when the snapshot is in metadata.db.
	Key, Namespace string
	// Active is set for a writable snapshot: a container's upper layer,
	// which no image layer describes.
	Active bool
	// ChainID and DiffID identify the layer; Layer is the digest of the
	// blob that was read ("sha256:<hex>") and MediaType its media type as
	// the manifest gives it.
	ChainID, DiffID, Layer, MediaType string
	// Images are the images (names, sorted) whose manifests have this layer
	// at this place in their chain.
	Images []string
}

// Config says where containerd's files are, as this process reaches them
// (for another mount namespace, through /proc/<pid>/root).
type Config struct {
	// Root is containerd's root directory (DefaultRoot on most nodes).
	Root string
	// Snapshotter is the overlayfs snapshotter's directory, holding
	// metadata.db and snapshots/ (default Root/OverlayfsDir).
	Snapshotter string
	// MaxEntries and MaxBytes bound the tar entries and the (uncompressed)
	// layer bytes one Pass reads; 0 means DefaultMaxEntries and
	// DefaultMaxBytes. A layer that would pass them is Unverified.
	MaxEntries, MaxBytes int64
}

// Verifier verifies opaque markers against layer tars. It keeps what it
// learnt from each blob (blobs are immutable, named by digest) across
// passes, so a blob is read at most once per pass and usually once.
// It is safe for concurrent use.
type Verifier struct {
	cfg   Config
	mu    sync.Mutex
	scans map[string]*layerScan
}

// NewVerifier returns a Verifier of the containerd whose files cfg names.
func NewVerifier(cfg Config) *Verifier {
	if cfg.Root == "" {
		cfg.Root = DefaultRoot
	}
	if cfg.Snapshotter == "" {
		cfg.Snapshotter = path.Join(cfg.Root, OverlayfsDir)
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	return &Verifier{cfg: cfg, scans: map[string]*layerScan{}}
}

// Pass is one round of verification: containerd's metadata is read once,
// on the first Verify, and the pass's reads are counted against the
// Config's bounds. A Pass is not safe for concurrent use.
type Pass struct {
	v      *Verifier
	b      budget
	loaded bool
	err    error // why nothing can be verified in this pass

	snaps     map[string]snapshotInfo
	meta      *metaInfo
	metaErr   error
	chains    map[string][]layerRef // chain ID -> layers with it
	content   *os.Root
	BlobsRead int // blobs read in this pass
}

// layerRef is a layer blob at a place in an image's chain.
type layerRef struct {
	digest, mediaType, diffID, image string
}

// Pass starts a round of verification.
func (v *Verifier) Pass() *Pass {
	return &Pass{v: v, b: budget{maxEntries: v.cfg.MaxEntries, maxBytes: v.cfg.MaxBytes}}
}

// Close releases what the pass holds open.
func (p *Pass) Close() {
	if p.content != nil {
		_ = p.content.Close()
		p.content = nil
	}
}

// Entries and Bytes are what the pass read from layer tars.
func (p *Pass) Entries() int64 { return p.b.entries }

// Bytes is the uncompressed layer bytes the pass read.
func (p *Pass) Bytes() int64 { return p.b.bytes }

// SnapshotID returns N when layerDir is snapshotsDir/N/fs, the layout of
// containerd's overlayfs snapshotter; both are cleaned absolute paths.
func SnapshotID(snapshotsDir, layerDir string) (string, bool) {
	rel, ok := strings.CutPrefix(layerDir, strings.TrimSuffix(snapshotsDir, "/")+"/")
	if !ok {
		return "", false
	}
	id, fsDir, ok := strings.Cut(rel, "/")
	if !ok || fsDir != "fs" || id == "" || strings.Trim(id, "0123456789") != "" {
		return "", false
	}
	return id, true
}

func (p *Pass) load() {
	if p.loaded {
		return
	}
	p.loaded = true
	cfg := p.v.cfg
	sroot, err := os.OpenRoot(cfg.Snapshotter)
	if err != nil {
		p.err = fmt.Errorf("containerd's overlayfs snapshotter directory is not readable: %w", err)
		return
	}
	defer sroot.Close()
	db, err := openCopy(sroot, snapshotterDBName)
	if err != nil {
		p.err = fmt.Errorf("snapshotter metadata %s: %w", path.Join(cfg.Snapshotter, snapshotterDBName), err)
		return
	}
	p.snaps, err = readSnapshots(db)
	_ = db.Close()
	if err != nil {
		p.err = fmt.Errorf("snapshotter metadata %s: %w", path.Join(cfg.Snapshotter, snapshotterDBName), err)
		return
	}
	if p.content, err = os.OpenRoot(cfg.Root); err != nil {
		p.err = fmt.Errorf("containerd root is not readable: %w", err)
		return
	}
	if mdb, err := openCopy(p.content, metaDBPath); err != nil {
		p.metaErr = fmt.Errorf("containerd metadata %s: %w", path.Join(cfg.Root, metaDBPath), err)
	} else {
		p.meta, p.metaErr = readMeta(mdb)
		_ = mdb.Close()
	}
	if p.meta == nil {
		p.meta = &metaInfo{containers: map[string]string{}, diffBlobs: map[string][]string{}}
	}
	p.chains = map[string][]layerRef{}
	for _, img := range p.meta.images {
		p.addImage(img, img.target, 0)
	}
}

// descriptor is an OCI (or Docker schema 2) descriptor, manifest or index.
type descriptor struct {
	MediaType string       `json:"mediaType"`
	Digest    string       `json:"digest"`
	Config    *descriptor  `json:"config"`
	Layers    []descriptor `json:"layers"`
	Manifests []descriptor `json:"manifests"`
	RootFS    struct {
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// addImage follows an image's target (an index or a manifest) to its
// layers and records each layer's chain ID. Manifests of other platforms
// are usually not in the content store: they are skipped.
func (p *Pass) addImage(img imageRecord, digest string, depth int) {
	var d descriptor
	if depth > 2 || p.readJSON(digest, &d) != nil {
		return
	}
	for _, m := range d.Manifests {
		p.addImage(img, m.Digest, depth+1)
	}
	if d.Config == nil || len(d.Layers) == 0 {
		return
	}
	var cfg descriptor
	if p.readJSON(d.Config.Digest, &cfg) != nil || len(cfg.RootFS.DiffIDs) != len(d.Layers) {
		return
	}
	chain := ""
	for i, diff := range cfg.RootFS.DiffIDs {
		chain = chainID(chain, diff)
		p.chains[chain] = append(p.chains[chain], layerRef{digest: d.Layers[i].Digest, mediaType: d.Layers[i].MediaType, diffID: diff, image: img.name})
	}
}

// chainID is the OCI chain ID of a layer with diffID on parent ("" for the
// bottom layer, whose chain ID is its diff ID).
func chainID(parent, diffID string) string {
	if parent == "" {
		return diffID
	}
	sum := sha256.Sum256([]byte(parent + " " + diffID))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// blobPath is a content store blob's path under the root, or "" for a
// digest that is not sha256:<64 hex>.
func blobPath(digest string) string {
	h, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
		return ""
	}
	return path.Join(contentBlobsDir, "sha256", h)
}

func (p *Pass) readJSON(digest string, v any) error {
	bp := blobPath(digest)
	if bp == "" {
		return fmt.Errorf("bad digest %q", digest)
	}
	f, err := p.content.Open(bp)
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxJSONBlobBytes))
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// ContainerImage is the image of container id in containerd namespace ns,
// from meta.db, or "" when unknown. Call it after Verify.
func (p *Pass) ContainerImage(ns, id string) string {
	if p.meta == nil {
		return ""
	}
	return p.meta.containers[ns+"/"+id]
}

// Verify says whether the opaque marker on directory dir (relative to the
// layer root, "usr/lib/x") of snapshot snapshotID comes from that layer's
// tar.
func (p *Pass) Verify(snapshotID, dir string) Result {
	p.load()
	r := Result{SnapshotID: snapshotID, Verdict: Unverified}
	if p.err != nil {
		r.Reason = p.err.Error()
		return r
	}
	s, ok := p.snaps[snapshotID]
	if !ok {
		r.Reason = fmt.Sprintf("snapshot %s is not in containerd's snapshotter metadata (removed, or made by something else)", snapshotID)
		return r
	}
	r.Key, r.Namespace = s.key, s.namespace()
	switch {
	case s.kind == kindActive || s.kind == kindView:
		r.Active = true
		r.Reason = fmt.Sprintf("snapshot %s (%s) is a writable or view snapshot, not an image layer: no layer tar describes it", snapshotID, s.key)
		return r
	case s.kind != kindCommitted || !isDigest(s.name()):
		r.Reason = fmt.Sprintf("snapshot %s (%s) is not named by a chain ID: not an image layer", snapshotID, s.key)
		return r
	}
	r.ChainID = s.name()
	refs := p.refs(s)
	if len(refs) == 0 {
		r.Reason = fmt.Sprintf("no image in containerd's content store has the layer with chain ID %s (the image was removed, or its manifest garbage-collected)", r.ChainID)
		if p.metaErr != nil {
			r.Reason += "; " + p.metaErr.Error()
		}
		return r
	}
	r.DiffID = refs[0].diffID
	for _, ref := range refs {
		if ref.image != "" && !slices.Contains(r.Images, ref.image) {
			r.Images = append(r.Images, ref.image)
		}
	}
	slices.Sort(r.Images)
	var missing, failed []string
	for _, ref := range refs {
		if slices.Contains(missing, ref.digest) || slices.Contains(failed, ref.digest) {
			continue
		}
		ls, err := p.scan(ref.digest)
		if errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, ref.digest)
			continue
		}
		if err != nil {
			failed = append(failed, ref.digest)
			r.Layer, r.MediaType = ref.digest, ref.mediaType
			r.Reason = fmt.Sprintf("layer blob %s could not be read: %v", ref.digest, err)
			if errors.Is(err, ErrBudget) {
				return r // the next pass has a new budget
			}
			continue
		}
		r.Layer, r.MediaType, r.Reason = ref.digest, ref.mediaType, ""
		r.Verdict = Propagated
		if ls.opaque[dir] {
			r.Verdict = Intended
		}
		return r
	}
	if r.Reason == "" {
		r.Layer = missing[0]
		r.Reason = fmt.Sprintf("layer blob %s is not in containerd's content store (garbage-collected after unpacking, or discard_unpacked_layers)", strings.Join(missing, ", "))
	}
	return r
}

// refs are the layer blobs that can stand for snapshot s: from the images'
// manifests, else from the content store's uncompressed labels.
func (p *Pass) refs(s snapshotInfo) []layerRef {
	chain := s.name()
	if refs := p.chains[chain]; len(refs) > 0 {
		return refs
	}
	parent := keyName(s.parent)
	var out []layerRef
	for diff, blobs := range p.meta.diffBlobs {
		if chainID(parent, diff) != chain {
			continue
		}
		for _, b := range blobs {
			out = append(out, layerRef{digest: b, diffID: diff})
		}
	}
	slices.SortFunc(out, func(a, b layerRef) int { return strings.Compare(a.digest, b.digest) })
	return out
}

func isDigest(s string) bool { return blobPath(s) != "" }

// scan reads a layer blob once: later passes reuse what it said.
func (p *Pass) scan(digest string) (*layerScan, error) {
	v := p.v
	v.mu.Lock()
	ls := v.scans[digest]
	v.mu.Unlock()
	if ls != nil {
		return ls, nil
	}
	bp := blobPath(digest)
	if bp == "" {
		return nil, fmt.Errorf("bad digest %q", digest)
	}
	f, err := p.content.Open(bp)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p.BlobsRead++
	ls, err = scanLayer(f, &p.b)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	if len(v.scans) >= maxCachedBlobScans {
		clear(v.scans)
	}
	v.scans[digest] = ls
	v.mu.Unlock()
	return ls, nil
}
