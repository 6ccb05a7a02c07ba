package containerd

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// opaqueWhiteout is the OCI opaque whiteout's file name: its directory
// replaces the same directory of every lower layer.
const opaqueWhiteout = ".wh..wh..opq"

// ErrBudget is wrapped when a pass read as many tar entries or bytes as it
// may.
var ErrBudget = errors.New("verification budget spent")

// budget counts what a pass reads.
type budget struct {
	entries, bytes       int64
	maxEntries, maxBytes int64
}

func (b *budget) entry() error {
	b.entries++
	if b.maxEntries > 0 && b.entries > b.maxEntries {
		return fmt.Errorf("%w: more than %d tar entries read in this pass", ErrBudget, b.maxEntries)
	}
	return nil
}

// countingReader counts the bytes read against the budget.
type countingReader struct {
	r io.Reader
	b *budget
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.b.bytes += int64(n)
	if c.b.maxBytes > 0 && c.b.bytes > c.b.maxBytes {
		return n, fmt.Errorf("%w: more than %d layer bytes read in this pass", ErrBudget, c.b.maxBytes)
	}
	return n, err
}

// layerScan is what a layer tar says about opaque directories.
type layerScan struct {
	// opaque are the directories (relative, cleaned, "" for the root) with
	// an opaque whiteout entry.
	opaque  map[string]bool
	entries int64
}

// scanLayer streams a layer blob (gzip, zstd or plain tar, told apart by
// their magic numbers, so a wrong or missing media type does not matter)
// and collects its opaque whiteouts.
func scanLayer(r io.Reader, b *budget) (*layerScan, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, _ := br.Peek(4)
	var (
		src io.Reader = br
		err error
	)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		var gz *gzip.Reader
		if gz, err = gzip.NewReader(br); err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		defer gz.Close()
		src = gz
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		var zr *zstd.Decoder
		zr, err = zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxMemory(1<<30))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		src = zr
	}
	tr := tar.NewReader(&countingReader{r: src, b: b})
	ls := &layerScan{opaque: map[string]bool{}}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return ls, nil
		}
		if err != nil {
			return nil, fmt.Errorf("tar: %w", err)
		}
		ls.entries++
		if err := b.entry(); err != nil {
			return nil, err
		}
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if path.Base(name) == opaqueWhiteout {
			dir := path.Dir(name)
			if dir == "." {
				dir = ""
			}
			ls.opaque[dir] = true
		}
	}
}
