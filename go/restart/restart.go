// Package restart is the restarter's front end.  It reads and checks a whole
// image before anything is started, works out every address the restore stub
// will use, reopens the program's files, and then starts the stub (linker/)
// in new namespaces, where it becomes the checkpointed process.
package restart

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ckpt/ckpt/go/image"
	"github.com/ckpt/ckpt/go/procfs"
	"golang.org/x/sys/unix"
)

// ErrBadImage marks failures caused by the image itself (as opposed to this
// machine or this process); the command exits with status 2 for them.
var ErrBadImage = errors.New("bad image")

// badImage wraps err so that errors.Is(err, ErrBadImage) holds while the
// message stays err's.
type badImage struct{ err error }

func (e badImage) Error() string        { return e.err.Error() }
func (e badImage) Unwrap() []error      { return []error{e.err, ErrBadImage} }
func bad(format string, a ...any) error { return badImage{fmt.Errorf(format, a...)} }

// fdReader is an io.ReaderAt on a raw descriptor.
type fdReader int

func (r fdReader) ReadAt(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Pread(int(r), p[done:], off+int64(done))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return done, err
		}
		if n == 0 {
			return done, fmt.Errorf("%w at offset %d", image.ErrTruncated, off+int64(done))
		}
		done += n
	}
	return done, nil
}

// Options change how an image is checked and restored.  The zero value is
// the default.
type Options struct {
	// Force accepts an image owned by another user.
	Force bool
	// Progress, if set, is called as the image's data is checked, with
	// the bytes checked so far and in all.
	Progress func(done, total uint64)
	// Warn, if set, gets one line for everything restored differently
	// from how it was.
	Warn func(string)
	// Started, if set, gets the restored program's PID as seen here.
	Started func(pid int)
	// Eager copies every page before the program runs, instead of
	// loading pages as the program touches them and in the background
	// (which needs userfaultfd: see lazy.go).  For images on slow or
	// network storage, which a running program would wait on.
	Eager bool
	// Lazy starts the program without checking the image's data first:
	// each run's CRC is checked as it is loaded, and a damaged run kills
	// the program then.  Without userfaultfd it is ignored.
	Lazy bool
}

// checkWhileLoading reports whether the image's data is checked as it is
// loaded (--lazy) rather than before the start.
func (o *Options) checkWhileLoading() bool { return o.Lazy && !o.Eager }

func (o *Options) warn(msg string) {
	if o.Warn != nil {
		o.Warn(msg)
	}
}

// Load opens, decodes and fully verifies the image at path.  The returned
// descriptor is open on the image.  An image must belong to the invoking
// user (it will run as them) unless o.Force is set.
func Load(path string, o *Options) (*image.Image, int, error) {
	im, fd, _, err := load(path, o, false)
	return im, fd, err
}

// load is Load; with unpack, the descriptor it returns holds every run's
// data at the run's FileOff as it is: the image itself, or for a compressed
// or incremental image a memory file its data and its parents' are
// gathered into (and im is changed to describe that file).  The data of an
// image that is itself such a file is left unchecked then (checked false):
// Run checks it, or has it checked as it is loaded.
func load(path string, o *Options, unpack bool) (_ *image.Image, _ int, checked bool, _ error) {
	fd, im, h, err := openImage(path, o)
	if err != nil {
		return nil, -1, false, err
	}
	return loadOpened(path, fd, im, h, o, unpack)
}

// loadOpened is load of the image openImage opened.
func loadOpened(path string, fd int, im *image.Image, h *image.Header, o *Options, unpack bool) (_ *image.Image, _ int, checked bool, _ error) {
	if len(im.Parents) == 0 && (!unpack || len(im.Segments) == 0) {
		if unpack {
			return im, fd, false, nil
		}
		if err := checkData(fd, im, h, nil, nil, nil, o); err != nil {
			unix.Close(fd)
			return nil, -1, false, bad("%w", err)
		}
		return im, fd, true, nil
	}
	defer unix.Close(fd)
	parents, ends, closeParents, err := openParents(path, im, o)
	if err != nil {
		return nil, -1, false, err
	}
	defer closeParents()
	out, data := io.WriterAt(nil), -1
	if unpack {
		if data, err = memfd("ckpt-restore-data", unix.MFD_CLOEXEC, nil); err != nil {
			return nil, -1, false, err
		}
		out = fdWriter(data)
	}
	if err = checkData(fd, im, h, parents, ends, out, o); err != nil {
		if data >= 0 {
			unix.Close(data)
		}
		if errors.Is(err, errUnpack) {
			return nil, -1, false, err
		}
		return nil, -1, false, bad("%w", err)
	}
	if !unpack {
		// Checked; the caller only closes it.
		data, err = unix.Dup(fd)
		if err != nil {
			return nil, -1, false, err
		}
	}
	return im, data, true, nil
}

