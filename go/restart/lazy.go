package restart

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/ckpt/ckpt/go/fresh"
	"github.com/ckpt/ckpt/go/image"
	"github.com/ckpt/ckpt/go/span"
	"github.com/ckpt/ckpt/go/uapi"
	"golang.org/x/sys/unix"
)

// Lazy loading.  Instead of copying every page before the program runs,
// the stub registers the program's private areas that hold data with a
// userfaultfd and hands it to the loader here, in restart, which keeps
// running next to the program anyway.  The loader answers page faults
// first, a chunk around the faulting page, and copies everything else in
// the background; once every page is in place it closes the userfaultfd
// and the program's memory is ordinary anonymous memory, as after an
// eager restore.  The memory is never mapped from the image, so
// MADV_DONTNEED still gives zeros (see linker/stub.c, ck_copy_run).
//
// The program changes its memory map while pages are still missing, and
// the loader must follow (CRIU's lazy-pages does the same): a range it
// is told was discarded (MADV_DONTNEED, munmap) is not filled any more,
// a moved range (mremap) is filled at its new address, and a forked child
// gets its own userfaultfd with the pages still missing at the fork,
// which a loader of its own fills.  Copies fail with EAGAIN while such an
// event waits to be read, so nothing is ever filled from a stale map.
//
// It needs /dev/userfaultfd (or the stub cannot create one in its user
// namespace) and CAP_SYS_PTRACE for fork events; without them the stub
// copies every page as before.

// Faults wait while a background copy is under way, and a copy into fresh
// memory costs a page allocation per 4 KiB (about 10 us each on this VM).
// With copies of 1 MiB, a restored 2 GiB half-zero bigheap printed its
// first line 3-8 ms later than with copies of 256 KiB (medians of 10-20,
// --lazy and default), while loading all of its memory took the same
// 1.1-1.4 s with copies of 64 KiB to 1 MiB.  A fault loads 64 KiB: with
// 16 KiB the program faulted more often and ran 6 ms later.
const (
	faultChunk = 64 << 10  // loaded around a faulting page
	loadChunk  = 256 << 10 // loaded at a time in the background
)

// runGroup is the runs of one area the loader loads.  Pieces name their
// run by number, counting the runs of every such area in the image's
// order; first is the number of the group's first run.
type runGroup struct {
	first int32
	start uint64 // the area's
	runs  []image.Run
}

// run returns run number k.
func (l *loader) run(k int32) *image.Run {
	g := &l.groups[sort.Search(len(l.groups), func(i int) bool { return l.groups[i].first > k })-1]
	return &g.runs[k-g.first]
}

// loader serves one restored program and the children it forks.
type loader struct {
	// /dev/userfaultfd, the socket pair's two ends.  A loader exists only
	// where a userfaultfd made here took the events it needs (canServe),
	// so the one the stub makes will: the stub gets no runs of the areas
	// the loader serves, and cannot fall back to copying them.
	dev, stubSock, sock int
	// srcs are the files the data comes from, each a descriptor of the
	// loader's own: the image, then with parents (an incremental image
	// served without gathering it, chain) each parent; ends says where
	// each one's data ends.  They are read with pread, not mapped: on
	// the machines ckpt is measured on, every 64 KiB first touched in a
	// mapping costs a fault, which outweighs the copy pread makes.
	// Loading all of a 512 MiB half-zero bigheap took 364 ms through a
	// mapping against 231 with pread, 2 GiB 1054 against 767 (medians).
	srcs     []source
	ends     []uint64
	names    []string      // the parents' file names, for messages
	pend     *pending      // what the restored program still misses
	groups   []runGroup    // the runs pieces come from
	checked  []atomic.Bool // with verify: runs whose CRC was checked
	pieceMap []byte        // pieceMemory's
	first    scratch       // the first serve's (build makes it)
	built    chan struct{} // closed when build is done
	buildErr error
	verify   bool
	kill     func() // ends the restored program (setKill)

	wg  sync.WaitGroup
	mu  sync.Mutex
	err error
}

