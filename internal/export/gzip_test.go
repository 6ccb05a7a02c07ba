package export

import (
	"bytes"
	"compress/gzip"
	"io"
	"math/rand/v2"
	"testing"
)

// A body spliced from stored and compressed segments, of every size class
// (empty, small, past a stored block's 65,535 bytes), is one valid gzip
// member of their concatenation: gzip checks its CRC-32 and size.
func TestGzipMemberOfMixedSegments(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	noise := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return b
	}
	var pieces []piece
	var want []byte
	for _, b := range [][]byte{nil, []byte("# HELP go_goroutines x\n"), bytes.Repeat([]byte("mountwatchd_problem{} 1\n"), 5000), noise(70000), noise(0xffff), []byte("# EOF\n")} {
		pieces = append(pieces, newPiece(true, b))
		pc := piece{plain: b}
		pc.crc, pc.shift = pieces[len(pieces)-1].crc, pieces[len(pieces)-1].shift
		pc.deflate = storedSegment(b) // the same bytes, stored whatever their size
		pieces = append(pieces, pc)
		want = append(want, b...)
		want = append(want, b...)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gzipMember(pieces)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("gunzipped %d bytes, want %d", len(got), len(want))
	}
}