// checkData checks the data of the image in fd and the pages it takes from
// its parents, reporting progress, and copies them to out if it is not nil
// (image.Unpack, then Image.Gather).
func checkData(fd int, im *image.Image, h *image.Header, parents []io.ReaderAt, ends []uint64, out io.WriterAt, o *Options) error {
	total := im.StoredBytes()
	if err := image.Unpack(fdReader(fd), im, out, o.progressFrom(0, total)); err != nil {
		return err
	}
	own := im.DataEnd(h) - image.DataStart // the image's own data
	return im.Gather(parents, ends, out, im.DataEnd(h), o.progressFrom(own, total))
}

// progressFrom returns a function that reports a step's bytes checked so
// far as base+done of total to o.Progress, or nil without it.
func (o *Options) progressFrom(base, total uint64) func(done uint64) {
	if o.Progress == nil {
		return nil
	}
	return func(done uint64) { o.Progress(base+done, total) }
}

// loadToRun is load for Run.  An incremental image whose parents' pages all
// go to memory the loader serves is not gathered: it returns the image and
// the parents' data for the loader to read where it is (chain), checked
// as Load would unless --lazy (checked false), and a function that closes
// the parents.  Where no loader can serve, it gathers.  It calls decoded
// once the image's metadata is read, before it reads any of its data.
func loadToRun(path string, o *Options, decoded func()) (im *image.Image, fd int, chain *parentData, done func(), checked bool, err error) {
	done = func() {}
	fd, im, h, err := openImage(path, o)
	if err != nil {
		return nil, -1, nil, done, false, err
	}
	phase("the image is decoded")
	decoded()
	if o.Eager || len(im.Parents) == 0 || len(im.Segments) > 0 || !parentsLoaded(im) || !loaderServes() {
		im, fd, checked, err = loadOpened(path, fd, im, h, o, true)
		return im, fd, nil, done, checked, err
	}
	readers, ends, closeParents, err := openParents(path, im, o)
	if err != nil {
		unix.Close(fd)
		return nil, -1, nil, done, false, err
	}
	if !o.checkWhileLoading() {
		if err = checkData(fd, im, h, readers, ends, nil, o); err != nil {
			closeParents()
			unix.Close(fd)
			return nil, -1, nil, done, false, bad("%w", err)
		}
	}
	chain = &parentData{ends: ends}
	for k, r := range readers {
		chain.fds = append(chain.fds, int(r.(fdReader)))
		chain.names = append(chain.names, im.Parents[k].Name)
	}
	return im, fd, chain, closeParents, !o.checkWhileLoading(), nil
}

// parentsLoaded reports whether every page im takes from a parent is in
// memory the loader serves (not shared memory or a file's contents, which
// the stub and restart put in place from the image itself).
func parentsLoaded(im *image.Image) bool {
	for i := range im.Areas {
		if a := &im.Areas[i]; !lazyArea(a) {
			for _, r := range a.Runs {
				if r.Source != 0 {
					return false
				}
			}
		}
	}
	for i := range im.Files {
		for _, r := range im.Files[i].Runs {
			if r.Source != 0 {
				return false
			}
		}
	}
	return true
}

// openImage opens and decodes the image at path (its data unchecked).
func openImage(path string, o *Options) (int, *image.Image, *image.Header, error) {
	return openDecoded(path, o, image.Read)
}

// openDecoded is openImage decoding with read (image.Read or ReadOutline).
func openDecoded(path string, o *Options, read func(io.ReaderAt, int64) (*image.Image, *image.Header, error)) (
	int, *image.Image, *image.Header, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, nil, nil, bad("%w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, nil, nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return -1, nil, nil, bad("not a regular file")
	}
	if uid := uint32(os.Getuid()); st.Uid != uid && !o.Force {
		unix.Close(fd)
		return -1, nil, nil, bad("owned by uid %d, not by you (uid %d); --force restores it anyway", st.Uid, uid)
	}
	im, h, err := read(fdReader(fd), st.Size)
	if err != nil {
		unix.Close(fd)
		return -1, nil, nil, bad("%w", err)
	}
	return fd, im, h, nil
}

