package restart

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"

	"github.com/ckpt/ckpt/go/image"
	"golang.org/x/sys/unix"
)

// Filling memory from restart.  Where no loader serves the program's pages
// (no userfaultfd for this user, or --eager), every page must be in place
// before the program runs.  The stub, one thread, maps every area and
// waits; restart writes the pages into its process with process_vm_writev
// from a goroutine per CPU and then lets it go on.  What bounds this is the
// first touch of fresh memory (a page allocated and zeroed for each 4 KiB),
// which scales with CPUs: 1 GiB here takes 0.41-0.45 s from one thread,
// 0.26-0.29 s from two.  If restart cannot write there (ptrace rules such
// as Yama's ptrace_scope 3, seccomp), the stub copies every page itself.

const (
	fillChunk = 4 << 20 // bytes read and written at a time
	fillRuns  = 1024    // runs written at a time (IOV_MAX)
)

// fillOff is CKPT_RESTART_FILL=0: the stub copies (a test).
var fillOff = os.Getenv("CKPT_RESTART_FILL") == "0"

// filler fills one restored process.
type filler struct {
	sock, stubSock int // the socket pair's two ends
	data           int // the image, where every run's data is at its FileOff
	im             *image.Image

	pid int // the restored process, as seen here

	mu  sync.Mutex
	at  fillCursor // the next pages to fill
	err error
}

// fillCursor is a position among the runs restart fills: area, run, and
// bytes of that run already handed out.
type fillCursor struct {
	area, run int
	done      uint64
}

// fillSeg is a stretch of a run: len bytes from file offset off go to addr.
type fillSeg struct{ addr, off, len uint64 }

// newFiller prepares to fill im's areas from data (which it duplicates:
// Run passes its descriptor on), or returns nil if it cannot.
func newFiller(im *image.Image, data int) *filler {
	if fillOff {
		return nil
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	// The stub's message then carries its PID as seen here.
	if unix.SetsockoptInt(pair[0], unix.SOL_SOCKET, unix.SO_PASSCRED, 1) != nil {
		unix.Close(pair[0])
		unix.Close(pair[1])
		return nil
	}
	dup, err := unix.FcntlInt(uintptr(data), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		unix.Close(pair[0])
		unix.Close(pair[1])
		return nil
	}
	return &filler{sock: pair[0], stubSock: pair[1], data: dup, im: im}
}

// filledHere reports whether restart fills a's pages: those the stub
// would copy (linker/stub.c, ck_restored_here), all but the kernel's.
func filledHere(a *image.Area) bool { return !a.Kind.Special() }

// serve waits for the stub to map the areas, fills them, and tells the stub
// whether it did (else the stub copies them).  It returns when the stub
// has its answer or is gone.
func (f *filler) serve() {
	defer f.close()
	pid, err := f.receive()
	if err != nil {
		return // the stub died (restart reports how)
	}
	ok := byte(0)
	err = f.fill(pid)
	if err == nil {
		ok = 1
	}
	if debugLazy {
		debugf("fill: process %d: %v (nil: filled; else the stub copies)", pid, err)
	}
	// MSG_NOSIGNAL: a stub gone meanwhile is no SIGPIPE to pass on.
	for {
		if err := unix.Sendmsg(f.sock, []byte{ok}, nil, nil, unix.MSG_NOSIGNAL); !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

// receive waits for the stub's request and returns its PID.
func (f *filler) receive() (int, error) {
	var b [1]byte
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	for {
		n, oobn, _, _, err := unix.Recvmsg(f.sock, b[:], oob, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n != 1 {
			return 0, errors.New("the stub is gone")
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			return 0, errors.New("no credentials")
		}
		cred, err := unix.ParseUnixCredentials(&msgs[0])
		if err != nil {
			return 0, err
		}
		return int(cred.Pid), nil
	}
}

// fill writes every run of the areas the stub restores into process pid,
// on a goroutine per CPU.
func (f *filler) fill(pid int) error {
	f.pid = pid
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.work()
		}()
	}
	wg.Wait()
	return f.err
}

// work fills what next hands out until nothing is left or a write fails.
func (f *filler) work() {
	buf := make([]byte, fillChunk)
	segs := make([]fillSeg, 0, fillRuns)
	local := make([]unix.Iovec, 1)
	remote := make([]unix.RemoteIovec, 0, fillRuns)
	for {
		segs = f.next(segs[:0])
		if len(segs) == 0 {
			return
		}
		n, err := f.read(buf, segs)
		if err == nil {
			local[0].Base, local[0].Len = &buf[0], uint64(n)
			remote = remote[:0]
			for _, s := range segs {
				remote = append(remote, unix.RemoteIovec{Base: uintptr(s.addr), Len: int(s.len)})
			}
			err = f.write(local, remote, n)
		}
		if err != nil {
			f.mu.Lock()
			if f.err == nil {
				f.err = err
			}
			f.mu.Unlock()
			return
		}
	}
}

// read reads the data of segs back to back into buf, one pread for the
// segments that follow each other in the file.
func (f *filler) read(buf []byte, segs []fillSeg) (int, error) {
	n := 0
	for i := 0; i < len(segs); {
		j, size := i+1, segs[i].len
		for j < len(segs) && segs[j].off == segs[i].off+size {
			size += segs[j].len
			j++
		}
		if _, err := (fdReader(f.data)).ReadAt(buf[n:n+int(size)], int64(segs[i].off)); err != nil {
			return 0, fmt.Errorf("reading the image: %w", err)
		}
		n += int(size)
		i = j
	}
	return n, nil
}

// write writes n bytes from local to remote in the restored process.
func (f *filler) write(local []unix.Iovec, remote []unix.RemoteIovec, n int) error {
	for {
		w, err := unix.ProcessVMWritev(f.pid, local, remote, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("writing the program's memory: %w", err)
		}
		if w != n {
			return fmt.Errorf("writing the program's memory: %d of %d bytes", w, n)
		}
		return nil
	}
}

// next appends the next pages to fill to segs: up to fillChunk bytes in up
// to fillRuns runs (a longer run is handed out in parts), none after a
// failure.
func (f *filler) next(segs []fillSeg) []fillSeg {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return segs
	}
	room := uint64(fillChunk)
	for c := &f.at; c.area < len(f.im.Areas) && room > 0 && len(segs) < cap(segs); {
		a := &f.im.Areas[c.area]
		if !filledHere(a) || c.run == len(a.Runs) {
			c.area, c.run, c.done = c.area+1, 0, 0
			continue
		}
		r := &a.Runs[c.run]
		n := min(room, r.Len()-c.done)
		segs = append(segs, fillSeg{addr: uint64(a.Start) + r.Page*image.PageSize + c.done, off: r.FileOff + c.done, len: n})
		room -= n
		if c.done += n; c.done == r.Len() {
			c.run, c.done = c.run+1, 0
		}
	}
	return segs
}

// close closes the filler's descriptors.
func (f *filler) close() {
	for _, fd := range []*int{&f.sock, &f.stubSock, &f.data} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}