// newLoader prepares lazy loading of im's private areas from dataFD (and,
// for an incremental image not gathered, from its parents in chain), or
// returns nil if this machine cannot do it (restart then fills the memory
// before the program runs: fill.go).  With
// verify, each run's CRC is checked before any of its pages is loaded.
// What the loader serves from is made in the background while restart
// starts the stub (build); start waits for it.
func newLoader(im *image.Image, dataFD int, chain *parentData, verify bool) *loader {
	some := false
	for i := range im.Areas {
		if a := &im.Areas[i]; lazyArea(a) && len(a.Runs) > 0 {
			some = true
		}
	}
	if !some {
		return nil
	}
	l := &loader{dev: -1, stubSock: -1, sock: -1, verify: verify, built: make(chan struct{})}
	// Descriptors of its own: restart passes dataFD on to the stub and
	// closes it.
	fds, ends := []int{dataFD}, []uint64{^uint64(0)}
	if chain != nil {
		fds, ends = append(fds, chain.fds...), append(ends, chain.ends...)
	}
	for _, fd := range fds {
		var st unix.Stat_t
		if unix.Fstat(fd, &st) != nil || st.Size <= 0 {
			l.closeSources()
			return nil
		}
		own, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			l.closeSources()
			return nil
		}
		l.srcs = append(l.srcs, source{fd: own, size: uint64(st.Size)})
	}
	l.ends = ends
	if chain != nil {
		l.names = chain.names
	}
	var err error
	if l.dev, err = unix.Open("/dev/userfaultfd", unix.O_RDWR|unix.O_CLOEXEC, 0); err != nil {
		l.closeSources()
		return nil
	}
	if !canServe(l.dev) {
		// Opening /dev/userfaultfd is not enough: fork events need
		// CAP_SYS_PTRACE.
		unix.Close(l.dev)
		l.closeSources()
		return nil
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		l.closeSources()
		unix.Close(l.dev)
		return nil
	}
	l.sock, l.stubSock = pair[0], pair[1]
	go func() {
		defer close(l.built)
		l.buildErr = l.build(im)
	}()
	return l
}

// canServe makes a userfaultfd in this process from dev (/dev/userfaultfd)
// and enables on it the events receive will enable on the stub's (fork
// needs CAP_SYS_PTRACE).
func canServe(dev int) bool {
	fd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(dev), uapi.UserfaultfdIOCNew, unix.O_CLOEXEC|unix.O_NONBLOCK)
	if errno != 0 {
		return false
	}
	defer unix.Close(int(fd))
	api := uapi.UffdioAPIArg{API: uapi.UffdAPI, Features: loaderFeatures}
	return uapi.Ioctl(int(fd), uapi.UffdioAPI, unsafe.Pointer(&api)) == nil
}

