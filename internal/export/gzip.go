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

// flateWriters are the DEFLATE writers of the pieces, reused: one holds
// about 0.8 MiB, the most of anything the daemon keeps between scrapes, so
// there is one level (flate.DefaultCompression, the smallest writer of
// those that compress: BestSpeed's holds 1.2 MiB), and small pieces are
// stored without a writer.
var flateWriters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, flate.DefaultCompression)
	return w
}}

// newPiece is b as a piece of a body: compressed, unless it is smaller
// than storedBelow.
func newPiece(gzip bool, b []byte) piece { return makePiece(gzip, b, len(b) < storedBelow) }

// livePiece is a piece of live families, made for one response: stored,
// not compressed. They are a few KiB (the Go runtime's and the process's
// metrics), and compressing them is the one cost a response's build has
// that scrapes waiting for it would queue behind.
func livePiece(gzip bool, b []byte) piece { return makePiece(gzip, b, true) }

func makePiece(gzip bool, b []byte, stored bool) piece {
	pc := piece{plain: b}
	if gzip {
		pc.crc, pc.shift = crc32.ChecksumIEEE(b), x2nModP(uint64(len(b)), 3)
		if stored {
			pc.deflate = storedSegment(b)
		} else {
			pc.deflate = deflateSegment(b)
		}
	}
	return pc
}

// deflateSegment compresses b as a DEFLATE segment that decodes on its own
// and ends on a byte boundary without a final block.
func deflateSegment(b []byte) []byte {
	var buf bytes.Buffer
	w := flateWriters.Get().(*flate.Writer)
	w.Reset(&buf)
	_, _ = w.Write(b)
	_ = w.Flush()
	flateWriters.Put(w)
	return buf.Bytes()
}

// storedSegment is b as DEFLATE stored blocks (RFC 1951 3.2.4), not final:
// each a header byte (BFINAL 0, BTYPE 00, padded to the byte boundary the
// previous segment ended on), LEN and NLEN, and up to 65,535 bytes.
func storedSegment(b []byte) []byte {
	out := make([]byte, 0, len(b)+5*(len(b)/0xffff+1))
	for {
		n := min(len(b), 0xffff)
		out = append(out, 0)
		out = binary.LittleEndian.AppendUint16(out, uint16(n))
		out = binary.LittleEndian.AppendUint16(out, ^uint16(n))
		out = append(out, b[:n]...)
		if b = b[n:]; len(b) == 0 {
			return out
		}
	}
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
