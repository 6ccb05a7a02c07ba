package export

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

// crcPoly is the reflected IEEE polynomial (hash/crc32.IEEE).
const crcPoly = 0xedb88320

// multModP is a(x)·b(x) mod p(x), bit-reflected (bit 31 is x^0); a must
// not be 0 (no power of x is).
func multModP(a, b uint32) uint32 {
	var p uint32
	for m := uint32(1) << 31; ; m >>= 1 {
		if a&m != 0 {
			p ^= b
			if a&(m-1) == 0 {
				return p
			}
		}
		if b&1 != 0 {
			b = b>>1 ^ crcPoly
		} else {
			b >>= 1
		}
	}
}

// x2nTable[k] is x^(2^k) mod p(x).
var x2nTable = func() (t [32]uint32) {
	p := uint32(1) << 30 // x^1
	for k := range t {
		t[k] = p
		p = multModP(p, p)
	}
	return t
}()

// x2nModP is x^(n·2^k) mod p(x): appending n bytes (k = 3) multiplies a
// CRC by x^(8n).
func x2nModP(n uint64, k uint) uint32 {
	p := uint32(1) << 31 // x^0
	for ; n != 0; n >>= 1 {
		if n&1 != 0 {
			p = multModP(x2nTable[k&31], p)
		}
		k++
	}
	return p
}
