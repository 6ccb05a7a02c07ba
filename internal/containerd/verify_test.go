package containerd

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	bolt "go.etcd.io/bbolt"
)

// fixture is a containerd root laid out as containerd 1.6 lays it out (the
// bucket and key names were read from a real one), written by the test.
type fixture struct {
	t    *testing.T
	root string
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, root: t.TempDir()}
	for _, d := range []string{contentBlobsDir + "/sha256", filepath.Dir(metaDBPath), OverlayfsDir + "/snapshots"} {
		if err := os.MkdirAll(filepath.Join(f.root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func digestOf(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

// blob stores b in the content store and returns its digest.
func (f *fixture) blob(b []byte) string {
	d := digestOf(b)
	if err := os.WriteFile(filepath.Join(f.root, blobPath(d)), b, 0o444); err != nil {
		f.t.Fatal(err)
	}
	return d
}

// tarOf is an uncompressed tar of the names (a trailing "/" makes a
// directory).
func tarOf(t *testing.T, names ...string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		h := &tar.Header{Name: n, Mode: 0o644, Typeflag: tar.TypeReg}
		if strings.HasSuffix(n, "/") {
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, _ = w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zst(t *testing.T, b []byte) []byte {
	w, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	return w.EncodeAll(b, nil)
}

// layer is one layer of a fixture image: its uncompressed tar and the blob
// stored for it.
type layer struct {
	tar, blob []byte
	mediaType string
}

// image stores the layers, a config and a manifest, and returns the
// manifest digest, the layer blob digests and the chain IDs.
func (f *fixture) image(layers ...layer) (manifest string, blobs, chains []string) {
	var diffs []string
	var descs []map[string]any
	chain := ""
	for _, l := range layers {
		d := f.blob(l.blob)
		blobs = append(blobs, d)
		diffs = append(diffs, digestOf(l.tar))
		chain = chainID(chain, digestOf(l.tar))
		chains = append(chains, chain)
		descs = append(descs, map[string]any{"mediaType": l.mediaType, "digest": d, "size": len(l.blob)})
	}
	cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffs}})
	m, _ := json.Marshal(map[string]any{"schemaVersion": 2,
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": f.blob(cfg), "size": len(cfg)},
		"layers": descs})
	return f.blob(m), blobs, chains
}

// bolt writes a bbolt file at rel with the buckets fill makes.
func (f *fixture) bolt(rel string, fill func(tx *bolt.Tx) error) {
	db, err := bolt.Open(filepath.Join(f.root, rel), 0o600, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fill); err != nil {
		f.t.Fatal(err)
	}
}

func uvarint(n uint64) []byte { return binary.AppendUvarint(nil, n) }

func mkBuckets(tx *bolt.Tx, path ...string) *bolt.Bucket {
	b, err := tx.CreateBucketIfNotExists([]byte(path[0]))
	if err != nil {
		panic(err)
	}
	for _, p := range path[1:] {
		if b, err = b.CreateBucketIfNotExists([]byte(p)); err != nil {
			panic(err)
		}
	}
	return b
}

// snapshots writes the snapshotter's metadata.db: snapshot id i+1 is
// committed with key "default/<seq>/<chains[i]>" on the one before;
// active adds a writable snapshot on the last.
func (f *fixture) snapshots(chains []string, active string) {
	f.bolt(OverlayfsDir+"/"+snapshotterDBName, func(tx *bolt.Tx) error {
		parent := ""
		for i, c := range chains {
			key := fmt.Sprintf("default/%d/%s", 2*i+2, c)
			b := mkBuckets(tx, "v1", "snapshots", key)
			_ = b.Put([]byte("id"), uvarint(uint64(i+1)))
			_ = b.Put([]byte("kind"), uvarint(kindCommitted))
			if parent != "" {
				_ = b.Put([]byte("parent"), []byte(parent))
			}
			parent = key
		}
		if active != "" {
			b := mkBuckets(tx, "v1", "snapshots", "default/99/"+active)
			_ = b.Put([]byte("id"), uvarint(uint64(len(chains)+1)))
			_ = b.Put([]byte("kind"), uvarint(kindActive))
			_ = b.Put([]byte("parent"), []byte(parent))
		}
		return nil
	})
}

// meta writes meta.db: the images (name -> manifest digest), a container
// of the first image, and the uncompressed labels of blobs.
func (f *fixture) meta(images map[string]string, labels map[string]string) {
	f.bolt(metaDBPath, func(tx *bolt.Tx) error {
		for name, target := range images {
			b := mkBuckets(tx, "v1", "default", "images", name, "target")
			_ = b.Put([]byte("digest"), []byte(target))
			_ = b.Put([]byte("mediatype"), []byte("application/vnd.oci.image.manifest.v1+json"))
			c := mkBuckets(tx, "v1", "default", "containers", "c1")
			_ = c.Put([]byte("image"), []byte(name))
		}
		for blob, diff := range labels {
			b := mkBuckets(tx, "v1", "default", "content", "blob", blob, "labels")
			_ = b.Put([]byte("containerd.io/uncompressed"), []byte(diff))
		}
		return nil
	})
}

const (
	gzipType = "application/vnd.oci.image.layer.v1.tar+gzip"
	zstdType = "application/vnd.oci.image.layer.v1.tar+zstd"
	tarType  = "application/vnd.oci.image.layer.v1.tar"
)

// The three layers of the image, gzip, zstd and plain: layers 2 and
// 3 replace data/modules (opaque whiteout), layer 4 adds a file to it
// without one.
func testImage(t *testing.T, f *fixture) (manifest string, blobs, chains []string) {
	l1 := tarOf(t, "data/", "data/modules/", "data/modules/a")
	l2 := tarOf(t, "data/modules/", "data/modules/.wh..wh..opq", "data/modules/b")
	l3 := tarOf(t, "./data/modules/", "./data/modules/.wh..wh..opq", "./data/modules/c")
	l4 := tarOf(t, "data/modules/", "data/modules/d", "etc/.wh..wh..opq")
	return f.image(layer{l1, gz(t, l1), gzipType}, layer{l2, zst(t, l2), zstdType},
		layer{l3, l3, tarType}, layer{l4, gz(t, l4), gzipType})
}

func TestVerify(t *testing.T) {
	f := newFixture(t)
	mdigest, blobs, chains := testImage(t, f)
	f.image() // an image without layers is ignored
	f.snapshots(chains, "c1")
	f.meta(map[string]string{"localhost/modules:1": mdigest}, nil)

	p := NewVerifier(Config{Root: f.root}).Pass()
	defer p.Close()
	for _, c := range []struct {
		id, dir string
		want    Verdict
		layer   int
	}{
		{"2", "data/modules", Intended, 1}, // zstd
		{"3", "data/modules", Intended, 2}, // plain tar, "./" names
		{"4", "data/modules", Propagated, 3},
		{"4", "etc", Intended, 3},
		{"1", "data/modules", Propagated, 0}, // gzip, no whiteout
		{"2", "data", Propagated, 1},
	} {
		r := p.Verify(c.id, c.dir)
		if r.Verdict != c.want || r.Layer != blobs[c.layer] || r.ChainID != chains[c.layer] || r.SnapshotID != c.id ||
			len(r.Images) != 1 || r.Images[0] != "localhost/modules:1" || r.Namespace != "default" {
			t.Errorf("snapshot %s %s: %+v, want %s of layer %s", c.id, c.dir, r, c.want, blobs[c.layer])
		}
	}
	if p.BlobsRead != 4 {
		t.Errorf("read %d blobs for 4 layers: a blob was read twice in a pass", p.BlobsRead)
	}
	if got := p.ContainerImage("default", "c1"); got != "localhost/modules:1" {
		t.Errorf("container image %q", got)
	}
	r := p.Verify("5", "data/modules")
	if r.Verdict != Unverified || !r.Active || !strings.Contains(r.Reason, "writable") {
		t.Errorf("active snapshot: %+v", r)
	}
	r = p.Verify("77", "data/modules")
	if r.Verdict != Unverified || !strings.Contains(r.Reason, "snapshot 77 is not in") {
		t.Errorf("unknown snapshot: %+v", r)
	}

	// A later pass reuses what the blobs said: blobs are immutable.
	p2 := NewVerifier(Config{Root: f.root}).Pass()
	defer p2.Close()
	v := p.v
	p3 := v.Pass()
	defer p3.Close()
	if r := p3.Verify("4", "data/modules"); r.Verdict != Propagated || p3.BlobsRead != 0 {
		t.Errorf("second pass: %+v, read %d blobs", r, p3.BlobsRead)
	}

	// The blob garbage-collected: unverified, naming the blob and why.
	if err := os.Remove(filepath.Join(f.root, blobPath(blobs[3]))); err != nil {
		t.Fatal(err)
	}
	r = p2.Verify("4", "data/modules")
	if r.Verdict != Unverified || r.Layer != blobs[3] || !strings.Contains(r.Reason, "not in containerd's content store") ||
		!strings.Contains(r.Reason, blobs[3]) {
		t.Errorf("missing blob: %+v", r)
	}
}

// Without an image record (removed from meta.db, its blobs not yet
// collected), the uncompressed labels of the content store and the
// snapshot's parent chain still lead to the blob.
func TestVerifyByUncompressedLabel(t *testing.T) {
	f := newFixture(t)
	_, blobs, chains := testImage(t, f)
	f.snapshots(chains, "")
	labels := map[string]string{}
	for i, l := range [][]string{{"data/", "data/modules/", "data/modules/a"}} {
		labels[blobs[i]] = digestOf(tarOf(t, l...))
	}
	l2 := tarOf(t, "data/modules/", "data/modules/.wh..wh..opq", "data/modules/b")
	labels[blobs[1]] = digestOf(l2)
	f.meta(nil, labels)
	p := NewVerifier(Config{Root: f.root}).Pass()
	defer p.Close()
	if r := p.Verify("2", "data/modules"); r.Verdict != Intended || r.Layer != blobs[1] || len(r.Images) != 0 {
		t.Errorf("%+v", r)
	}
	if r := p.Verify("3", "data/modules"); r.Verdict != Unverified || !strings.Contains(r.Reason, "no image in containerd's content store has the layer with chain ID "+chains[2]) {
		t.Errorf("%+v", r)
	}
}

// containerd holds an exclusive flock on its bolt files: the verifier
// reads copies and does not wait for the lock.
func TestVerifyWhileContainerdHoldsTheLock(t *testing.T) {
	f := newFixture(t)
	_, _, chains := testImage(t, f)
	f.snapshots(chains, "")
	f.meta(nil, nil)
	for _, rel := range []string{OverlayfsDir + "/" + snapshotterDBName, metaDBPath} {
		db, err := bolt.Open(filepath.Join(f.root, rel), 0o600, nil) // LOCK_EX, as containerd
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
	}
	p := NewVerifier(Config{Root: f.root}).Pass()
	defer p.Close()
	if r := p.Verify("1", "data/modules"); r.Key == "" || r.Verdict != Unverified || !strings.Contains(r.Reason, "no image") {
		t.Errorf("%+v", r)
	}
}

// The bounds of a pass: a layer that would take more entries than are left
// is unverified, saying so; the next pass has a new budget.
func TestVerifyBudget(t *testing.T) {
	f := newFixture(t)
	var names []string
	for i := range 50 {
		names = append(names, fmt.Sprintf("f%d", i))
	}
	big := tarOf(t, append(names, "data/modules/.wh..wh..opq")...)
	m, blobs, chains := f.image(layer{big, gz(t, big), gzipType})
	f.snapshots(chains, "")
	f.meta(map[string]string{"big:1": m}, nil)
	v := NewVerifier(Config{Root: f.root, MaxEntries: 20})
	p := v.Pass()
	defer p.Close()
	r := p.Verify("1", "data/modules")
	if r.Verdict != Unverified || r.Layer != blobs[0] || !strings.Contains(r.Reason, "more than 20 tar entries") {
		t.Errorf("%+v", r)
	}
	v = NewVerifier(Config{Root: f.root, MaxEntries: 100})
	p = v.Pass()
	defer p.Close()
	if r := p.Verify("1", "data/modules"); r.Verdict != Intended || p.Entries() != 51 {
		t.Errorf("%+v, %d entries", r, p.Entries())
	}
}

// What cannot be read is unverified with the reason: no containerd root, a
// root without the overlayfs snapshotter, a corrupt blob.
func TestVerifyUnreadable(t *testing.T) {
	r := NewVerifier(Config{Root: filepath.Join(t.TempDir(), "none")}).Pass().Verify("1", "x")
	if r.Verdict != Unverified || !strings.Contains(r.Reason, "snapshotter directory is not readable") {
		t.Errorf("%+v", r)
	}
	f := newFixture(t)
	bad := []byte("\x1f\x8b not gzip")
	l := tarOf(t, "x/.wh..wh..opq")
	m, blobs, chains := f.image(layer{l, bad, gzipType})
	f.snapshots(chains, "")
	f.meta(map[string]string{"bad:1": m}, nil)
	p := NewVerifier(Config{Root: f.root}).Pass()
	defer p.Close()
	r = p.Verify("1", "x")
	if r.Verdict != Unverified || r.Layer != blobs[0] || !strings.Contains(r.Reason, "could not be read: gzip") {
		t.Errorf("%+v", r)
	}
}

func TestSnapshotID(t *testing.T) {
	const root = "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots"
	for dir, want := range map[string]string{
		root + "/12/fs":      "12",
		root + "/12/work":    "",
		root + "/12/fs/x":    "",
		root + "/x/fs":       "",
		root + "/../1/fs":    "",
		"/elsewhere/1/fs":    "",
		root + "s/1/fs":      "",
		root + "/1/fs/":      "",
		root + "/007/fs":     "007",
		"/tmp/overlay/lower": "",
	} {
		got, ok := SnapshotID(root, dir)
		if got != want || ok != (want != "") {
			t.Errorf("SnapshotID(%s) = %q %v, want %q", dir, got, ok, want)
		}
	}
}
