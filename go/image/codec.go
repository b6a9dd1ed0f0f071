package image

import (
	"sync"
	"unsafe"

	"github.com/klauspost/compress/zstd"
)

// Codec says how a Segment's bytes are stored.
type Codec uint8

const (
	CodecNone Codec = iota // as they are
	CodecZstd              // one zstd frame
	codecCount
)

var codecNames = [...]string{"none", "zstd"}

func (c Codec) String() string {
	if c < codecCount {
		return codecNames[c]
	}
	return "unknown"
}

// Segment is a stretch of page data as the file stores it: the data that
// runs find at offsets [Off, Off+RawLen) (their FileOff) is kept at FileOff
// as StoredLen bytes encoded with Codec.  An image without segments stores
// every run's data at its FileOff as it is.
type Segment struct {
	Off       uint64 // where its data starts among the runs' offsets
	RawLen    uint64
	FileOff   uint64
	StoredLen uint64
	Codec     Codec
	CRC       uint32 // CRC32C of the stored bytes
}

// zstd encoders and decoders hold megabytes of tables: keep them for reuse
// across images, one per goroutine using them at a time.
var (
	encoders sync.Pool
	decoders sync.Pool
)

// Compress returns p as a zstd frame appended to dst at zstd's default
// level (3), and false if that would not be smaller than p.  The fastest
// level is barely faster here and leaves images a little larger than gzip
// -6 makes them.
func Compress(dst, p []byte) ([]byte, bool) {
	enc, _ := encoders.Get().(*zstd.Encoder)
	if enc == nil {
		var err error
		// Entropy-code literals even where no match is found: memory
		// full of small numbers or text has few matches but shrinks by a
		// third or more that way (at a third of the speed on such data;
		// random data still goes at about 600 MB/s per CPU).
		enc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false),
			zstd.WithWindowSize(1<<20), zstd.WithAllLitEntropyCompression(true))
		if err != nil {
			return dst, false
		}
	}
	out := enc.EncodeAll(p, dst)
	encoders.Put(enc)
	if len(out)-len(dst) >= len(p) {
		return dst, false
	}
	return out, true
}

// decodeSlack is room after a segment's raw bytes that the zstd decoder may
// write past what it decoded so far (its compressedBlockOverAlloc), which
// lets it take its fast paths.
const decodeSlack = 64

// decompress decodes the segment's stored bytes into raw, which is exactly
// RawLen bytes long.  The decoder may write into raw's capacity beyond
// RawLen, and takes raw literals straight from stored: a capacity that
// reaches stored would overwrite them before they are copied, so raw's is
// cut to RawLen then (the decoder allocates what it wants instead).
func (s *Segment) decompress(raw, stored []byte) error {
	switch s.Codec {
	case CodecNone:
		copy(raw, stored)
		return nil
	case CodecZstd:
		dec, _ := decoders.Get().(*zstd.Decoder)
		if dec == nil {
			var err error
			dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1),
				zstd.WithDecoderMaxMemory(MaxSegmentLen), zstd.WithDecoderMaxWindow(MaxSegmentLen))
			if err != nil {
				return err
			}
		}
		dst := raw[:0]
		if reaches(raw, stored) {
			dst = raw[:0:len(raw)]
		}
		out, err := dec.DecodeAll(stored, dst)
		decoders.Put(dec)
		if err != nil {
			return corrupt("segment at file offset %#x: %v", s.FileOff, err)
		}
		if len(out) != len(raw) {
			return corrupt("segment at file offset %#x holds %d bytes, not %d", s.FileOff, len(out), len(raw))
		}
		if &out[0] != &raw[0] {
			copy(raw, out)
		}
		return nil
	}
	return corrupt("segment at file offset %#x has unknown codec %d", s.FileOff, s.Codec)
}

// reaches reports whether b's capacity (from its start) overlaps c.
func reaches(b, c []byte) bool {
	if cap(b) == 0 || len(c) == 0 {
		return false
	}
	bs := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	cs := uintptr(unsafe.Pointer(unsafe.SliceData(c)))
	return bs < cs+uintptr(len(c)) && cs < bs+uintptr(cap(b))
}