// loaderServes reports whether a loader made now would serve (canServe).
func loaderServes() bool {
	dev, err := unix.Open("/dev/userfaultfd", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(dev)
	return canServe(dev)
}

// loaderFeatures are the events the loader follows.
const loaderFeatures = uapi.UffdFeatureFork | uapi.UffdFeatureRemap | uapi.UffdFeatureRemove | uapi.UffdFeatureUnmap

// build makes the pending pieces and the runs to check.
func (l *loader) build(im *image.Image) error {
	// Fresh memory is slow to touch and there may be hundreds of
	// thousands of runs (every other page zero): the pieces are the
	// only copy, made in place, and the runs are the image's own.
	limits := make([]uint64, len(l.srcs)) // where each source's data ends
	for s := range limits {
		limits[s] = min(l.srcs[s].size, l.ends[s])
	}
	n, k := 0, int32(0)
	for i := range im.Areas {
		a := &im.Areas[i]
		if !lazyArea(a) || len(a.Runs) == 0 {
			continue
		}
		if int64(k)+int64(len(a.Runs)) > math.MaxInt32 {
			return fmt.Errorf("%w: more than %d runs", image.ErrCorrupt, math.MaxInt32)
		}
		l.groups = append(l.groups, runGroup{first: k, start: uint64(a.Start), runs: a.Runs})
		k += int32(len(a.Runs))
		for j := range a.Runs {
			r := &a.Runs[j]
			if int(r.Source) >= len(limits) {
				return fmt.Errorf("%w: pages from parent %d, which is not there", image.ErrCorrupt, r.Source)
			}
			if end := r.FileOff + r.DataLen(); end > limits[r.Source] {
				if r.Source == 0 {
					return fmt.Errorf("%w: the image's data ends before offset %#x", image.ErrTruncated, end)
				}
				return fmt.Errorf("%w: pages at %#x of parent %q lie beyond its data",
					image.ErrCorrupt, r.FileOff, l.names[r.Source-1])
			}
			n += runPieceCount(uint64(a.Start), r)
		}
	}
	ps := l.pieceMemory(n)
	n = 0
	for _, g := range l.groups {
		for j := range g.runs {
			// In place: n counted every piece.
			n += len(appendRunPieces(ps[n:n], g.start, &g.runs[j], g.first+int32(j)))
		}
	}
	l.pend = &pending{ps: ps, left: len(ps), order: append(hotChunks(im), loadOrder(l.groups)...)}
	// Made here, while restart checks the image, rather than by serve
	// when the program is about to run: faulting in fresh memory took
	// 4-8 ms (package fresh).
	l.first = newScratch()
	if l.verify {
		l.checked = make([]atomic.Bool, k)
	}
	return nil
}

// hotChunks are the fault chunks the stub and each thread touch first, for
// the loader to load before anything else (the stub takes a few
// milliseconds before it lets the threads go): the library's restore
// information; each thread's TLS, whose rseq area the kernel writes as
// the stub recreates the thread; the code it resumes in, the library's
// signal handler, and the signal return trampolines, which come back as
// anonymous memory like every file mapping; and its stack from the resume
// point up through the signal frame.  The first fault of a restored
// bigheap then came 2-4 ms after the loader started serving instead of at
// once, and its first line 1-2 ms sooner (medians of 30-40, alternating:
// 27.0 ms against 28.1 for 512 MiB, 34.0 against 35.7 for 2 GiB).
func hotChunks(im *image.Image) []span.Span {
	threads := im.Threads
	var hot []span.Span
	seen := map[uint64]bool{}
	add := func(addr uint64) {
		c := addr &^ (faultChunk - 1)
		if addr != 0 && !seen[c] {
			seen[c] = true
			hot = append(hot, span.Span{Start: c, End: c + faultChunk})
		}
	}
	// The stub writes the library's restore information before it lets
	// the threads go, and each of them counts itself in there.
	add(uint64(im.Process.RestoreInfo))
	for _, t := range threads {
		add(uint64(t.RseqAddr))
		add(uint64(t.FSBase))
	}
	for _, t := range threads {
		add(t.RIP)
	}
	for _, a := range im.Process.Sigactions {
		if a.Handler > 1 && a.Flags&saRestorer != 0 {
			add(a.Restorer)
		}
	}
	for _, t := range threads {
		add(t.RSP)
		add(t.RSP + stackHot)
	}
	return hot
}

// saRestorer is SA_RESTORER: the action returns through Restorer.
const saRestorer = 0x04000000

// stackHot is how far above the resume point a thread's stack is hot: the
// handler's frame, the kernel's signal frame with the FPU state (about 3
// KiB with AVX-512), and the frames the signal interrupted.
const stackHot = 8 << 10

// loadOrder is the order in which the loader loads areas in the
// background: the smallest first (by the bytes it loads), so that the
// program's libraries, stacks and runtimes are in place within a few
// milliseconds, and the faults of a program that has just started again
// do not each wait behind a copy into a heap of gigabytes, which comes
// last.  (Loaded in address order, the heap came before everything above
// it: 76 faults, 15 ms, before a restored 2 GiB bigheap printed its first
// line.)
func loadOrder(groups []runGroup) []span.Span {
	type sized struct {
		span.Span
		bytes uint64
	}
	var areas []sized
	for _, g := range groups {
		last := &g.runs[len(g.runs)-1]
		a := sized{Span: span.Span{Start: g.start + g.runs[0].Page*image.PageSize, End: g.start + (last.Page+last.Pages)*image.PageSize}}
		for j := range g.runs {
			a.bytes += g.runs[j].DataLen()
		}
		areas = append(areas, a)
	}
	sort.SliceStable(areas, func(i, j int) bool { return areas[i].bytes < areas[j].bytes })
	order := make([]span.Span, len(areas))
	for i, a := range areas {
		order[i] = a.Span
	}
	return order
}

// pieceMemory returns room for n pieces.  Hundreds of thousands of them
// are megabytes of fresh memory, which is slow to touch: it is populated
// by the kernel in one go (package fresh; it is built next to the fork
// that starts the stub, which fresh.Populate never keeps waiting long for
// the memory map's lock).  It is also left out of that fork, which would
// otherwise copy its page tables and make the next write to each of its
// pages a fault.  The mapping is l.pieceMap, unmapped by close.
func (l *loader) pieceMemory(n int) []piece {
	size := n * int(unsafe.Sizeof(piece{}))
	if size < 1<<20 {
		return make([]piece, n)
	}
	m, b, err := fresh.Map(size)
	if err != nil {
		return make([]piece, n)
	}
	unix.Madvise(m, unix.MADV_DONTFORK)
	l.pieceMap = m
	return unsafe.Slice((*piece)(unsafe.Pointer(&b[0])), n)
}

// source is a file the loader reads data from.
type source struct {
	fd   int
	size uint64
}

// scratch is one serving goroutine's memory: stage holds what one copy
// puts in place (and, before that, the blocks of a run being checked),
// piece the stored pages of one piece as read from the image.
type scratch struct{ stage, piece []byte }

func newScratch() scratch {
	b := fresh.Slice[byte](loadChunk + faultChunk)
	return scratch{stage: b[:loadChunk:loadChunk], piece: b[loadChunk:]}
}

// read reads len(b) bytes of source src's data at off; a failure ends the
// program, which cannot have its pages.
func (l *loader) read(b []byte, src int, off uint64) error {
	for done := 0; done < len(b); {
		n, err := unix.Pread(l.srcs[src].fd, b[done:], int64(off)+int64(done))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n == 0 {
			where := "the image"
			if src > 0 {
				where = fmt.Sprintf("parent %q", l.names[src-1])
			}
			if err == nil {
				err = fmt.Errorf("%w: it ends at %#x (cut short?)", image.ErrTruncated, off+uint64(done))
			}
			err = fmt.Errorf("reading %s while it was being loaded: %w; the restored program was killed", where, err)
			l.fail(err)
			return err
		}
		done += n
	}
	return nil
}

// pieceData reads the stored pages of piece p into buf.
func (l *loader) pieceData(buf []byte, p piece) ([]byte, error) {
	b := buf[:p.dataLen()]
	return b, l.read(b, int(p.src), p.off)
}

// place copies data, the stored pages of piece p, into dst, which stands
// for the memory from p.addr on, leaving the pages p skips alone.
func place(dst, data []byte, p piece) {
	for s := range p.stretches() {
		copy(dst[s.Page*image.PageSize:], data[s.FileOff-p.off:][:s.Pages*image.PageSize])
	}
}

// parentData is what a loader serves an incremental image's parents from:
// their data (a compressed parent unpacked into a memory file) and where
// it ends.
type parentData struct {
	fds   []int
	ends  []uint64
	names []string
}

func (l *loader) closeSources() {
	for _, s := range l.srcs {
		unix.Close(s.fd)
	}
	l.srcs = nil
}

// areasWhere returns im with only the areas keep keeps: what is left to
// check of an image whose other areas the loader or the filler checks.
func areasWhere(im *image.Image, keep func(*image.Area) bool) *image.Image {
	rest := *im
	rest.Areas = nil
	for i := range im.Areas {
		if a := &im.Areas[i]; keep(a) {
			rest.Areas = append(rest.Areas, *a)
		}
	}
	return &rest
}

// lazyArea reports whether the loader loads a's pages (the stub copies
// shared memory itself).
func lazyArea(a *image.Area) bool { return !a.Kind.Special() && a.Flags&image.AreaShared == 0 }

// close releases what the loader holds in this process; the descriptors
// passed to the stub are closed by whoever passed them.
func (l *loader) close() {
	<-l.built
	for _, fd := range []int{l.dev, l.sock} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	l.dev, l.sock = -1, -1
	l.closeSources()
	if l.pieceMap != nil {
		// Nothing serves any more: wait has waited, or start never ran.
		unix.Munmap(l.pieceMap)
		l.pieceMap, l.pend = nil, nil
	}
}

// start waits for the stub's userfaultfd and serves it on goroutines of
// its own.  wait waits for them.
func (l *loader) start() {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		uffd, err := l.receive()
		if err != nil {
			return // the stub is gone, or fails without the loader
		}
		// The stub maps and registers its memory meanwhile.
		if <-l.built; l.buildErr != nil {
			unix.Close(uffd)
			l.fail(l.buildErr)
			return
		}
		// Wait until the stub has registered every area.
		if n, err := unix.Read(l.sock, make([]byte, 1)); n != 1 {
			unix.Close(uffd)
			l.fail(fmt.Errorf("the restore stub stopped before its memory was registered: %v", err))
			return
		}
		l.serve(uffd, l.pend, l.first)
	}()
}

