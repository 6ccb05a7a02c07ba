package export

// The CRC-32 arithmetic of zlib's crc32_combine for the IEEE polynomial:
// gzip.go combines the cached pieces' CRCs with it instead of hashing the
// whole plain body on every response (crc32combine_test.go has the
// function itself, which the tests check against hash/crc32).

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
