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

// hugePage is the size of an x86-64 transparent huge page.
const hugePage = 2 << 20

// Slice returns make([]T, n), its memory faulted in, on huge pages where
// the slice spans whole ones.  T must hold no pointers: the memory is
// advised and populated behind the garbage collector's back, which is
// harmless for plain bytes (it is the heap's own memory either way).
func Slice[T any](n int) []T {
	s := make([]T, n)
	var t T
	if size := uintptr(n) * unsafe.Sizeof(t); size >= hugePage {
		Populate(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), size))
	}
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
	if in, out := (start+hugePage-1)&^(hugePage-1), end&^(hugePage-1); in < out {
		madvise(in, out-in, unix.MADV_HUGEPAGE)
	}
	page := uintptr(unix.Getpagesize())
	// A huge page at a time, or the small pages up to the next one: a
	// fork, which takes the memory map's lock, never waits long.
	for a, end := start&^(page-1), (end+page-1)&^(page-1); a < end; {
		next := min(end, (a+hugePage)&^(hugePage-1))
		// Before Linux 5.14 (EINVAL), the pages fault in as they are
		// written.
		madvise(a, next-a, unix.MADV_POPULATE_WRITE)
		a = next
	}
}

func madvise(addr, n uintptr, advice int) {
	unix.Syscall(unix.SYS_MADVISE, addr, n, uintptr(advice))
}
