package restart

import (
	"encoding/binary"

	"github.com/ckpt/ckpt/go/image"
)

// The restore stub's input, struct ck_restore_args in linker/ck_restore.h.
// encodeArgs writes its fields in declaration order; the sizes below are
// the C struct sizes, which the header checks with _Static_assert.
const (
	argsMagic   = 0x5347524154534b43 // "CKSTARGS"
	argsVersion = 4
	argsSize    = 2512 // sizeof(struct ck_restore_args)
	areaSize    = 48   // sizeof(struct ck_restore_area)
	runSize     = 24   // sizeof(struct ck_restore_run)
	fdSize      = 16   // sizeof(struct ck_restore_fd)
	threadSize  = 152  // sizeof(struct ck_restore_thread)
	epollSize   = 24   // sizeof(struct ck_restore_epoll)
	timerSize   = 64   // sizeof(struct ck_timer)

	// threadStack is CK_THREAD_STACK: the stub's stack for each thread
	// it recreates, until the thread jumps back into the program.
	threadStack = 16384
)

// plan is where the stub puts itself and its helpers in the new process.
type plan struct {
	relocAddr   uint64 // 0: the stub stays at its link address
	argsAddr    uint64
	argsLen     uint64
	parkAddr    uint64
	parkLen     uint64
	stacksAddr  uint64
	stacksLen   uint64
	scratchAddr uint64
	scratchLen  uint64
	// The stub's descriptors for lazy loading (lazy.go): -1, -1 to
	// copy every page before the program runs.
	uffdDev, uffdSock int32
	// The stub's end of the filler's socket (fill.go), or -1: the stub
	// copies the pages the loader does not serve itself.
	fillSock int32
	// loaderOnly: the loader checked that it can serve the program's
	// private memory, so its runs are not passed (areaLoader).
	loaderOnly bool
	stubStart  uint64
	stubEnd    uint64
}

// areaLoader is CK_AREA_LOADER: the area's pages come only from the loader.
const areaLoader = 2

// passedRuns reports whether the stub gets a's runs: not those the loader
// alone serves.
func passedRuns(a *image.Area, loaderOnly bool) bool { return !loaderOnly || !lazyArea(a) }

// stubRuns is the number of runs the stub gets for a: one per stretch of
// stored pages (the stub knows no masks).
func stubRuns(a *image.Area) uint64 {
	n := uint64(0)
	for _, r := range a.Runs {
		n += r.StretchCount()
	}
	return n
}

func argsBlobSize(im *image.Image, loaderOnly bool) uint64 {
	// Room for a passed descriptor per saved one (0-2 are not passed).
	n := uint64(argsSize) + uint64(len(im.Areas))*areaSize + uint64(len(im.Files))*fdSize +
		uint64(len(im.Threads))*threadSize + uint64(len(im.Process.Timers))*timerSize
	for i := range im.Files {
		n += uint64(len(im.Files[i].Epoll)) * epollSize
	}
	for i := range im.Areas {
		if passedRuns(&im.Areas[i], loaderOnly) {
			n += stubRuns(&im.Areas[i]) * runSize
		}
	}
	return n
}

type blob struct{ b []byte }

func (w *blob) u32(v uint32) { w.b = binary.LittleEndian.AppendUint32(w.b, v) }
func (w *blob) u64(v uint64) { w.b = binary.LittleEndian.AppendUint64(w.b, v) }

