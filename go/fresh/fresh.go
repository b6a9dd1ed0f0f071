// Package fresh makes large slices whose memory is touched right away.
//
// Memory the process never touched costs a page fault and a page of
// zeros for every 4 KiB when it is first written: 230 to 820 MiB/s on the
// machines ckpt is measured on, so the 8 MiB of runs of an image with
// 262,000 of them took 6-7 ms just to write.  Faulted in by the kernel in
// one go on transparent huge pages it takes about 1 ms.  (The kernel falls
// back to small pages where it has no huge ones, or where huge pages are
// off: "never" in /sys/kernel/mm/transparent_hugepage/enabled.)
package fresh

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// HugePage is the size of an x86-64 transparent huge page.
const HugePage = 2 << 20

// Slice returns make([]T, n), its memory faulted in on huge pages if it
// is half a huge page or more.  T must hold no pointers: the memory is
// advised and populated behind the garbage collector's back, which is
// harmless for plain bytes (it is the heap's own memory either way).
//
// Such a slice starts on a huge page boundary (give or take part of one
// element), from an allocation up to two huge pages larger whose ends are
// never touched (the Go heap aligns large objects to 8 KiB only, and the
// unaligned first and last megabytes of a slice would be small pages),
// and the huge page it ends in is populated whole.  The first touch of a
// small page costs a fault even when the kernel populated it, and on some
// virtual machines that fault is slow: 4 MiB of populated small pages
// took 4.6 ms to write once, on huge pages 0.02 ms (a PVM guest, 2026-12).
func Slice[T any](n int) []T {
	var t T
	size := uintptr(n) * unsafe.Sizeof(t)
	if size < HugePage/2 {
		return make([]T, n)
	}
	all := make([]T, n+int(2*HugePage/unsafe.Sizeof(t))+2)
	base := uintptr(unsafe.Pointer(unsafe.SliceData(all)))
	// The first element in the first huge page that starts inside all.
	from := ((base+HugePage-1)&^(HugePage-1) - base + unsafe.Sizeof(t) - 1) / unsafe.Sizeof(t)
	s := all[from : int(from)+n : int(from)+n]
	// Whole huge pages: from the one s starts in (which starts in all)
	// up to the end of the one s ends in, which all holds too.
	first := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
	start, end := first&^(HugePage-1), (first+size+HugePage-1)&^(HugePage-1)
	Populate(unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(all)), start-base)), end-start))
	return s
}

// Populate faults in the pages of b, which must be private anonymous
// memory (the Go heap, or a mapping of its own), on huge pages where b
// spans whole ones.
func Populate(b []byte) {
	if len(b) == 0 {
		return
	}
	start := uintptr(unsafe.Pointer(&b[0]))
	end := start + uintptr(len(b))
	// madvise takes whole pages; the 2 MiB-aligned inside of b becomes
	// huge pages, the rest small ones.
	if in, out := (start+HugePage-1)&^(HugePage-1), end&^(HugePage-1); in < out {
		madvise(in, out-in, unix.MADV_HUGEPAGE)
	}
	page := uintptr(unix.Getpagesize())
	// A huge page at a time, or the small pages up to the next one: a
	// fork, which takes the memory map's lock, never waits long.
	for a, end := start&^(page-1), (end+page-1)&^(page-1); a < end; {
		next := min(end, (a+HugePage)&^(HugePage-1))
		// Before Linux 5.14 (EINVAL), the pages fault in as they are
		// written.
		madvise(a, next-a, unix.MADV_POPULATE_WRITE)
		a = next
	}
}

func madvise(addr, n uintptr, advice int) {
	unix.Syscall(unix.SYS_MADVISE, addr, n, uintptr(advice))
}

// Map returns a private anonymous mapping (whole, for unix.Munmap) and
// b, n bytes of it that start on a huge page boundary, populated on huge
// pages as Slice's are, for memory that must be left out of forks
// (MADV_DONTFORK) or unmapped when done.
func Map(n int) (whole, b []byte, err error) {
	rounded := (n + HugePage - 1) &^ (HugePage - 1)
	whole, err = unix.Mmap(-1, 0, rounded+HugePage, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, nil, err
	}
	off := int(-uintptr(unsafe.Pointer(&whole[0])) & (HugePage - 1))
	Populate(whole[off : off+rounded])
	return whole, whole[off : off+n], nil
}