func (l *loader) wait() error {
	l.wg.Wait()
	l.close()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// receive takes the userfaultfd from the stub, enables the events the
// loader follows and tells the stub whether it serves.  When it cannot
// (the stub could not create one, or the kernel refuses the events, though
// it took them from restart), the program cannot run: the stub has none of
// the runs the loader was to serve.
func (l *loader) receive() (int, error) {
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(l.sock, buf, oob, 0)
	if err != nil || n != 1 {
		return -1, fmt.Errorf("no word from the stub: %v", err)
	}
	uffd := -1
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil && len(msgs) == 1 {
		if fds, err := unix.ParseUnixRights(&msgs[0]); err == nil && len(fds) == 1 {
			uffd = fds[0]
		}
	}
	api := uapi.UffdioAPIArg{API: uapi.UffdAPI, Features: loaderFeatures}
	if uffd >= 0 && uapi.Ioctl(uffd, uapi.UffdioAPI, unsafe.Pointer(&api)) != nil {
		unix.Close(uffd)
		uffd = -1
	}
	if uffd < 0 {
		l.fail(fmt.Errorf("the restore stub's userfaultfd cannot be served, unlike restart's own; " +
			"restart with --eager"))
	}
	reply := []byte{0}
	if uffd >= 0 {
		reply[0] = 1
	}
	if _, err := unix.Write(l.sock, reply); err != nil || uffd < 0 {
		if uffd >= 0 {
			unix.Close(uffd)
		}
		return -1, fmt.Errorf("not loading lazily")
	}
	return uffd, nil
}

// setKill tells the loader how to end the restored program if its image
// turns out damaged while loading.
func (l *loader) setKill(kill func()) {
	l.mu.Lock()
	l.kill = kill
	l.mu.Unlock()
}

func (l *loader) fail(err error) {
	l.mu.Lock()
	first := l.err == nil
	if first {
		l.err = err
	}
	kill := l.kill
	l.mu.Unlock()
	if first && kill != nil {
		kill()
	}
}

func (l *loader) failed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err != nil
}

