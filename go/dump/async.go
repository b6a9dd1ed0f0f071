package dump

import (
	"sync"

	"github.com/ckpt/ckpt/go/image"
	"golang.org/x/sys/unix"
)

// writebackEvery is how many bytes are written between requests to the
// kernel to start writing them to disk.  Without them nothing reaches the
// disk until the final fsync (a machine with lots of memory holds the whole
// image as dirty pages), so the disk would sit idle while pages are read
// and then do all its work at the end.
const writebackEvery = 32 << 20

// buffers is how many chunk buffers circulate between reading and writing
// when no compressor holds any: four, and two for each copier (copier.go),
// which holds one while it waits for another.
const buffers = 4 + 2*maxCopiers

// asyncFile writes to a descriptor on a goroutine of its own, so that
// reading the next pages from the snapshot child overlaps with writing
// these.  Its WriteAt keeps p until the write is done: callers take their
// buffers from get and hand them back with put once every write from them
// is queued.  Errors come back from a later WriteAt or from flush.
type asyncFile struct {
	fd     int
	direct int // fd opened for direct writes (direct.go), or -1
	ops    chan asyncOp
	free   chan []byte
	done   chan struct{}

	mu  sync.Mutex
	err error

	synced, end int64    // for wrote, on the writer goroutine
	gathered    [][]byte // gather's, kept
	released    [][]byte // gather's, kept

	// mem holds the buffers, in scratch memory (scratch.go): in the Go
	// heap, a precopy would copy them again each time they are written.
	mem []byte

	// With compression (see compress.go): the compressors' queue, their
	// output buffers, and what run has written so far.
	zjobs   chan *zjob
	zout    chan []byte
	segs    []image.Segment
	segsEnd uint64 // the file offset after the last segment
}

type asyncOp struct {
	p       []byte
	off     int64
	z       *zjob  // a segment to write once it is compressed
	release []byte // a buffer to put back in the pool, after the writes before it
	flush   chan error
}

// newAsyncFile starts the writer.  With compressors > 0, page data
// written through segments() is compressed on that many goroutines.  With
// buffered, every write goes through the page cache (see direct.go).
func newAsyncFile(fd int, bufSize int, compressors int, buffered bool) *asyncFile {
	n := buffers + 2*compressors
	f := &asyncFile{fd: fd, direct: -1, ops: make(chan asyncOp, 64), free: make(chan []byte, n),
		done: make(chan struct{})}
	if !buffered {
		f.direct = openDirect(fd)
	}
	zSize := 0
	if compressors > 0 {
		// Room for the few bytes zstd adds to data it cannot shrink.
		zSize = int(pageRound(uint64(bufSize + bufSize/64 + 1024)))
	}
	f.mem = newScratch[byte](n * (bufSize + zSize))
	for i := 0; i < n; i++ {
		f.free <- f.buffer(i*bufSize, bufSize)
	}
	if compressors > 0 {
		f.startCompressors(compressors, n, func(i int) []byte { return f.buffer(n*bufSize+i*zSize, zSize)[:0] })
	}
	go f.run()
	return f
}

func (f *asyncFile) run() {
	defer close(f.done)
	var next *asyncOp // taken from ops while gathering, not done yet
	for {
		var op asyncOp
		if next != nil {
			op, next = *next, nil
		} else if o, ok := <-f.ops; ok {
			op = o
		} else {
			return
		}
		switch {
		case op.release != nil:
			f.free <- op.release
		case op.flush != nil:
			op.flush <- f.failed()
		case op.z != nil:
			f.writeSegment(op.z)
		case f.failed() == nil:
			var closed bool
			if next, closed = f.gather(op); closed {
				return
			}
		}
	}
}

// maxGather bounds the writes gathered into one.
const maxGather = 64

// gather writes op together with the writes queued right behind it that
// continue it in the file, in one pwritev: the copiers' writes follow each
// other in the file, and to the disk (direct.go) one big write goes faster
// than its bytes in several (the block layer sends its parts side by
// side).  Buffers handed back meanwhile are put back after the write.  It
// returns the first op taken that it did not do, or closed if ops was
// closed.
func (f *asyncFile) gather(op asyncOp) (next *asyncOp, closed bool) {
	ps, released := append(f.gathered[:0], op.p), f.released[:0]
	end := op.off + int64(len(op.p))
	direct := f.directOK(op.p, op.off)
gathering:
	for len(ps) < maxGather {
		select {
		case o, ok := <-f.ops:
			switch {
			case !ok:
				closed = true
				break gathering
			case o.release != nil:
				released = append(released, o.release)
			case o.flush == nil && o.z == nil && o.off == end && f.directOK(o.p, o.off) == direct:
				ps = append(ps, o.p)
				end += int64(len(o.p))
			default:
				next = &o
				break gathering
			}
		default:
			break gathering
		}
	}
	if err := f.pwritev(ps, op.off); err != nil {
		f.fail(err)
	}
	for _, b := range released {
		f.free <- b
	}
	f.gathered, f.released = ps[:0], released[:0]
	return next, closed
}

// wrote notes that the file is written up to end, and every writebackEvery
// bytes asks the kernel to start writing it to disk.
func (f *asyncFile) wrote(end int64) {
	f.end = max(f.end, end)
	if f.end-f.synced >= writebackEvery {
		// Only a hint: a failure shows at fsync.
		unix.SyncFileRange(f.fd, f.synced, f.end-f.synced, unix.SYNC_FILE_RANGE_WRITE)
		f.synced = f.end
	}
}

func (f *asyncFile) fail(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
}

func (f *asyncFile) failed() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// WriteAt queues a write of p at off.
func (f *asyncFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.failed(); err != nil {
		return 0, err
	}
	f.ops <- asyncOp{p: p, off: off}
	return len(p), nil
}

// buffer returns size bytes of mem from off, or of the Go heap if mem
// could not be mapped.
func (f *asyncFile) buffer(off, size int) []byte {
	if f.mem == nil {
		return make([]byte, size)
	}
	return f.mem[off : off+size : off+size]
}

func (f *asyncFile) get() []byte    { return <-f.free }
func (f *asyncFile) put(buf []byte) { f.ops <- asyncOp{release: buf[:cap(buf)]} }

// flush waits for every queued write and returns the first failure.
func (f *asyncFile) flush() error {
	c := make(chan error)
	f.ops <- asyncOp{flush: c}
	return <-c
}

// close flushes and stops the writing goroutine and the compressors, and
// unmaps the buffers (or zeroes them, in the Go heap: zero pages cost the
// next image nothing).  Every write is done, and every compression with it.
func (f *asyncFile) close() error {
	err := f.flush()
	close(f.ops)
	<-f.done
	if f.direct >= 0 {
		unix.Close(f.direct)
		f.direct = -1
	}
	if f.zjobs != nil {
		close(f.zjobs)
	}
	if f.mem != nil {
		freeScratch(f.mem)
		f.mem = nil
		return err
	}
	for f.zout != nil && len(f.zout) > 0 {
		b := <-f.zout
		clear(b[:cap(b)])
	}
	for len(f.free) > 0 {
		clear(<-f.free)
	}
	return err
}
