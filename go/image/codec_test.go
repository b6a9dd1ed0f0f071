package image

import (
	"encoding/hex"
	"testing"
)

// TestDecompressBeforeStored: Unpack keeps a segment's stored bytes right
// after the room for its raw bytes, in one buffer.  A zstd decoder may
// write a little past the end of what it decoded so far, and takes raw
// literals straight from its input: with the input within reach of the
// output's capacity, it overwrote literals before it copied them.  This
// frame, from a real image, decoded wrong that way (the zstd command
// decodes it to the bytes its run's CRC names).
func TestDecompressBeforeStored(t *testing.T) {
	frame, err := hex.DecodeString("28b52ffd60000ffd00005800ff01ffffffffffffffff0600410905090206" +
		"61eff03a8b4b19bff19d10")
	if err != nil {
		t.Fatal(err)
	}
	const want = 0x47a9bddc
	s := &Segment{RawLen: PageSize, StoredLen: uint64(len(frame)), Codec: CodecZstd}
	// As Unpack laid it out before: the raw bytes, then the stored ones,
	// in a buffer a bigger segment left bigger.
	buf := make([]byte, 1<<20)
	b := grow(&buf, s.RawLen+s.StoredLen)
	raw, stored := b[:s.RawLen], b[s.RawLen:]
	copy(stored, frame)
	if err := s.decompress(raw, stored); err != nil {
		t.Fatal(err)
	}
	if got := Checksum(raw); got != want {
		t.Errorf("decoded page has CRC %#x, want %#x", got, want)
	}
}
