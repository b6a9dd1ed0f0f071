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

// newScratchPages returns an empty slice with room for n tracked pages in
// a mapping of its own, or nil if there is none.
func newScratchPages(n int) []trackedPage {
	if n == 0 {
		return nil
	}
	b, err := unix.Mmap(-1, 0, n*int(unsafe.Sizeof(trackedPage{})), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil
	}
	return unsafe.Slice((*trackedPage)(unsafe.Pointer(&b[0])), n)[:0]
}

// freeScratchPages unmaps what newScratchPages mapped.
func freeScratchPages(pages []trackedPage) {
	if cap(pages) == 0 {
		return
	}
	unix.Munmap(scratchBytes(pages))
}

func scratchBytes(pages []trackedPage) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(pages))), cap(pages)*int(unsafe.Sizeof(trackedPage{})))
}

// Scratch returns the tracker's scratch memory, for Request.Scratch.
func (t *Tracker) Scratch() (span.Span, bool) {
	if cap(t.scratch) == 0 {
		return span.Span{}, false
	}
	start := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(t.scratch))))
	return span.Span{Start: start, End: start + uint64(len(scratchBytes(t.scratch)))}, true
}
