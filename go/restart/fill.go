package restart

import (
	"errors"
	"fmt"
	"iter"
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
//
// For an image whose data Run has not checked yet (verify), each run's CRC
// is checked as its bytes pass through: the image is read once, not once
// to check and once to copy.  A damaged run kills the process before the
// program runs, and Run reports the image as bad; where restart cannot
// write, it checks what the stub is to copy before letting it.

const (
	fillChunk = 1 << 20 // bytes read, checked and written at a time
	fillRuns  = 1024    // runs written at a time (IOV_MAX)
)

// CKPT_RESTART_FILL=0: the stub copies; =refused: every write into the
// process fails as where ptrace rules forbid it (tests).
var (
	fillOff     = os.Getenv("CKPT_RESTART_FILL") == "0"
	fillRefused = os.Getenv("CKPT_RESTART_FILL") == "refused"
)

// filler fills one restored process.
type filler struct {
	sock, stubSock int // the socket pair's two ends
	data           int // the image, where every run's data is at its FileOff
	im             *image.Image
	verify         bool          // check each run's CRC (Run did not)
	cuts           []cut         // with verify, to apply once checked (files.go)
	warn           func(string)  // for cuts
	progress       func(uint64)  // bytes filled so far, or nil
	pid            int           // the restored process, as seen here
	done           chan struct{} // closed when serve returns
	fatal          error         // why serve killed the process (wait)

	mu     sync.Mutex
	at     fillCursor // the next runs to fill
	err    error      // the first failure
	filled uint64
}

// fillCursor is the next run to fill: area and run.
type fillCursor struct{ area, run int }

// fillSeg is a run to fill: len bytes from file offset off go to addr, or
// with a mask (image.Run.Mask) to the pages it names from addr on.
type fillSeg struct {
	addr, off, len uint64
	mask           uint64
	crc            uint32
	area           int
}

// stretches yields the stretches of s's stored pages, counted from addr.
func (s fillSeg) stretches() iter.Seq[image.Stretch] {
	if s.mask == 0 {
		return func(yield func(image.Stretch) bool) { yield(image.Stretch{Pages: s.len / image.PageSize}) }
	}
	return image.MaskStretches(s.mask, 0)
}

// writeError is a failure to write into the restored process (as opposed
// to one to read the image): the stub can still copy.
type writeError struct{ err error }

func (e writeError) Error() string { return "writing the program's memory: " + e.err.Error() }
func (e writeError) Unwrap() error { return e.err }

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
	return &filler{sock: pair[0], stubSock: pair[1], data: dup, im: im, done: make(chan struct{})}
}

// filledHere reports whether restart fills a's pages: those the stub
// would copy (linker/stub.c, ck_restored_here), all but the kernel's.
func filledHere(a *image.Area) bool { return !a.Kind.Special() }