var errAgain = errors.New("the memory map is changing")

// CKPT_LAZY_DEBUG=1 makes restart log every event and answer of lazy
// loading, how a fill (fill.go) ended and when restart was done with each
// step before the start (phase), to stderr, stamped with
// CLOCK_MONOTONIC milliseconds (to line up with a program's).
var debugLazy = os.Getenv("CKPT_LAZY_DEBUG") != ""

// CKPT_LAZY_HOLD_MS=N (for tests) holds the loading in the background for
// N milliseconds after a loader starts serving: the program runs on
// answered faults alone meanwhile, as it would behind slow storage.
var lazyHold = func() time.Duration {
	ms, _ := strconv.Atoi(os.Getenv("CKPT_LAZY_HOLD_MS"))
	return time.Duration(ms) * time.Millisecond
}()

// phase logs, with CKPT_LAZY_DEBUG, that restart is done with a step
// before the program runs: where that time goes.
func phase(what string) {
	if debugLazy {
		debugf("%s", what)
	}
}

func debugf(format string, args ...any) {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	fmt.Fprintf(os.Stderr, "%d restart: "+format+"\n", append([]any{ts.Nano() / 1e6}, args...)...)
}

// serve loads pend into the process of uffd and answers its faults until
// every page is in place, then closes uffd.
func (l *loader) serve(uffd int, pend *pending, sc scratch) {
	defer unix.Close(uffd)
	var faults []uint64 // addresses waiting for an answer
	var why error       // why serving ended early
	if debugLazy {
		debugf("lazy: serving uffd %d, %d pieces", uffd, pend.left)
	}
	defer func() {
		if debugLazy {
			debugf("lazy: uffd %d done, %d pieces left: %v", uffd, pend.left, why)
		}
		// The program would read zeros where pages are missing once
		// uffd is closed: better dead than silently wrong.
		if why != nil && !errors.Is(why, unix.ESRCH) && (!pend.empty() || len(faults) > 0) {
			l.fail(fmt.Errorf("loading the program's memory stopped: %w", why))
		}
	}()
	buf := make([]byte, 64*uapi.UffdMsgSize)
	hold := time.Now().Add(lazyHold)
	for (!pend.empty() || len(faults) > 0) && !l.failed() {
		n, err := unix.Read(uffd, buf)
		switch {
		case n > 0:
			for m := buf[:n-n%uapi.UffdMsgSize]; len(m) > 0; m = m[uapi.UffdMsgSize:] {
				faults = l.event(m, pend, faults)
			}
		case errors.Is(err, unix.EAGAIN):
			if len(faults) == 0 && lazyHold > 0 && time.Now().Before(hold) {
				unix.Poll([]unix.PollFd{{Fd: int32(uffd), Events: unix.POLLIN}}, int(time.Until(hold).Milliseconds())+1)
				continue
			}
			if len(faults) == 0 {
				err = l.loadNext(uffd, pend, sc)
			}
		case errors.Is(err, unix.EINTR):
		default:
			why = err
			return // the process is gone
		}
		if errors.Is(err, unix.ESRCH) {
			why = err
			return
		}
		// Answer the faults, oldest first; EAGAIN: events first.
		for len(faults) > 0 {
			lo, hi, err := l.fault(uffd, pend, faults[0], sc)
			if errors.Is(err, errAgain) {
				break
			}
			if err != nil && !errors.Is(err, unix.ENOENT) { // ENOENT: unmapped meanwhile
				why = err
				return
			}
			faults = dropAnswered(faults[1:], lo, hi)
		}
	}
}

