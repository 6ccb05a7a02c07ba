// Package containerd answers one question from containerd's own files on a
// node: does the layer behind an overlayfs snapshot directory carry an
// opaque whiteout (<dir>/.wh..wh..opq) for a directory? If it does, the
// directory's trusted.overlay.opaque marker in that snapshot is the image's
// intent; if it does not, the marker came from elsewhere (the overlay
// copy-up bug of Linux < 4.8 under containerd <= 1.2, or a tool that copied
// overlay xattrs).
//
// It only reads: copies of the snapshotter's metadata.db and containerd's
// meta.db (bbolt files containerd holds an exclusive lock on; the copies are
// in memory and never wait on the lock), image manifests and configs in the
// content store, and layer blobs, streamed (gzip, zstd or plain tar) and
// never unpacked. The way from a snapshot to its blob:
//
//	snapshots/<N>  -> metadata.db: snapshot with id N, key "<ns>/<seq>/<chainID>"
//	chainID        -> image config rootfs.diff_ids: chainID(i) = sha256(chainID(i-1) + " " + diffID(i))
//	diffID(i)      -> manifest layers[i].digest, a blob in io.containerd.content.v1.content/blobs
//
// and, when no image record names the chain any more, the content store's
// containerd.io/uncompressed labels (blob -> diff ID) with the snapshot's
// parent chain.
//
// Do not use it for anything containerd's API can answer: it exists for a
// node agent that must not depend on containerd answering, and it knows only
// the overlayfs snapshotter's layout.
package containerd