// openParents opens the images an incremental image takes pages from, in
// its directory, and checks that each is the one it names.  A compressed
// parent is unpacked into a memory file.  It returns readers of each
// parent's own data, where that data ends, and a function that closes
// them all.
func openParents(path string, im *image.Image, o *Options) (readers []io.ReaderAt, ends []uint64, _ func(), err error) {
	var fds []int
	closeAll := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	for _, p := range im.Parents {
		ppath := filepath.Join(filepath.Dir(path), p.Name)
		// Its ID and where its data ends are all it is needed for,
		// unless it is compressed: unpacking checks its runs.
		fd, pim, ph, err := openDecoded(ppath, o, image.ReadOutline)
		if err == nil && len(pim.Segments) > 0 {
			unix.Close(fd)
			fd, pim, ph, err = openImage(ppath, o)
		}
		if err != nil {
			return nil, nil, nil, bad("parent image %q: %w", ppath, err)
		}
		fds = append(fds, fd)
		if pim.ID != p.ID {
			return nil, nil, nil, bad("parent image %q is not the one this image was taken after (ID %x, want %x)",
				ppath, pim.ID, p.ID)
		}
		if len(pim.Segments) > 0 {
			data, err := memfd("ckpt-restore-parent", unix.MFD_CLOEXEC, nil)
			if err != nil {
				return nil, nil, nil, err
			}
			fds = append(fds, data)
			if err := image.Unpack(fdReader(fd), pim, fdWriter(data), nil); err != nil {
				return nil, nil, nil, bad("parent image %q: %w", ppath, err)
			}
			fd = data
		}
		readers = append(readers, fdReader(fd))
		ends = append(ends, pim.DataEnd(ph))
	}
	return readers, ends, closeAll, nil
}

// errUnpack marks a failure to write the memory file a compressed image is
// unpacked into (out of memory, say), which is not the image's fault.
var errUnpack = errors.New("unpacking the image into memory")

// fdWriter is an io.WriterAt on a raw descriptor.
type fdWriter int

func (w fdWriter) WriteAt(p []byte, off int64) (int, error) {
	for done := 0; done < len(p); {
		n, err := unix.Pwrite(int(w), p[done:], off+int64(done))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return done, fmt.Errorf("%w: %w", errUnpack, err)
		}
		done += n
	}
	return len(p), nil
}

// Verify checks everything Run would check, without starting anything.
func Verify(path string, o *Options) error {
	im, fd, err := Load(path, o)
	if err != nil {
		return err
	}
	unix.Close(fd)
	return checkHost(im)
}

// checkHost refuses images this machine cannot restore.
func checkHost(im *image.Image) error {
	for _, t := range im.Threads {
		if t.TID == 1 {
			return bad("thread %d of the image has TID 1, which the restorer's own init holds", t.TID)
		}
	}
	text, err := procfs.ReadFile("/proc/self/maps")
	if err != nil {
		return err
	}
	maps, err := procfs.ParseMaps(text)
	if err != nil {
		return err
	}
	here := map[string]uint64{}
	for _, m := range maps {
		switch m.Name {
		case "[vdso]", "[vvar]", "[vvar_vclock]":
			here[m.Name] = m.End - m.Start
		}
	}
	there := map[string]uint64{}
	for i := range im.Areas {
		if a := &im.Areas[i]; a.Kind.Special() {
			there[a.Name] = uint64(a.End - a.Start)
		}
	}
	for name, n := range here {
		if there[name] != n {
			return bad("the image's %s is %d bytes, this kernel's is %d (image taken on kernel %s)",
				name, there[name], n, im.Process.Kernel)
		}
	}
	for name := range there {
		if _, ok := here[name]; !ok {
			return bad("the image has %s, this kernel has none (image taken on kernel %s)", name, im.Process.Kernel)
		}
	}
	return nil
}