// event handles one uffd_msg.
func (l *loader) event(m []byte, pend *pending, faults []uint64) []uint64 {
	u64 := func(off int) uint64 { return *(*uint64)(unsafe.Pointer(&m[off])) }
	if debugLazy && m[0] != uapi.UffdEventPagefault {
		debugf("lazy: event %#x %#x %#x %#x", m[0], u64(8), u64(16), u64(24))
	}
	switch m[0] {
	case uapi.UffdEventPagefault:
		if debugLazy {
			debugf("lazy: fault %#x flags %#x", u64(16), u64(8))
		}
		faults = append(faults, u64(16)&^(image.PageSize-1))
	case uapi.UffdEventFork:
		child := int(*(*uint32)(unsafe.Pointer(&m[8])))
		// Its pages are missing where the parent's were at the fork
		// (copies to the parent fail with EAGAIN until this is read).
		l.wg.Add(1)
		go func(child int, pend *pending) {
			defer l.wg.Done()
			l.serve(child, pend, newScratch())
		}(child, pend.clone())
	case uapi.UffdEventRemap:
		pend.remap(u64(8), u64(16), u64(24))
	case uapi.UffdEventRemove, uapi.UffdEventUnmap:
		pend.drop(u64(8), u64(16))
	}
	return faults
}

