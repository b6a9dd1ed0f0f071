package dump

import (
	"slices"
	"sort"
	"sync"
	"unsafe"

	"github.com/ckpt/ckpt/go/fresh"
	"github.com/ckpt/ckpt/go/image"
	"github.com/ckpt/ckpt/go/span"
	"golang.org/x/sys/unix"
)

// Scratch memory is memory of the library's own that no image needs, such
// as the tracker of an incremental chain: rebuilt at every checkpoint and
// dropped after a restart.  In the Go heap it would be written anew before
// each snapshot and so stored in each incremental image (20 MiB for 2 GiB
// of pages).  It is mapped apart instead, the library lists it in
// Request.Scratch, and images keep its addresses but not its contents: it
// comes back as zeros.

// Scratch memory comes from one stretch of address space reserved once
// (arena), not from wherever the kernel finds room: a program that unmaps
// a range of its own and maps it again with MAP_FIXED (tests/progs/churn
// moves an area so) expects no other thread to map anything there in
// between.  Library memory placed in such a hole was replaced under it
// (a fault in the library), or held the program's memory when the library
// wrote to it.  The Go runtime's own mappings can still land there.
const arenaSize = 16 << 30

var arena struct {
	sync.Mutex
	base  unsafe.Pointer // nil: not reserved (yet)
	tried bool
	free  []span.Span // offsets from base, in order, not touching
}

// mapScratch maps n bytes (rounded up to pages) of scratch memory, from
// the arena while it has room, or nil.  Scratch memory of a huge page or
// more starts on a huge page boundary and is advised to be made of huge
// pages: the notes of a 2 GiB area are 8 MiB written in a few
// milliseconds, and where first touching a small page costs a slow fault
// (10 us on a PVM guest, 2026-12) that was 2,000 faults each.  What is
// written of it becomes resident a huge page at a time.
func mapScratch(n int) []byte {
	if n <= 0 {
		return nil
	}
	size := pageRound(uint64(n))
	align := uint64(image.PageSize)
	if size >= fresh.HugePage {
		align = fresh.HugePage
	}
	arena.Lock()
	defer arena.Unlock()
	if !arena.tried {
		arena.tried = true
		// One huge page more than the arena, for its start to be one.
		p, err := unix.MmapPtr(-1, 0, nil, arenaSize+fresh.HugePage, unix.PROT_NONE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
		if err == nil {
			p = unsafe.Add(p, -uintptr(p)&(fresh.HugePage-1))
			arena.base, arena.free = p, []span.Span{{Start: 0, End: arenaSize}}
		}
	}
	for i, sp := range arena.free {
		at := (sp.Start + align - 1) &^ (align - 1)
		if at+size > sp.End {
			continue
		}
		p, err := unix.MmapPtr(-1, 0, unsafe.Add(arena.base, at), uintptr(size), unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE|unix.MAP_FIXED)
		if err != nil {
			break
		}
		// What is left of the free stretch before and after.
		var left []span.Span
		if sp.Start < at {
			left = append(left, span.Span{Start: sp.Start, End: at})
		}
		if at+size < sp.End {
			left = append(left, span.Span{Start: at + size, End: sp.End})
		}
		arena.free = slices.Replace(arena.free, i, i+1, left...)
		b := unsafe.Slice((*byte)(p), size)
		if align == fresh.HugePage {
			unix.Madvise(b, unix.MADV_HUGEPAGE)
		}
		return b
	}
	b, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil
	}
	return b
}

// unmapScratch gives back what mapScratch mapped: to the arena (mapped
// again without access, its pages dropped), or to the kernel.
func unmapScratch(b []byte) {
	if cap(b) == 0 {
		return
	}
	size := pageRound(uint64(cap(b)))
	p := unsafe.Pointer(unsafe.SliceData(b))
	arena.Lock()
	defer arena.Unlock()
	if arena.base == nil || uintptr(p) < uintptr(arena.base) || uintptr(p) >= uintptr(arena.base)+arenaSize {
		unix.Munmap(b[:cap(b)])
		return
	}
	off := uint64(uintptr(p) - uintptr(arena.base))
	if _, err := unix.MmapPtr(-1, 0, p, uintptr(size), unix.PROT_NONE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE|unix.MAP_FIXED); err != nil {
		return // leaked, not reused: it may still hold pages
	}
	l := arena.free
	i := sort.Search(len(l), func(i int) bool { return l[i].Start >= off })
	l = slices.Insert(l, i, span.Span{Start: off, End: off + size})
	if i+1 < len(l) && l[i].End == l[i+1].Start {
		l[i].End = l[i+1].End
		l = slices.Delete(l, i+1, i+2)
	}
	if i > 0 && l[i-1].End == l[i].Start {
		l[i-1].End = l[i].End
		l = slices.Delete(l, i, i+1)
	}
	arena.free = l
}

// MapScratch and UnmapScratch give go/lib scratch memory of its own (see
// Request.Scratch for what images do with it).
func MapScratch(n int) []byte { return mapScratch(n) }
func UnmapScratch(b []byte)   { unmapScratch(b) }

// newScratch returns an empty slice with room for n values in scratch
// memory, or nil if there is none.  Only what is written of it becomes
// resident.
func newScratch[T any](n int) []T {
	if n == 0 {
		return nil
	}
	var v T
	b := mapScratch(n * int(unsafe.Sizeof(v)))
	if b == nil {
		return nil
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&b[0])), n)[:0]
}

// freeScratch unmaps what newScratch mapped.
func freeScratch[T any](s []T) {
	if cap(s) == 0 {
		return
	}
	unmapScratch(scratchBytes(s))
}

func scratchBytes[T any](s []T) []byte {
	var v T
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), cap(s)*int(unsafe.Sizeof(v)))
}

// scratchSpan returns the address range of what newScratch mapped.
func scratchSpan[T any](s []T) (span.Span, bool) {
	if cap(s) == 0 {
		return span.Span{}, false
	}
	start := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(s))))
	return span.Span{Start: start, End: start + uint64(len(scratchBytes(s)))}, true
}

// Scratch returns the tracker's scratch memory, for Request.Scratch.
func (t *Tracker) Scratch() (span.Span, bool) { return scratchSpan(t.scratch) }
