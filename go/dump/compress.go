package dump

import (
	"io"

	"github.com/ckpt/ckpt/go/image"
)

// Compressed images (--compress, CKPT_COMPRESS=1): each chunk of page data
// that image.Writer appends becomes one image.Segment.  Chunks are
// compressed on several goroutines at once and written by asyncFile's
// writer in the order they came, back to back from image.DataStart, so the
// reader of the snapshot child never waits for a compressor unless every
// buffer is taken.

// zjob is one chunk on its way through a compressor.
type zjob struct {
	p      []byte // the chunk, in a buffer from asyncFile.get
	off    uint64 // its offset among the runs' data
	stored []byte // what to write: compressed, or p itself
	codec  image.Codec
	crc    uint32
	ready  chan struct{} // closed when stored is set
}

// startCompressors starts n compressing goroutines and enough output
// buffers for every chunk that can be in flight (one per input buffer):
// buffer(i) is the i-th.
func (f *asyncFile) startCompressors(n, inFlight int, buffer func(i int) []byte) {
	f.zjobs = make(chan *zjob, inFlight)
	f.zout = make(chan []byte, inFlight)
	for i := 0; i < inFlight; i++ {
		f.zout <- buffer(i)
	}
	f.segsEnd = image.DataStart
	for i := 0; i < n; i++ {
		go func() {
			for z := range f.zjobs {
				out := <-f.zout
				if c, ok := image.Compress(out[:0], z.p); ok {
					z.stored, z.codec = c, image.CodecZstd
				} else {
					f.zout <- out
					z.stored, z.codec = z.p, image.CodecNone
				}
				z.crc = image.Checksum(z.stored)
				close(z.ready)
			}
		}()
	}
}

// writeSegment runs on the writer goroutine: it waits for the chunk's
// compressor and writes the result after the segments before it.
func (f *asyncFile) writeSegment(z *zjob) {
	<-z.ready
	if z.codec != image.CodecNone {
		defer func() { f.zout <- z.stored[:0] }()
	}
	if f.failed() != nil {
		return
	}
	if err := pwriteFull(f.fd, z.stored, int64(f.segsEnd)); err != nil {
		f.fail(err)
		return
	}
	f.segs = append(f.segs, image.Segment{Off: z.off, RawLen: uint64(len(z.p)), FileOff: f.segsEnd,
		StoredLen: uint64(len(z.stored)), Codec: z.codec, CRC: z.crc})
	f.segsEnd += uint64(len(z.stored))
	f.wrote(int64(f.segsEnd))
}

// segmentWriter is the io.WriterAt image.Writer appends page data to when
// compressing.
type segmentWriter struct{ f *asyncFile }

// WriteAt queues p, whose runs name offset off, for compression.  Like
// asyncFile.WriteAt, it keeps p until the writer is done with it.
func (s segmentWriter) WriteAt(p []byte, off int64) (int, error) {
	f := s.f
	if err := f.failed(); err != nil {
		return 0, err
	}
	z := &zjob{p: p, off: uint64(off), ready: make(chan struct{})}
	f.zjobs <- z
	f.ops <- asyncOp{z: z}
	return len(p), nil
}

// segments returns the segments written so far, once every queued write is
// done, and the first error if any.
func (f *asyncFile) segments() ([]image.Segment, error) {
	err := f.flush()
	return f.segs, err
}

var _ io.WriterAt = segmentWriter{}