// serve waits for the stub to map the areas, fills them, and tells the stub
// whether it did (else the stub copies them).  It returns when the stub
// has its answer or is gone, or after killing the process (a damaged or
// unreadable image: wait returns why).
func (f *filler) serve() {
	defer close(f.done)
	defer f.close()
	pid, err := f.receive()
	if err != nil {
		return // the stub died (restart reports how)
	}
	ok := byte(1)
	if err = f.fill(pid); err != nil {
		ok = 0
		var werr writeError
		switch {
		case errors.Is(err, unix.ESRCH):
			return // killed meanwhile
		case errors.As(err, &werr):
			// The stub copies what restart could not write: with
			// verify, check it first (Run checked the rest).
			err = nil
			if f.verify {
				filled := areasWhere(f.im, filledHere)
				filled.Files = nil
				if verr := image.VerifyData(fdReader(f.data), filled, nil); verr != nil {
					err = bad("%w", verr)
				}
			}
		default:
			err = bad("%w", err)
		}
	}
	if debugLazy {
		debugf("fill: process %d: %v (filled: %v; else the stub copies)", pid, err, ok == 1)
	}
	if err == nil {
		err = applyCuts(f.cuts, f.warn)
		f.cuts = nil
	}
	if err != nil {
		// The program never runs: Run reports err once the process is gone.
		f.fatal = err
		unix.Kill(pid, unix.SIGKILL)
		return
	}
	// MSG_NOSIGNAL: a stub gone meanwhile is no SIGPIPE to pass on.
	for {
		if err := unix.Sendmsg(f.sock, []byte{ok}, nil, nil, unix.MSG_NOSIGNAL); !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

// wait waits for serve and returns why it killed the process, if it did
// (ErrBadImage for a damaged image).
func (f *filler) wait() error {
	<-f.done
	return f.fatal
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

// work fills what next hands out until nothing is left or a step fails.
func (f *filler) work() {
	buf := make([]byte, fillChunk)
	segs := make([]fillSeg, 0, fillRuns)
	remote := make([]unix.RemoteIovec, 0, fillRuns)
	for {
		segs = f.next(segs[:0])
		if len(segs) == 0 {
			return
		}
		var n uint64
		var err error
		if len(segs) == 1 && segs[0].len > fillChunk {
			n, err = f.fillLong(buf, segs[0])
		} else {
			n, err = f.fillShort(buf, segs, remote)
		}
		f.mu.Lock()
		if err != nil && f.err == nil {
			f.err = err
		}
		f.filled += n
		if f.progress != nil && err == nil {
			f.progress(f.filled)
		}
		f.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// fillShort fills runs that fit in buf together: read back to back (one
// pread for those that follow each other in the file), checked, and written
// with one call.
func (f *filler) fillShort(buf []byte, segs []fillSeg, remote []unix.RemoteIovec) (uint64, error) {
	n := uint64(0)
	for i := 0; i < len(segs); {
		j, size := i+1, segs[i].len
		for j < len(segs) && segs[j].off == segs[i].off+size {
			size += segs[j].len
			j++
		}
		if err := f.read(buf[n:n+size], segs[i]); err != nil {
			return 0, err
		}
		n += size
		i = j
	}
	remote = remote[:0]
	at := uint64(0)
	for _, s := range segs {
		if f.verify && image.Checksum(buf[at:at+s.len]) != s.crc {
			return 0, f.damaged(s)
		}
		for st := range s.stretches() {
			remote = append(remote, unix.RemoteIovec{Base: uintptr(s.addr + st.Page*image.PageSize),
				Len: int(st.Pages * image.PageSize)})
		}
		at += s.len
	}
	return n, f.write(buf[:n], remote)
}

// fillLong fills one run longer than buf, a buffer at a time; its CRC is
// known only at the end, but the program does not run before then.
func (f *filler) fillLong(buf []byte, s fillSeg) (uint64, error) {
	crc := uint32(0)
	for done := uint64(0); done < s.len; {
		b := buf[:min(uint64(len(buf)), s.len-done)]
		part := s
		part.off, part.addr = s.off+done, s.addr+done
		if err := f.read(b, part); err != nil {
			return 0, err
		}
		if f.verify {
			crc = image.ChecksumUpdate(crc, b)
		}
		if err := f.write(b, []unix.RemoteIovec{{Base: uintptr(part.addr), Len: len(b)}}); err != nil {
			return 0, err
		}
		done += uint64(len(b))
	}
	if f.verify && crc != s.crc {
		return 0, f.damaged(s)
	}
	return s.len, nil
}

// damaged is the error for run s whose CRC does not match, worded as
// image.VerifyData words it.
func (f *filler) damaged(s fillSeg) error {
	a := &f.im.Areas[s.area]
	return fmt.Errorf("%w in the data of area %#x-%#x at file offset %#x", image.ErrChecksum, a.Start, a.End, s.off)
}

// read reads len(b) bytes of the image from s's offset.
func (f *filler) read(b []byte, s fillSeg) error {
	if _, err := fdReader(f.data).ReadAt(b, int64(s.off)); err != nil {
		a := &f.im.Areas[s.area]
		return fmt.Errorf("reading the data of area %#x-%#x: %w", a.Start, a.End, err)
	}
	return nil
}

// write writes b to remote in the restored process.
func (f *filler) write(b []byte, remote []unix.RemoteIovec) error {
	if fillRefused {
		return writeError{unix.EPERM}
	}
	local := []unix.Iovec{{Base: &b[0], Len: uint64(len(b))}}
	for {
		w, err := unix.ProcessVMWritev(f.pid, local, remote, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return writeError{err}
		}
		if w != len(b) {
			return writeError{fmt.Errorf("%d of %d bytes written", w, len(b))}
		}
		return nil
	}
}

// next appends the next runs to fill to segs: whole runs, up to fillChunk
// bytes and fillRuns runs, or one longer run alone; none after a failure.
func (f *filler) next(segs []fillSeg) []fillSeg {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return segs
	}
	room := uint64(fillChunk)
	for c := &f.at; c.area < len(f.im.Areas) && len(segs) < cap(segs); {
		a := &f.im.Areas[c.area]
		if !filledHere(a) || c.run == len(a.Runs) {
			c.area, c.run = c.area+1, 0
			continue
		}
		r := &a.Runs[c.run]
		if r.DataLen() > room && len(segs) > 0 {
			break
		}
		segs = append(segs, fillSeg{addr: uint64(a.Start) + r.Page*image.PageSize, off: r.FileOff,
			len: r.DataLen(), mask: r.Mask, crc: r.CRC, area: c.area})
		c.run++
		if r.DataLen() >= room {
			break
		}
		room -= r.DataLen()
	}
	return segs
}

// close closes the filler's descriptors.
func (f *filler) close() {
	closeCuts(f.cuts)
	f.cuts = nil
	for _, fd := range []*int{&f.sock, &f.stubSock, &f.data} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}
