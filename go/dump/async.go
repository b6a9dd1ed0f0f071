package dump

import (
	"sync"

	"golang.org/x/sys/unix"
)

// writebackEvery is how many bytes are written between requests to the
// kernel to start writing them to disk.  Without them nothing reaches the
// disk until the final fsync (a machine with lots of memory holds the whole
// image as dirty pages), so the disk would sit idle while pages are read
// and then do all its work at the end.
const writebackEvery = 32 << 20

// buffers is how many chunk buffers circulate between reading and writing.
const buffers = 4

// asyncFile writes to a descriptor on a goroutine of its own, so that
// reading the next pages from the snapshot child overlaps with writing
// these.  Its WriteAt keeps p until the write is done: callers take their
// buffers from get and hand them back with put once every write from them
// is queued.  Errors come back from a later WriteAt or from flush.
type asyncFile struct {
	fd   int
	ops  chan asyncOp
	free chan []byte
	done chan struct{}

	mu  sync.Mutex
	err error
}

type asyncOp struct {
	p       []byte
	off     int64
	release []byte // a buffer to put back in the pool, after the writes before it
	flush   chan error
}

func newAsyncFile(fd int, bufSize int) *asyncFile {
	f := &asyncFile{fd: fd, ops: make(chan asyncOp, 64), free: make(chan []byte, buffers),
		done: make(chan struct{})}
	for i := 0; i < buffers; i++ {
		f.free <- make([]byte, bufSize)
	}
	go f.run()
	return f
}

func (f *asyncFile) run() {
	defer close(f.done)
	var synced, end int64
	for op := range f.ops {
		switch {
		case op.release != nil:
			f.free <- op.release
		case op.flush != nil:
			op.flush <- f.failed()
		case f.failed() == nil:
			if err := pwriteFull(f.fd, op.p, op.off); err != nil {
				f.fail(err)
				continue
			}
			end = max(end, op.off+int64(len(op.p)))
			if end-synced >= writebackEvery {
				// Only a hint: a failure shows at fsync.
				unix.SyncFileRange(f.fd, synced, end-synced, unix.SYNC_FILE_RANGE_WRITE)
				synced = end
			}
		}
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

func (f *asyncFile) get() []byte    { return <-f.free }
func (f *asyncFile) put(buf []byte) { f.ops <- asyncOp{release: buf[:cap(buf)]} }

// flush waits for every queued write and returns the first failure.
func (f *asyncFile) flush() error {
	c := make(chan error)
	f.ops <- asyncOp{flush: c}
	return <-c
}

// close flushes and stops the writing goroutine.
func (f *asyncFile) close() error {
	err := f.flush()
	close(f.ops)
	<-f.done
	return err
}
