package containerd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// maxDBBytes bounds the copy of one bbolt file.
const maxDBBytes = 1 << 30

// errCorruptDB is wrapped when reading a bolt file faulted or panicked.
var errCorruptDB = errors.New("corrupt bolt database")

// guarded runs fn, which reads a memory-mapped bolt copy, with memory faults
// turned into panics and any panic into an error. bbolt trusts its file: a
// page number past the end of a torn copy (taken while containerd wrote),
// or a corrupt one, is a SIGBUS in the mapping, which would otherwise bring
// the whole daemon down (found by FuzzMetadataDB).
func guarded(what string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %s: %v", errCorruptDB, what, p)
		}
	}()
	return fn()
}

// openCopy opens a read-only bbolt database on an in-memory copy (a memfd)
// of name under root: containerd holds an exclusive flock on its bolt files
// while it runs, so opening the file itself would wait for the lock.
func openCopy(root *os.Root, name string) (*bolt.DB, error) {
	src, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	return openCopyOf(src, name)
}

// openCopyOf is openCopy of the bytes src yields, name naming them in
// errors. FuzzMetadataDB feeds it directly: an input written to a file and
// removed per execution spends most of its time in the disk filesystem
// (ext4's inode and block churn), not in bbolt.
func openCopyOf(src io.Reader, name string) (*bolt.DB, error) {
	fd, err := unix.MemfdCreate("mountwatchd-bolt-copy", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:"+name)
	n, err := io.Copy(f, io.LimitReader(src, maxDBBytes+1))
	if err == nil && n > maxDBBytes {
		err = fmt.Errorf("larger than %d bytes", maxDBBytes)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("copy %s: %w", name, err)
	}
	used := false
	var db *bolt.DB
	err = guarded(name, func() (err error) {
		db, err = bolt.Open(f.Name(), 0, &bolt.Options{
			ReadOnly: true,
			Timeout:  time.Second, // the copy is ours alone: never contended
			OpenFile: func(string, int, os.FileMode) (*os.File, error) {
				if used {
					return nil, errors.New("bolt opened the copy twice")
				}
				used = true
				return f, nil
			},
		})
		return err
	})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return db, nil
}

// snapshot kinds, as the snapshotter stores them.
const (
	kindView      = 1
	kindActive    = 2
	kindCommitted = 3
)

// snapshotInfo is one snapshot of the snapshotter's metadata.db.
type snapshotInfo struct {
	key, parent string // "<ns>/<seq>/<name>"
	kind        uint64
}

func (s snapshotInfo) namespace() string { ns, _, _ := strings.Cut(s.key, "/"); return ns }

// name is the key's last part: the chain ID of a committed image layer.
func (s snapshotInfo) name() string { return keyName(s.key) }

func keyName(key string) string {
	if p := strings.SplitN(key, "/", 3); len(p) == 3 {
		return p[2]
	}
	return ""
}

// readSnapshots reads v1/snapshots/<key>/{id,kind,parent} of the
// overlayfs snapshotter's metadata.db: snapshot id (the directory name under
// snapshots/) to snapshot.
func readSnapshots(db *bolt.DB) (map[string]snapshotInfo, error) {
	out := map[string]snapshotInfo{}
	err := guarded("metadata.db", func() error {
		return db.View(func(tx *bolt.Tx) error {
			v1 := tx.Bucket([]byte("v1"))
			if v1 == nil {
				return errors.New("no v1 bucket")
			}
			snaps := v1.Bucket([]byte("snapshots"))
			if snaps == nil {
				return nil // no snapshot yet
			}
			return snaps.ForEach(func(k, v []byte) error {
				b := snaps.Bucket(k)
				if v != nil || b == nil {
					return nil
				}
				id, n := binary.Uvarint(b.Get([]byte("id")))
				if n <= 0 {
					return nil
				}
				kind, _ := binary.Uvarint(b.Get([]byte("kind")))
				out[strconv.FormatUint(id, 10)] = snapshotInfo{key: string(k), parent: string(b.Get([]byte("parent"))), kind: kind}
				return nil
			})
		})
	})
	return out, err
}

// metaInfo is what containerd's meta.db says that the verification uses.
type metaInfo struct {
	images     []imageRecord
	containers map[string]string   // "<ns>/<id>" -> image name
	diffBlobs  map[string][]string // diff ID -> blobs labelled containerd.io/uncompressed with it
}

type imageRecord struct {
	ns, name, target string
}

// readMeta reads v1/<ns>/{images,containers,content/blob} of meta.db.
func readMeta(db *bolt.DB) (*metaInfo, error) {
	mi := &metaInfo{containers: map[string]string{}, diffBlobs: map[string][]string{}}
	err := guarded("meta.db", func() error {
		return db.View(func(tx *bolt.Tx) error {
			v1 := tx.Bucket([]byte("v1"))
			if v1 == nil {
				return errors.New("no v1 bucket")
			}
			return v1.ForEach(func(ns, v []byte) error {
				nsb := v1.Bucket(ns)
				if v != nil || nsb == nil {
					return nil
				}
				if imgs := nsb.Bucket([]byte("images")); imgs != nil {
					_ = imgs.ForEach(func(name, _ []byte) error {
						if t := bucket(imgs, name, "target"); t != nil {
							mi.images = append(mi.images, imageRecord{ns: string(ns), name: string(name), target: string(t.Get([]byte("digest")))})
						}
						return nil
					})
				}
				if cs := nsb.Bucket([]byte("containers")); cs != nil {
					_ = cs.ForEach(func(id, _ []byte) error {
						if b := cs.Bucket(id); b != nil {
							mi.containers[string(ns)+"/"+string(id)] = string(b.Get([]byte("image")))
						}
						return nil
					})
				}
				if blobs := bucket(nsb, []byte("content"), "blob"); blobs != nil {
					_ = blobs.ForEach(func(dgst, _ []byte) error {
						if l := bucket(blobs, dgst, "labels"); l != nil {
							if d := string(l.Get([]byte("containerd.io/uncompressed"))); d != "" {
								mi.diffBlobs[d] = append(mi.diffBlobs[d], string(dgst))
							}
						}
						return nil
					})
				}
				return nil
			})
		})
	})
	return mi, err
}

func bucket(b *bolt.Bucket, name []byte, sub string) *bolt.Bucket {
	if c := b.Bucket(name); c != nil {
		return c.Bucket([]byte(sub))
	}
	return nil
}
