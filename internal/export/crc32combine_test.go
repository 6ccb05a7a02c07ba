package export

import (
	"hash/crc32"
	"math/rand/v2"
	"testing"
)

// crc32Combine is zlib's crc32_combine for the IEEE polynomial: the CRC-32
// of A followed by B, from crc1 = CRC-32(A), crc2 = CRC-32(B) and len2 =
// len(B), in O(log len2) without reading either. A gzip member spliced from
// cached pieces takes its CRC from the pieces' CRCs this way instead of
// hashing the whole plain body on every response.
func crc32Combine(crc1, crc2 uint32, len2 int) uint32 {
	if len2 <= 0 {
		return crc1 // B is empty (and crc2, its CRC, 0)
	}
	return multModP(x2nModP(uint64(len2), 3), crc1) ^ crc2
}

// crc32Combine of the pieces' CRCs is the CRC-32 of their concatenation,
// for empty pieces, single bytes, and pieces past 2^k boundaries.
func TestCRC32Combine(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	lengths := []int{0, 1, 2, 3, 7, 8, 255, 256, 4096, 65535, 65536, 65537, 615729, 1 << 21}
	for _, la := range lengths {
		for _, lb := range lengths {
			a, b := make([]byte, la), make([]byte, lb)
			for i := range a {
				a[i] = byte(rng.Uint32())
			}
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			want := crc32.ChecksumIEEE(append(append([]byte{}, a...), b...))
			if got := crc32Combine(crc32.ChecksumIEEE(a), crc32.ChecksumIEEE(b), lb); got != want {
				t.Fatalf("len %d + %d: combined %08x, CRC-32 of the concatenation %08x", la, lb, got, want)
			}
		}
	}
	// Many pieces folded left, as a response is.
	var all []byte
	crc := uint32(0)
	for range 200 {
		p := make([]byte, rng.IntN(3000))
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		all = append(all, p...)
		crc = crc32Combine(crc, crc32.ChecksumIEEE(p), len(p))
	}
	if want := crc32.ChecksumIEEE(all); crc != want {
		t.Fatalf("200 pieces: combined %08x, CRC-32 of the whole %08x", crc, want)
	}
}
