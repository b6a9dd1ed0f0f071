package dump

import (
	"unsafe"

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

// newScratch returns an empty slice with room for n values in a mapping of
// its own, or nil if there is none.  Only what is written of it becomes
// resident.
func newScratch[T any](n int) []T {
	if n == 0 {
		return nil
	}
	var v T
	b, err := unix.Mmap(-1, 0, n*int(unsafe.Sizeof(v)), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&b[0])), n)[:0]
}

// freeScratch unmaps what newScratch mapped.
func freeScratch[T any](s []T) {
	if cap(s) == 0 {
		return
	}
	unix.Munmap(scratchBytes(s))
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
