package image

// A run of an incremental image can take pages from a parent without their
// bytes being read again (the kernel saw no write to them), so its CRC must
// be built from the pages' own CRCs.  CRC32C is linear: appending n bytes
// to a message multiplies its CRC register by x^(8n) modulo the polynomial,
// a fixed 32x32 bit matrix for n = PageSize (zlib's crc32_combine).

// ChecksumAppendPage returns the Checksum of the bytes crc is the Checksum
// of followed by one page whose Checksum is page: what ChecksumUpdate gives
// for the same bytes.
func ChecksumAppendPage(crc, page uint32) uint32 {
	t := &pageShift
	return t[0][byte(crc)] ^ t[1][byte(crc>>8)] ^ t[2][byte(crc>>16)] ^ t[3][crc>>24] ^ page
}

// pageShift appends PageSize zero bytes to a CRC register, byte by byte of
// the register: pageShift[k][b] is the image of b<<(8k).
var pageShift = byteTables(zeroShift(PageSize))

func byteTables(m [32]uint32) (t [4][256]uint32) {
	for k := range t {
		for b := range t[k] {
			t[k][b] = gf2Times(&m, uint32(b)<<(8*k))
		}
	}
	return t
}

// zeroShift returns the matrix that appends n zero bytes, by squaring the
// one-zero-bit operator: column i is the image of bit i.
func zeroShift(n uint64) [32]uint32 {
	var odd, even [32]uint32
	odd[0] = 0x82f63b78 // CRC32C, reflected
	for i, row := 1, uint32(1); i < 32; i, row = i+1, row<<1 {
		odd[i] = row
	}
	gf2Square(&even, &odd) // two zero bits
	gf2Square(&odd, &even) // four
	var shift [32]uint32
	for i := range shift {
		shift[i] = 1 << i // identity
	}
	apply := func(m *[32]uint32) {
		for i := range shift {
			shift[i] = gf2Times(m, shift[i])
		}
	}
	// The first squaring below gives one zero byte (eight bits).
	for {
		gf2Square(&even, &odd)
		if n&1 != 0 {
			apply(&even)
		}
		if n >>= 1; n == 0 {
			break
		}
		gf2Square(&odd, &even)
		if n&1 != 0 {
			apply(&odd)
		}
		if n >>= 1; n == 0 {
			break
		}
	}
	return shift
}

func gf2Times(m *[32]uint32, v uint32) uint32 {
	var sum uint32
	for i := 0; v != 0; i, v = i+1, v>>1 {
		if v&1 != 0 {
			sum ^= m[i]
		}
	}
	return sum
}

func gf2Square(sq, m *[32]uint32) {
	for i := range sq {
		sq[i] = gf2Times(m, m[i])
	}
}
