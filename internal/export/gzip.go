package export

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"hash/crc32"
	"strconv"
	"strings"
	"sync"
)

// This file is the gzip of /metrics: every piece of a body is an
// independent DEFLATE segment made once, and a response is one gzip member
// spliced from them, its CRC-32 combined from the pieces' own.

// storedBelow is the size under which a piece is stored, not compressed:
// a compressed block's Huffman tables cost tens of microseconds to build,
// more than the bytes saved on the few small live runs (the build info, the
// dropped counter) are worth.
const storedBelow = 1 << 10

var flatePools = map[int]*sync.Pool{}

func init() {
	for _, level := range []int{flate.DefaultCompression, flate.BestSpeed, flate.NoCompression} {
		flatePools[level] = &sync.Pool{New: func() any {
			w, _ := flate.NewWriter(nil, level)
			return w
		}}
	}
}

func newPiece(gzip bool, level int, b []byte) piece {
	pc := piece{plain: b}
	if gzip {
		pc.crc, pc.shift = crc32.ChecksumIEEE(b), x2nModP(uint64(len(b)), 3)
		if len(b) < storedBelow {
			level = flate.NoCompression
		}
		pc.deflate = deflateSegment(level, b)
	}
	return pc
}

// deflateSegment compresses b as a DEFLATE segment that decodes on its own
// and ends on a byte boundary without a final block.
func deflateSegment(level int, b []byte) []byte {
	var buf bytes.Buffer
	w := flatePools[level].Get().(*flate.Writer)
	w.Reset(&buf)
	_, _ = w.Write(b)
	_ = w.Flush()
	flatePools[level].Put(w)
	return buf.Bytes()
}

var (
	// gzipHeader is RFC 1952's member header: no name, no time, OS unknown.
	gzipHeader = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}
	// deflateEnd is an empty final block.
	deflateEnd = func() []byte {
		var buf bytes.Buffer
		w, _ := flate.NewWriter(&buf, flate.BestSpeed)
		_ = w.Close()
		return buf.Bytes()
	}()
)

// acceptsGzip reports whether an Accept-Encoding header allows gzip (by
// name or by *, with a q above 0).
func acceptsGzip(h string) bool {
	star := false
	for part := range strings.SplitSeq(h, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		q := 1.0
		if k, v, ok := strings.Cut(strings.TrimSpace(params), "="); ok && strings.TrimSpace(k) == "q" {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				q = f
			}
		}
		switch coding {
		case "gzip", "x-gzip":
			return q > 0
		case "*":
			star = q > 0
		}
	}
	return star
}

// gzipMember is one gzip member of the pieces' DEFLATE segments, in one
// slice: header, segments, an empty final block, and the CRC-32 (combined
// from the pieces' own) and size of the plain body.
func gzipMember(pieces []piece) []byte {
	crc, size, n := uint32(0), 0, len(gzipHeader)+len(deflateEnd)+8
	for _, pc := range pieces {
		crc = multModP(pc.shift, crc) ^ pc.crc // crc32Combine
		size += len(pc.plain)
		n += len(pc.deflate)
	}
	body := make([]byte, 0, n)
	body = append(body, gzipHeader...)
	for _, pc := range pieces {
		body = append(body, pc.deflate...)
	}
	body = append(body, deflateEnd...)
	body = binary.LittleEndian.AppendUint32(body, crc)
	return binary.LittleEndian.AppendUint32(body, uint32(size))
}