// fault answers a fault at addr: the piece that holds it if it is still to
// be loaded (at most faultChunk), else a zero page (a page the image does
// not store, or one the program discarded).  It returns the range it
// answered: every thread waiting for a page in it has been woken.
func (l *loader) fault(uffd int, pend *pending, addr uint64, sc scratch) (lo, hi uint64, err error) {
	i := pend.find(addr)
	if i < 0 {
		z := struct {
			start, len, mode uint64
			zeropage         int64
		}{addr, image.PageSize, 0, 0}
		err := uapi.Ioctl(uffd, uapi.UffdioZeropage, unsafe.Pointer(&z))
		if debugLazy {
			debugf("lazy: zero page %#x: %v", addr, err)
		}
		return addr, addr + image.PageSize, l.settle(uffd, err, addr, image.PageSize)
	}
	p := pend.ps[i]
	return p.addr, p.end(), l.load(uffd, pend, i, sc)
}

// dropAnswered removes from faults, read before an answer for [lo, hi)
// that woke their threads, those in that range: they need no answer of
// their own.  Threads of a program often fault on the same page at once
// (a lock, a shared counter), and each of those answers, a zero-page
// ioctl that finds the page there and a wake, took 0.1-0.5 ms on a busy
// machine while the program's threads ran.
func dropAnswered(faults []uint64, lo, hi uint64) []uint64 {
	kept := faults[:0]
	for _, a := range faults {
		if a < lo || a >= hi {
			kept = append(kept, a)
		}
	}
	return kept
}

// loadNext loads the next pieces pending (pending.next): those that end
// within loadChunk of the first and its range, in one copy, or one by one
// if that fails.
func (l *loader) loadNext(uffd int, pend *pending, sc scratch) error {
	i, limit := pend.next()
	j := i + 1
	for end := min(pend.ps[i].addr+loadChunk, limit); j < len(pend.ps) && pend.ps[j].len != 0 && pend.ps[j].end() <= end; {
		j++
	}
	if j > i+1 {
		err := l.loadWindow(uffd, pend.ps[i:j], sc)
		if err == nil {
			for k := i; k < j; k++ {
				pend.done(k)
			}
			return nil
		}
		if errors.Is(err, errAgain) || l.failed() {
			return err
		}
	}
	for k := i; k < j; k++ {
		if err := l.load(uffd, pend, k, sc); err != nil {
			return err
		}
	}
	return nil
}

// loadWindow copies win, pieces that lie within loadChunk bytes, in one
// UFFDIO_COPY from sc.stage: read there in one go if they follow each
// other in the image as in memory (one run), else piece by piece with
// zeros between them.
// Zeros are what those pages hold anyway: pages the image does not store,
// or pages the program gave back.  It fails if any page of the window is
// there already or the window spans two mappings; the caller then loads
// piece by piece.
func (l *loader) loadWindow(uffd int, win []piece, sc scratch) error {
	first, last := win[0], win[len(win)-1]
	straight := true
	for k, p := range win {
		if err := l.check(p.run, sc.stage); err != nil {
			return err
		}
		if !p.full() || k > 0 && (p.addr != win[k-1].end() || p.off != win[k-1].off+win[k-1].len || p.src != first.src) {
			straight = false
		}
	}
	var src []byte
	if straight {
		src = sc.stage[:last.off+last.len-first.off]
		if err := l.read(src, int(first.src), first.off); err != nil {
			return err
		}
	} else {
		src = sc.stage[:last.end()-first.addr]
		clear(src)
		for _, p := range win {
			data, err := l.pieceData(sc.piece, p)
			if err != nil {
				return err
			}
			place(src[p.addr-first.addr:], data, p)
		}
	}
	err := uffdCopy(uffd, first.addr, src)
	if errors.Is(err, unix.EAGAIN) {
		return errAgain
	}
	return err
}