// Run restores the image at path and waits for the restored program.  The
// program runs in new user, PID and mount namespaces, with its original PID
// and thread IDs: the restore stub makes the namespaces and forks their
// PID 1, which forks the program with its PID; each forwards signals to its
// child.  Run forwards signals it receives to the stub, and returns the
// program's exit status (128+N if a signal N killed it).
func Run(path string, o *Options) (int, error) {
	relay := relaySignals()
	defer relay.close()
	// The metadata is read while the signals are being caught; the check
	// of the data waits for them (see signalRelay).
	im, fd, chain, closeChain, checked, err := loadToRun(path, o, func() {
		if !o.Lazy {
			relay.caught()
		}
	})
	if err != nil {
		return 0, err
	}
	var lz *loader
	if !o.Eager {
		lz = newLoader(im, fd, chain, o.Lazy)
	}
	if chain != nil && lz == nil {
		// Only a loader reads the parents where they are: gather
		// (loadToRun saw that one could serve; mapping failed since).
		closeChain()
		unix.Close(fd)
		if im, fd, checked, err = load(path, o, true); err != nil {
			return 0, err
		}
		chain, closeChain = nil, func() {}
		lz = newLoader(im, fd, nil, o.Lazy)
	}
	defer closeChain()
	ownFD := true // until it is passed to the stub, which closes ours
	defer func() {
		if ownFD {
			unix.Close(fd)
		}
	}()
	if lz != nil {
		defer lz.close()
	}
	// Without a loader, restart writes the pages in before the program
	// runs, on every CPU (fill.go).
	var fl *filler
	if lz == nil {
		fl = newFiller(im, fd)
	}
	filling := false // fl.serve owns fl from then on
	defer func() {
		if fl != nil && !filling {
			fl.close()
		}
	}()
	if !checked {
		if err := checkRest(fd, im, lz, fl, o); err != nil {
			return 0, bad("%w", err)
		}
	}
	phase("the image is checked")
	if err := checkHost(im); err != nil {
		return 0, err
	}
	start, end, err := stubRange()
	if err != nil {
		return 0, err
	}
	loaderOnly := lz != nil
	p, err := choosePlan(im.Areas, start, end, argsBlobSize(im, loaderOnly), len(im.Threads))
	if err != nil {
		return 0, bad("%w", err)
	}
	p.loaderOnly = loaderOnly
	files, cuts, err := reopenFiles(im, fdReader(fd), o.warn)
	if err != nil {
		return 0, err
	}
	if fl != nil && fl.verify {
		fl.cuts, fl.warn = cuts, o.warn // once the filler has checked the image
	} else if err := applyCuts(cuts, o.warn); err != nil {
		return 0, err
	}
	// The child gets 0-2, then every descriptor the stub moves into place
	// at numbers above all the ones they take, then the image, the
	// argument blob and the stub itself.
	next := 3
	for _, f := range files {
		next = max(next, f.to+1)
	}
	child := map[int]int{} // child's number -> ours
	place := func(ours int) int {
		child[next] = ours
		next++
		return next - 1
	}
	for i := range files {
		files[i].from = place(files[i].from)
	}
	imageAt := place(fd)
	ownFD = false
	if lz != nil {
		p.uffdDev, p.uffdSock = int32(place(lz.dev)), int32(place(lz.stubSock))
		lz.dev, lz.stubSock = -1, -1 // closed below, once the stub has them
	}
	if fl != nil {
		p.fillSock = int32(place(fl.stubSock))
		fl.stubSock = -1
	}
	argsFD, err := memfd("ckpt-restore-args", unix.MFD_CLOEXEC, nil)
	if err != nil {
		return 0, err
	}
	argsAt := place(argsFD)
	stubFD, err := memfd("ckpt-restore", unix.MFD_CLOEXEC, stubELF)
	if err != nil {
		return 0, err
	}
	stubAt := place(stubFD)
	if err := writeAll(argsFD, encodeArgs(im, &p, imageAt, files, epollRegs(im.Files), true)); err != nil {
		return 0, err
	}
	childFiles := make([]uintptr, next)
	for at := range childFiles {
		childFiles[at] = ^uintptr(0) // closed
	}
	childFiles[0], childFiles[1], childFiles[2] = 0, 1, 2
	for at, ours := range child {
		childFiles[at] = uintptr(ours)
	}
	applyProcessState(&im.Process, o.warn)
	// The stub dies with the thread that started it (Pdeathsig): if
	// restart dies, so does everything it restored, since a program
	// still being loaded (lazy.go) would otherwise read zeros where its
	// pages are missing.  Go ends a thread only when a goroutine locked
	// to it returns.
	runtime.LockOSThread()
	// The stub makes the user, PID and mount namespaces itself
	// (linker/stub.c, ck_enter_namespaces): Go would fork without vfork
	// to make them here.
	proc, err := startStub("/proc/self/fd/"+strconv.Itoa(stubAt),
		[]string{"ckpt-restore", strconv.Itoa(argsAt)}, childFiles)
	for _, ours := range child {
		unix.Close(ours)
	}
	if err != nil {
		return 0, fmt.Errorf("starting the restore stub: %w", err)
	}
	defer proc.close()
	phase("the stub is started")
	if fl != nil {
		filling = true
		go fl.serve()
	}
	kept, sigs := relay.handOver()
	var stubTakes sync.Once
	forward := func(sig os.Signal) {
		stubTakes.Do(func() { waitSignalTaken(proc.pid, sig.(syscall.Signal)) })
		proc.signal(sig.(syscall.Signal))
	}
	for _, sig := range kept {
		forward(sig)
	}
	if lz != nil {
		lz.setKill(func() { proc.signal(syscall.SIGKILL) }) // the namespace's init dies with it, and everything in it
		lz.start()
	}
	if o.Started != nil {
		go func() {
			if pid, err := leaderPID(proc.pid); err == nil {
				o.Started(pid)
			}
		}()
	}
	type ended struct {
		ws  syscall.WaitStatus
		err error
	}
	done := make(chan ended, 1)
	go func() {
		ws, err := proc.wait()
		done <- ended{ws, err}
	}()
	for {
		select {
		case sig := <-sigs:
			switch sig {
			case syscall.SIGCHLD, syscall.SIGURG, syscall.SIGWINCH:
				if sig != syscall.SIGWINCH {
					continue
				}
			}
			forward(sig)
		case st := <-done:
			if lz != nil {
				if err := lz.wait(); err != nil {
					return 0, bad("%w", err)
				}
			}
			if fl != nil {
				if err := fl.wait(); err != nil {
					return 0, err
				}
			}
			if st.err != nil {
				return 1, fmt.Errorf("waiting for the restored process: %w", st.err)
			}
			if st.ws.Signaled() {
				return 128 + int(st.ws.Signal()), nil
			}
			return st.ws.ExitStatus(), nil
		}
	}
}

