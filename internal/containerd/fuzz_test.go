package containerd

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// FuzzScanLayer feeds layer blobs (what containerd's content store holds,
// written by whoever built the image) to the tar scanner under a budget.
func FuzzScanLayer(f *testing.F) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range []string{"etc/", "etc/.wh..wh..opq", "etc/passwd", "usr/.wh.lib"} {
		_ = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg})
	}
	_ = tw.Close()
	f.Add(buf.Bytes())
	f.Add([]byte{0x1f, 0x8b, 0x08, 0x00})             // a gzip header, cut short
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x00}) // a zstd frame, cut short
	f.Fuzz(func(t *testing.T, data []byte) {
		b := &budget{maxEntries: 10_000, maxBytes: 8 << 20}
		s, err := scanLayer(bytes.NewReader(data), b)
		if err == nil && s == nil {
			t.Fatal("nil scan without an error")
		}
		if b.entries > b.maxEntries+1 {
			t.Fatalf("%d entries read, budget %d", b.entries, b.maxEntries)
		}
	})
}

// FuzzMetadataDB opens a (corrupt) copy of containerd's bbolt metadata the
// way a pass does (openCopyOf: the memfd copy) and reads the snapshots and images from it: a damaged
// file must be an error, never a crash of the daemon.
func FuzzMetadataDB(f *testing.F) {
	dir := f.TempDir()
	db, err := bolt.Open(filepath.Join(dir, "seed.db"), 0o600, nil)
	if err != nil {
		f.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		v1, err := tx.CreateBucketIfNotExists([]byte("v1"))
		if err != nil {
			return err
		}
		snaps, err := v1.CreateBucketIfNotExists([]byte("snapshots"))
		if err != nil {
			return err
		}
		s, err := snaps.CreateBucketIfNotExists([]byte("default/1/sha256:abc"))
		if err != nil {
			return err
		}
		return s.Put([]byte("kind"), []byte{3})
	})
	db.Close()
	if err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(filepath.Join(dir, "seed.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(seed[:4096])
	// The input goes to openCopyOf, the copy a pass makes after opening the
	// file: writing it to a temporary file per execution made this target
	// ten times slower under -fuzz than in a loop, because the fuzzer
	// removes each execution's t.TempDir at once, and ext4 spends that
	// time on inode and block churn (perf: recently_deleted,
	// find_get_block_common) and on flushing the rewritten file.
	f.Fuzz(func(t *testing.T, data []byte) {
		db, err := openCopyOf(bytes.NewReader(data), "meta.db")
		if err != nil {
			return
		}
		defer db.Close()
		_, _ = readSnapshots(db)
		_, _ = readMeta(db)
	})
}