// check checks the CRC of run i before its first page is loaded, with
// --lazy, reading it into buf a block at a time; a damaged run ends the
// program.
func (l *loader) check(i int32, buf []byte) error {
	if !l.verify || l.checked[i].Load() {
		return nil
	}
	r := l.run(i)
	crc := uint32(0)
	for done := uint64(0); done < r.DataLen(); {
		b := buf[:min(uint64(len(buf)), r.DataLen()-done)]
		if err := l.read(b, int(r.Source), r.FileOff+done); err != nil {
			return err
		}
		crc = image.ChecksumUpdate(crc, b)
		done += uint64(len(b))
	}
	if crc != r.CRC {
		where := "the image's data"
		if r.Source > 0 {
			where = fmt.Sprintf("the data of parent %q", l.names[r.Source-1])
		}
		err := fmt.Errorf("%w in %s at offset %#x, found while loading it "+
			"(restarted with --lazy); the restored program was killed", image.ErrChecksum, where, r.FileOff)
		l.fail(err)
		return err
	}
	l.checked[i].Store(true)
	return nil
}

// load copies piece i of pend into place and marks it done; a piece that
// skips pages goes through sc.stage, with zeros there.
func (l *loader) load(uffd int, pend *pending, i int, sc scratch) error {
	p := pend.ps[i]
	if err := l.check(p.run, sc.stage); err != nil {
		return err
	}
	data, err := l.pieceData(sc.piece, p)
	if err != nil {
		return err
	}
	src := data
	if !p.full() {
		src = sc.stage[:p.len]
		clear(src)
		place(src, data, p)
	}
	err = uffdCopy(uffd, p.addr, src)
	if errors.Is(err, unix.EEXIST) {
		// Some page is there already (a zero page the program was
		// given, say): load the stored ones one by one, the others
		// are zeros a fault can have.
		for st := range p.stretches() {
			for k := range st.Pages {
				a := p.addr + (st.Page+k)*image.PageSize
				page := data[st.FileOff-p.off+k*image.PageSize:][:image.PageSize]
				if e := uffdCopy(uffd, a, page); e != nil && !errors.Is(e, unix.EEXIST) {
					err = e
				}
			}
		}
	}
	if err = l.settle(uffd, err, p.addr, p.len); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	pend.done(i)
	return nil
}

// settle sorts out how a copy or zero-page answer went: an existing page
// only needs its waiters woken; EAGAIN means events must be read first;
// ENOENT (the range is gone) is the caller's to handle; ESRCH ends
// serving; anything else is a failure.
func (l *loader) settle(uffd int, err error, addr, n uint64) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EEXIST):
		r := struct{ start, len uint64 }{addr, n}
		uapi.Ioctl(uffd, uapi.UffdioWake, unsafe.Pointer(&r))
		return nil
	case errors.Is(err, unix.EAGAIN):
		return errAgain
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ESRCH):
		if debugLazy {
			debugf("lazy: uffd %d at %#x+%#x: %v", uffd, addr, n, err)
		}
		return err
	}
	err = fmt.Errorf("loading the program's memory at %#x: %w", addr, err)
	l.fail(err)
	return err
}

// uffdCopy fills the pages at dst in the process of uffd with src
// (UFFDIO_COPY) and wakes whoever waits for them.
func uffdCopy(uffd int, dst uint64, src []byte) error {
	c := struct {
		dst, src, len, mode uint64
		copied              int64
	}{dst, uint64(uintptr(unsafe.Pointer(&src[0]))), uint64(len(src)), 0, 0}
	return uapi.Ioctl(uffd, uapi.UffdioCopy, unsafe.Pointer(&c))
}