// encodeArgs renders the blob the stub reads.
func encodeArgs(im *image.Image, p *plan, imageFD int, files []passedFD, regs []epollReg, nsInit bool) []byte {
	size := argsBlobSize(im, p.loaderOnly)
	w := &blob{b: make([]byte, 0, size)}
	proc := &im.Process
	w.u64(argsMagic)
	w.u32(argsVersion)
	w.u32(uint32(imageFD))
	w.u64(size)
	w.u64(p.argsAddr)
	w.u64(p.argsLen)
	w.u64(p.stubStart)
	w.u64(p.stubEnd)
	w.u64(p.relocAddr)
	w.u64(p.parkAddr)
	w.u64(p.parkLen)
	w.u64(uint64(proc.RestoreInfo))
	mm := proc.MM
	setMM := mm.StartCode != 0 && mm.StartStack != 0 && mm.StartBrk != 0 && mm.StartBrk <= proc.Brk
	if setMM {
		w.u64(1)
	} else {
		w.u64(0)
	}
	// struct ck_mm_map (prctl_mm_map)
	for _, v := range []image.Addr{mm.StartCode, mm.EndCode, mm.StartData, mm.EndData, mm.StartBrk,
		proc.Brk, mm.StartStack, mm.ArgStart, mm.ArgEnd, mm.EnvStart, mm.EnvEnd} {
		w.u64(uint64(v))
	}
	w.u64(0)          // auxv
	w.u32(0)          // auxv_size
	w.u32(0xffffffff) // exe_fd: leave /proc/PID/exe alone
	var comm [16]byte
	copy(comm[:15], proc.Name)
	w.b = append(w.b, comm[:]...)
	for _, a := range proc.Sigactions {
		w.u64(a.Handler)
		w.u64(a.Flags)
		w.u64(a.Restorer)
		w.u64(a.Mask)
	}
	nruns := uint64(0)
	for i := range im.Areas {
		if passedRuns(&im.Areas[i], p.loaderOnly) {
			nruns += stubRuns(&im.Areas[i])
		}
	}
	areasOff := uint64(argsSize)
	runsOff := areasOff + uint64(len(im.Areas))*areaSize
	fdsOff := runsOff + nruns*runSize
	threadsOff := fdsOff + uint64(len(im.Files))*fdSize
	epollOff := threadsOff + uint64(len(im.Threads))*threadSize
	timersOff := epollOff + uint64(len(regs))*epollSize
	w.u64(uint64(len(im.Areas)))
	w.u64(areasOff)
	w.u64(nruns)
	w.u64(runsOff)
	for _, t := range proc.Itimers {
		w.u64(uint64(t.IntervalSec))
		w.u64(uint64(t.IntervalUsec))
		w.u64(uint64(t.ValueSec))
		w.u64(uint64(t.ValueUsec))
	}
	w.u64(uint64(len(files)))
	w.u64(fdsOff)
	w.u32(uint32(proc.PID))
	if nsInit {
		w.u32(1)
	} else {
		w.u32(0)
	}
	w.u64(uint64(len(im.Threads)))
	w.u64(threadsOff)
	w.u64(p.stacksAddr)
	w.u64(p.stacksLen)
	w.u64(uint64(len(regs)))
	w.u64(epollOff)
	w.u64(uint64(len(proc.Timers)))
	w.u64(timersOff)
	w.u64(p.scratchAddr)
	w.u64(p.scratchLen)
	w.u32(uint32(p.uffdDev))
	w.u32(uint32(p.uffdSock))
	w.u32(uint32(p.fillSock))
	w.u32(0)
	first := uint64(0)
	for i := range im.Areas {
		a := &im.Areas[i]
		flags, n := a.Flags, stubRuns(a)
		if !passedRuns(a, p.loaderOnly) {
			n = 0
			if len(a.Runs) > 0 {
				flags |= areaLoader
			}
		}
		w.u64(uint64(a.Start))
		w.u64(uint64(a.End))
		w.u32(a.Prot)
		w.u32(uint32(a.Kind))
		w.u32(flags)
		w.u32(0)
		w.u64(first)
		w.u64(n)
		first += n
	}
	for i := range im.Areas {
		a := &im.Areas[i]
		if !passedRuns(a, p.loaderOnly) {
			continue
		}
		for _, r := range a.Runs {
			for s := range r.Stretches() {
				w.u64(uint64(a.Start) + s.Page*image.PageSize)
				w.u64(s.Pages * image.PageSize)
				w.u64(s.FileOff)
			}
		}
	}
	for _, f := range files {
		w.u32(uint32(f.from))
		w.u32(uint32(f.to))
		if f.cloexec {
			w.u32(1)
		} else {
			w.u32(0)
		}
		w.u32(0)
	}
	// Room was left for every saved descriptor; 0-2 are not passed.
	w.b = append(w.b, make([]byte, threadsOff-uint64(len(w.b)))...)
	for i := range im.Threads {
		t := &im.Threads[i]
		for _, v := range []uint64{t.RBX, t.RBP, t.R12, t.R13, t.R14, t.R15, t.RSP, t.RIP,
			uint64(t.FSBase), uint64(t.RobustHead), t.RobustLen, uint64(t.ClearChildTID), uint64(t.RseqAddr)} {
			w.u64(v)
		}
		w.u32(t.RseqLen)
		w.u32(t.RseqSig)
		w.u64(uint64(t.AltstackSP))
		w.u64(t.AltstackSize)
		w.u32(uint32(t.AltstackFlags))
		w.u32(uint32(t.TID))
		var name [16]byte
		copy(name[:15], t.Name)
		w.b = append(w.b, name[:]...)
	}
	for _, r := range regs {
		w.u32(uint32(r.epfd))
		w.u32(uint32(r.tfd))
		w.u32(r.events)
		w.u32(0)
		w.u64(r.data)
	}
	for _, t := range proc.Timers {
		for _, v := range []int32{t.ID, t.Clock, t.Signal, t.Notify, t.TID, 0} {
			w.u32(uint32(v))
		}
		w.u64(t.Value)
		for _, v := range []int64{t.IntervalSec, t.IntervalNsec, t.ValueSec, t.ValueNsec} {
			w.u64(uint64(v))
		}
	}
	// Room was left for every registration; some may be dropped.
	w.b = append(w.b, make([]byte, size-uint64(len(w.b)))...)
	return w.b
}