// checkRest checks the data load left unchecked that no one checks later:
// with --lazy, the loader checks each run it loads; the filler checks each
// run as it writes it (the image is read once); the rest (shared memory,
// files' contents, or everything) is checked here, before the start.
func checkRest(fd int, im *image.Image, lz *loader, fl *filler, o *Options) error {
	check, total := im, im.StoredBytes()
	progress := o.progressFrom(0, total) // up to total: all checked here
	switch {
	case lz != nil && o.checkWhileLoading():
		check = areasWhere(im, func(a *image.Area) bool { return !lazyArea(a) })
		progress = nil // the rest is checked while the program runs
	case fl != nil && !savesFiles(im):
		// (Putting a file's saved contents back waits for the check,
		// so the filler checks only without them.)
		check = areasWhere(im, func(a *image.Area) bool { return !filledHere(a) })
		fl.verify = true
		fl.progress = o.progressFrom(check.StoredBytes(), total)
	}
	return image.VerifyData(fdReader(fd), check, progress)
}

// waitSignalTaken waits until the stub blocks or catches sig, as it does
// from its first instruction on: until then sig sent to it has its default
// action (SIGUSR2 would end it), and a checkpoint request kept for the
// program would be lost.  It gives up after two seconds.
func waitSignalTaken(pid int, sig syscall.Signal) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	for i := 0; i < 2000; i++ {
		b, err := os.ReadFile(path)
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(b), "\n") {
			for _, key := range []string{"SigBlk:", "SigCgt:"} {
				if v, ok := strings.CutPrefix(line, key); ok {
					if mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil && mask&(1<<(sig-1)) != 0 {
						return
					}
				}
			}
		}
		time.Sleep(time.Millisecond)
	}
}

// leaderPID finds the restored program: the only child of the only child
// of the stub (the new PID namespace's init).
func leaderPID(stubPID int) (int, error) {
	initPID, err := onlyChild(stubPID)
	if err != nil {
		return 0, err
	}
	return onlyChild(initPID)
}

// onlyChild waits for process pid to have a child and returns it.
func onlyChild(pid int) (int, error) {
	path := fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)
	for i := 0; i < 500; i++ {
		b, err := os.ReadFile(path)
		if err != nil {
			return 0, err
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			return strconv.Atoi(f[0])
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, fmt.Errorf("the restored process did not start")
}

func writeAll(fd int, data []byte) error {
	for off := 0; off < len(data); {
		n, err := unix.Write(fd, data[off:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("writing a memory file: %w", err)
		}
		off += n
	}
	return nil
}

// memfd returns a memory file holding data.
func memfd(name string, flags int, data []byte) (int, error) {
	// MFD_EXEC says the file may be executed, where the kernel asks
	// (vm.memfd_noexec); older kernels reject the flag.
	fd, err := unix.MemfdCreate(name, flags|unix.MFD_EXEC)
	if errors.Is(err, unix.EINVAL) {
		fd, err = unix.MemfdCreate(name, flags)
	}
	if err != nil {
		return -1, fmt.Errorf("creating a memory file: %w", err)
	}
	return fd, writeAll(fd, data)
}
