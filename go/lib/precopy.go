package main

/*
#include "cc_shim/shim.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sort"
	"unsafe"

	"github.com/ckpt/ckpt/go/dump"
	"github.com/ckpt/ckpt/go/image"
	"github.com/ckpt/ckpt/go/procfs"
	"github.com/ckpt/ckpt/go/span"
	"github.com/ckpt/ckpt/go/uapi"
	"golang.org/x/sys/unix"
)

// Copying before the pause.  The fork that takes the snapshot copies a page
// table entry per 4 KiB page: 50-100 ms for 2 GiB of small pages, the
// whole of a first checkpoint's pause.  So the program's big private
// anonymous areas are copied into the image while it runs, with the
// kernel tracking its writes to them (the asynchronous write protection of
// tracking.go, here for every checkpoint, not only incremental ones):
//
//  1. register the areas and protect their pages; copy them all;
//  2. copy again what the program wrote meanwhile, until little is left;
//  3. in the pause (cc_shim/precopy.c): check that each area is still the
//     mapping copied, copy what was written since into scratch memory
//     populated beforehand, and leave the area out of the fork;
//  4. after the pause, store those copies and finish the image with
//     everything else from the snapshot child as before.
//
// An area the pause finds changed (unmapped, moved, protected differently,
// no longer tracked) or too written for the scratch memory is forked like
// any other; its first copies stay in the file unused.
//
// An incremental checkpoint (CKPT_INCREMENTAL) copies in step 1 only what
// the kernel saw written since the last image, where it can tell: the
// first scan of each area both answers that and resets the tracking, so
// the pause's own scan (tracking.go) does not have those areas any more,
// and an area the pause leaves to the fork is compared by hashes.
//
// CKPT_PRECOPY=0 turns it off, and CKPT_PRECOPY=all (for tests) uses it
// for every private anonymous area, however little it holds.
// CKPT_PRECOPY=check (for tests; "all,check" for both) leaves the areas in
// the fork as well, and the image's pages are compared with the snapshot
// child's.

const (
	// precopyArea is the least resident memory of an area copied before
	// the pause; a fork copies a smaller one's table in well under a
	// millisecond.
	precopyArea = 1 << 20
	// precopyTotal is the least resident memory worth copying before the
	// pause: below it the whole fork takes a few milliseconds.
	precopyTotal = 32 << 20
	// precopyPasses bounds step 2.
	precopyPasses = 3
	// Scratch memory for the pause's copies: a sixteenth of the areas,
	// within these bounds.
	scratchMin, scratchMax = 4 << 20, 128 << 20
)

// precopyRun is one checkpoint's precopy.
type precopyRun struct {
	p       *dump.Precopy
	asked   []int  // the precopy's area for each area handed to the shim
	scratch []byte // the pause's copies: populated, left out of forks
	check   bool   // CKPT_PRECOPY=check: the fork keeps the areas
}

// startPrecopy runs steps 1 and 2 for an image at path, incremental on prev
// if not nil, compressed with compress, and hands the areas to the shim.
// It returns nil when the snapshot should fork everything.
//
// It is only a way to a shorter pause: when it cannot be used (no write
// tracking, a device that writes memory unseen, no room for the image) the
// checkpoint forks everything, and says what failed if that fails too.
func startPrecopy(cfg *config, path string, prev *dump.Tracker, compress bool) *precopyRun {
	if err := writes.start(); err != nil {
		cfg.precopy = false
		return nil
	}
	var since image.ImageID // the image whose snapshot the tracking counts from
	if prev != nil && cfg.track {
		since = prev.Images[len(prev.Images)-1].ID
	}
	areas, first := precopyAreas(cfg.precopyAll, since)
	if areas == nil {
		return nil
	}
	scratch := []span.Span{writes.scratch()}
	if chain.tracker != nil {
		if sp, ok := chain.tracker.Scratch(); ok {
			scratch = span.Insert(scratch, sp)
		}
	}
	p, err := dump.StartPrecopy(path, areas,
		dump.PrecopyOptions{Track: cfg.chain > 1, Prev: prev, Compress: compress, Buffered: cfg.buffered, Scratch: scratch})
	if err != nil {
		return nil
	}
	run := &precopyRun{p: p, check: cfg.precopyCheck}
	if err := run.copy(first); err != nil {
		run.abort()
		return nil
	}
	run.handOver()
	if compress {
		// The compressors' encoders (several MiB each, their tables full
		// of hashes that do not compress) stay pooled in the Go heap,
		// where the snapshot would hold them: without the precopy they
		// only come after it.  A pool lets go of what survived two
		// collections.  Only after handOver, which waits for the
		// compressors: an encoder still in use is not in the pool.
		runtime.GC()
		debug.FreeOSMemory()
	}
	return run
}

// precopyAreas returns the private anonymous areas worth copying before the
// pause, registered for write tracking and protected: from here on the
// kernel notes every write to them.  Nothing, if all of them together hold
// too little memory to be worth it; with all, every one of them.  first
// lists what to copy first: the pages written since the snapshot of image
// since (if not zero) where the kernel tracked them all along, else the
// whole area.
func precopyAreas(every bool, since image.ImageID) (areas []procfs.Mapping, first []span.Span) {
	writes.lost = writes.lost[:0]
	churned.Next()
	text, err := procfs.ReadFile("/proc/self/smaps")
	if err != nil {
		return nil, nil
	}
	uffd, pm := int(C.ckpt_track.uffd), int(C.ckpt_track.pagemap)
	own := writes.scratch()
	all := smapsAreas(text)
	heap := goHeap(all)
	var candidates []procfs.Mapping
	var resident uint64
	for _, s := range all {
		m := s.Mapping
		sp := span.Span{Start: m.Start, End: m.End}
		// Not the program's own MADV_DONTFORK areas ("dc"): the pause's
		// marks are taken off again after the fork, theirs would go too.
		if !trackable(m) || m.Inode != 0 || !m.Read || s.has("dc") || (!every && s.rss < precopyArea) ||
			own.Overlaps(sp) || churned.Skips(sp) || heap.Overlaps(sp) {
			continue
		}
		candidates = append(candidates, m)
		resident += s.rss
	}
	if !every && resident < precopyTotal {
		return nil, nil
	}
	for _, m := range candidates {
		tracked := since != (image.ImageID{}) && writes.tracksSince(since, m.Start, m.End)
		if registerWP(uffd, m.Start, m.End) != nil {
			continue // another userfaultfd has it
		}
		written, err := scanPagemap(pm, m.Start, m.End, uapi.PMScanWPMatching, uapi.PageIsWritten, uapi.PageIsWritten, tracked)
		// Whatever happened, the pause's scan has lost this area.
		writes.lost = append(writes.lost, span.Span{Start: m.Start, End: m.End})
		if err != nil {
			continue
		}
		areas = append(areas, m)
		if !tracked {
			first = append(first, span.Span{Start: m.Start, End: m.End})
		}
		first = appendSpans(first, written)
	}
	return areas, first
}

// heapProbe is where goHeap's allocation escapes to.
var heapProbe []byte

// goHeap returns the library's Go heap among areas: the anonymous areas
// next to each other around the one an allocation lands in (the runtime
// reserves its arenas in one stretch and maps parts of them as it grows).
// The copy itself writes there all the time (the compressors' state, the
// scans' answers): its pages would be copied again at every pass, and a
// compressed image would keep every copy.  It is forked instead, a few
// MiB.
func goHeap(areas []smapsArea) span.Span {
	heapProbe = make([]byte, 64<<10)
	addr := uint64(uintptr(unsafe.Pointer(&heapProbe[0])))
	i := sort.Search(len(areas), func(i int) bool { return areas[i].End > addr })
	if i == len(areas) || areas[i].Start > addr {
		return span.Span{}
	}
	anon := func(k int) bool { return areas[k].Inode == 0 && areas[k].Name == "" && !areas[k].Shared }
	lo, hi := i, i
	for lo > 0 && areas[lo-1].End == areas[lo].Start && anon(lo-1) {
		lo--
	}
	for hi+1 < len(areas) && areas[hi].End == areas[hi+1].Start && anon(hi+1) {
		hi++
	}
	return span.Span{Start: areas[lo].Start, End: areas[hi].End}
}

// churned is the areas whose copies before the pause went to waste
// lately: they are forked for a while.
var churned dump.Churned

func overlapsAny(l []span.Span, start, end uint64) bool {
	for _, sp := range l {
		if sp.Overlaps(span.Span{Start: start, End: end}) {
			return true
		}
	}
	return false
}

// copy runs steps 1 and 2, step 1 copying first.
func (r *precopyRun) copy(first []span.Span) error {
	if err := r.p.Copy(first); err != nil {
		return err
	}
	areas, _ := r.p.Areas()
	budget := scratchBudget(areas)
	pm := int(C.ckpt_track.pagemap)
	var n uint64 // bytes written since the pass before the last
	for pass := 0; pass < precopyPasses; pass++ {
		var written []span.Span
		for _, m := range areas {
			regions, err := scanPagemap(pm, m.Start, m.End, uapi.PMScanWPMatching, uapi.PageIsWritten, uapi.PageIsWritten, true)
			if err != nil {
				return fmt.Errorf("asking the kernel for written pages: %w", err)
			}
			written = appendSpans(written, regions)
		}
		n = 0
		for _, sp := range written {
			n += sp.End - sp.Start
		}
		if err := r.p.Copy(written); err != nil {
			return err
		}
		if n < budget/4 {
			break
		}
	}
	b := dump.MapScratch(int(budget))
	if b == nil {
		return fmt.Errorf("mapping scratch memory: no memory")
	}
	r.scratch = b
	if err := unix.Madvise(b, unix.MADV_DONTFORK); err != nil {
		return fmt.Errorf("scratch memory: %w", err)
	}
	// Populated now, so that the pause's copies take no faults: as much
	// as four times what the last pass found written, which the pause
	// should find less of.  All of it would cost a 2 GiB program's
	// checkpoint 160-200 ms more (and 128 MiB) for nothing when it wrote
	// little; a pause that copies more takes a fault a page past that.
	unix.Madvise(b[:min(len(b), int(max(4*n, scratchMin)))], unix.MADV_POPULATE_WRITE) // whole pages
	return nil
}

func scratchBudget(areas []procfs.Mapping) uint64 {
	var total uint64
	for _, m := range areas {
		total += m.End - m.Start
	}
	return min(max(total/16, scratchMin), scratchMax) &^ (image.PageSize - 1)
}

// handOver gives the shim the areas for the pause, and closes the image
// file: the snapshot must not hold the precopy's descriptors.
func (r *precopyRun) handOver() {
	pc := &C.ckpt_precopy
	areas, ok := r.p.Areas()
	pc.n = 0
	for i, m := range areas {
		if !ok[i] || int(pc.n) == C.CK_MAX_PRECOPY {
			continue
		}
		a := &pc.areas[pc.n]
		a.start, a.end, a.state = C.uint64_t(m.Start), C.uint64_t(m.End), C.CK_PRECOPY_ASKED
		for k, c := range []byte(dump.Perms(m)) {
			a.perms[k] = C.char(c)
		}
		r.asked = append(r.asked, i)
		pc.n++
	}
	pc.scratch, pc.scratch_len = (*C.uint8_t)(unsafe.Pointer(&r.scratch[0])), C.uint64_t(len(r.scratch))
	pc.keep = 0
	if r.check {
		pc.keep = 1
	}
	r.p.Close()
}

// tookOver stores, after the pause, what it copied of the areas it took.
// With none taken, the precopy is dropped and the image written as without.
func (r *precopyRun) tookOver() (*dump.Precopy, string, error) {
	pc := &C.ckpt_precopy
	defer func() { pc.n = 0 }()
	t := &C.ckpt_track
	regions := unsafe.Slice((*uapi.PageRegion)(unsafe.Pointer(t.regions)), t.cap)
	var reasons [C.CK_PRECOPY_FAILED + 1]int
	var took int
	for k := 0; k < int(pc.n); k++ {
		a := &pc.areas[k]
		reasons[a.state]++
		switch a.state {
		case C.CK_PRECOPY_CHANGED, C.CK_PRECOPY_UNTRACKED, C.CK_PRECOPY_FULL:
			churned.Wasted(span.Span{Start: uint64(a.start), End: uint64(a.end)})
		case C.CK_PRECOPY_TAKEN:
			churned.Taken(span.Span{Start: uint64(a.start), End: uint64(a.end)})
		}
		if a.state != C.CK_PRECOPY_TAKEN {
			continue
		}
		var written, gone []span.Span
		var n uint64
		for _, g := range regions[a.first : a.first+a.n] {
			if g.Categories&(uapi.PageIsPresent|uapi.PageIsSwapped) == 0 {
				gone = append(gone, span.Span{Start: g.Start, End: g.End})
				continue
			}
			written = append(written, span.Span{Start: g.Start, End: g.End})
			n += g.End - g.Start
		}
		if err := r.p.Took(r.asked[k], written, gone, r.scratch[a.scratch_off:a.scratch_off+C.uint64_t(n)]); err != nil {
			return nil, "", err
		}
		took++
	}
	r.unmapScratch()
	if took == 0 {
		r.p.Abort()
		return nil, "", nil
	}
	how := fmt.Sprintf("%d of %d areas copied before the pause", took, pc.n)
	names := []string{C.CK_PRECOPY_CHANGED: "changed", C.CK_PRECOPY_UNTRACKED: "untracked",
		C.CK_PRECOPY_IN_USE: "in use", C.CK_PRECOPY_FULL: "too written", C.CK_PRECOPY_FAILED: "failed"}
	for s, c := range reasons {
		if c > 0 && s > C.CK_PRECOPY_TAKEN {
			how += fmt.Sprintf(", %d %s", c, names[s])
		}
	}
	return r.p, how, nil
}

func (r *precopyRun) unmapScratch() {
	if r.scratch != nil {
		dump.UnmapScratch(r.scratch)
		r.scratch = nil
	}
	C.ckpt_precopy.scratch, C.ckpt_precopy.scratch_len = nil, 0
}

// abort drops the precopy of a checkpoint that failed.
func (r *precopyRun) abort() {
	C.ckpt_precopy.n = 0
	r.unmapScratch()
	r.p.Abort()
}

// forget drops it in a process just restored: the scratch memory was left
// out of the image, and the file is the original process's.
func (r *precopyRun) forget() {
	C.ckpt_precopy.n, C.ckpt_precopy.scratch, C.ckpt_precopy.scratch_len = 0, nil, 0
	r.scratch = nil
	r.p.Free()
}
