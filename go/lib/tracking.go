package main

/*
#include <errno.h>
#include "cc_shim/shim.h"
*/
import "C"

import (
	"fmt"
	"slices"
	"strings"
	"unsafe"

	"github.com/ckpt/ckpt/go/dump"
	"github.com/ckpt/ckpt/go/image"
	"github.com/ckpt/ckpt/go/procfs"
	"github.com/ckpt/ckpt/go/span"
	"github.com/ckpt/ckpt/go/uapi"
	"golang.org/x/sys/unix"
)

// Write tracking for incremental checkpoints: the kernel, not a hash of
// every page, tells which pages changed since the last image.
//
// The program's private writable memory is registered with a userfaultfd
// in asynchronous write-protect mode (Linux 6.7): a write to a protected
// page just clears its protection, with no handler thread and no signal,
// whether the program or the kernel (read(2) into a buffer) writes.  While
// the threads are stopped, before the fork, the shim asks PAGEMAP_SCAN for
// the pages written since the last snapshot and protects them again in the
// same call (cc_shim/track.c), so each answer starts at a snapshot.
//
// What the kernel does not tell is left to the hashes: mappings made since
// the last snapshot (registered here just before this one, so they are
// tracked from then on), mappings that lost their registration (moved by
// mremap, replaced by munmap and mmap: PAGEMAP_SCAN reports only
// registered ones), pages of the file in private file mappings, and shared
// memory.  A page the kernel saw no write to since a snapshot whose image
// was not written (a checkpoint that failed) is not trusted either.
//
// The cost: registering takes the program's first write to each page after
// a checkpoint through a minor fault (about 1.7 us here), and a program
// that registers its own memory with a userfaultfd finds it taken (EBUSY).
// The limit: a write that takes no fault is not seen, such as a device's
// or asynchronous I/O's into a buffer pinned before the snapshot (libaio
// with O_DIRECT, io_uring, RDMA); a process that has such a writer at a
// checkpoint is compared by hashes from then on (go/dump/nofault.go).
// CKPT_TRACK_WRITES=0 leaves the memory alone and compares hashes.

// userEnd is the top of the user address space with 4-level page tables.
const userEnd = 0x7ffffffff000

// writeTracking is the coordinator's side of the tracking; the descriptors
// live in C (ckpt_track), which leaves them out of images.
type writeTracking struct {
	known []span.Span // registered, as of the last snapshot
	fresh []span.Span // registered since the last snapshot
	// since is the image whose snapshot the kernel's answer counts from,
	// zero when no written image matches the last snapshot; prepare
	// moves it to basis for the checkpoint under way.
	since, basis image.ImageID
	// lost lists the areas whose answer the precopy took before the
	// snapshot (go/lib/precopy.go): the pause's scan does not have it.
	lost []span.Span
}

var writes writeTracking

// regionsAtFirst is how many stretches of written pages the shim's buffer
// holds at first (CKPT_TRACK_REGIONS, for tests); it doubles when a
// checkpoint finds more.
var regionsAtFirst uint64 = 1 << 16

// start opens the userfaultfd and /proc/self/pagemap, unless it did.
func (w *writeTracking) start() error {
	if C.ckpt_track.pagemap >= 0 {
		return nil
	}
	fd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK|uapi.UffdUserModeOnly, 0, 0)
	if errno != 0 {
		return fmt.Errorf("userfaultfd: %w", errno)
	}
	uffd := int(fd)
	api := uapi.UffdioAPIArg{API: uapi.UffdAPI, Features: uapi.UffdFeatureWPUnpopulated | uapi.UffdFeatureWPAsync}
	if err := uapi.Ioctl(uffd, uapi.UffdioAPI, unsafe.Pointer(&api)); err != nil {
		unix.Close(uffd)
		return fmt.Errorf("userfaultfd without asynchronous write-protection (Linux 6.7): %w", err)
	}
	pm, err := unix.Open("/proc/self/pagemap", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(uffd)
		return err
	}
	if _, err := scanPagemap(pm, 0, image.PageSize, 0, uapi.PageIsWPAllowed, uapi.PageIsWPAllowed, true); err != nil {
		unix.Close(uffd)
		unix.Close(pm)
		return fmt.Errorf("PAGEMAP_SCAN (Linux 6.7): %w", err)
	}
	if C.ckpt_track.regions == nil {
		if err := growRegions(regionsAtFirst); err != nil {
			unix.Close(uffd)
			unix.Close(pm)
			return err
		}
	}
	C.ckpt_track.uffd, C.ckpt_track.pagemap = C.int32_t(uffd), C.int32_t(pm)
	*w = writeTracking{}
	return nil
}

// growRegions gives the shim a buffer for n regions, in a mapping of its
// own that prepare leaves alone: the kernel writes it after the scan has
// passed its pages, so the tracking would not see it change.  Images leave
// its contents out (scratch).
func growRegions(n uint64) error {
	t := &C.ckpt_track
	b := dump.MapScratch(int(n) * int(unsafe.Sizeof(uapi.PageRegion{})))
	if b == nil {
		return fmt.Errorf("mapping a buffer for the written pages: no memory")
	}
	if t.regions != nil {
		dump.UnmapScratch(regionBuffer())
	}
	t.regions, t.cap, t.n = (*C.uint64_t)(unsafe.Pointer(&b[0])), C.uint64_t(n), 0
	return nil
}

// scratch returns the shim's buffer: no image needs its contents.
func (w *writeTracking) scratch() span.Span {
	buf := regionBuffer()
	start := uint64(uintptr(unsafe.Pointer(&buf[0])))
	return span.Span{Start: start, End: start + uint64(len(buf))}
}

// regionBuffer is the shim's buffer as a byte slice.
func regionBuffer() []byte {
	t := &C.ckpt_track
	return unsafe.Slice((*byte)(unsafe.Pointer(t.regions)), uintptr(t.cap)*unsafe.Sizeof(uapi.PageRegion{}))
}

// stop ends the tracking for good: closing the userfaultfd unregisters the
// memory, and the report buffer goes (no longer scratch, it would be
// stored in images).
func (w *writeTracking) stop() {
	unix.Close(int(C.ckpt_track.uffd))
	unix.Close(int(C.ckpt_track.pagemap))
	dump.UnmapScratch(regionBuffer())
	C.ckpt_track.regions, C.ckpt_track.cap, C.ckpt_track.n = nil, 0, 0
	w.forget()
}

// forget drops the tracking in a process just restored from an image: the
// descriptors were not saved, and nothing is registered any more.
func (w *writeTracking) forget() {
	C.ckpt_track.uffd, C.ckpt_track.pagemap = -1, -1
	*w = writeTracking{}
}

// prepare registers the private writable mappings that are not registered
// yet and protects their pages, just before a snapshot.
func (w *writeTracking) prepare() {
	w.basis, w.since = w.since, image.ImageID{}
	text, err := procfs.ReadFile("/proc/self/maps")
	if err != nil {
		return
	}
	maps, err := procfs.ParseMaps(text)
	if err != nil {
		return
	}
	w.fresh = w.fresh[:0]
	uffd, pm := int(C.ckpt_track.uffd), int(C.ckpt_track.pagemap)
	known := span.Insert(w.known, w.scratch())
	for _, m := range maps {
		if !trackable(m) {
			continue
		}
		for _, sp := range span.Subtract([]span.Span{{Start: m.Start, End: m.End}}, known) {
			if registerWP(uffd, sp.Start, sp.End) != nil {
				continue // taken by another userfaultfd, or not allowed: hashed
			}
			// Protect what is populated, with no output; untouched
			// pages need no protection: their first write makes a
			// page the kernel reports as written.
			scanPagemap(pm, sp.Start, sp.End, uapi.PMScanWPMatching, uapi.PageIsWritten, uapi.PageIsWritten, false)
			w.fresh = append(w.fresh, sp)
		}
	}
}

// registerWP registers [start, end) with the userfaultfd uffd for
// asynchronous write protection.
func registerWP(uffd int, start, end uint64) error {
	reg := struct {
		uapi.UffdioRange
		ioctls uint64
	}{UffdioRange: uapi.UffdioRange{Start: start, Len: end - start, Mode: uapi.UffdRegisterModeWP}}
	return uapi.Ioctl(uffd, uapi.UffdioRegister, unsafe.Pointer(&reg))
}

// trackable reports whether m is private memory the program can write,
// not one of the kernel's special mappings.
func trackable(m procfs.Mapping) bool {
	return !m.Shared && m.Write && m.End <= image.MaxUserAddr &&
		!(strings.HasPrefix(m.Name, "[v") && strings.HasSuffix(m.Name, "]")) // [vdso], [vvar], [vsyscall]
}

// unwritten returns, after a snapshot, the address ranges the kernel saw no
// write in since the snapshot of image prev (zero: none), and notes the
// mappings registered now.  Nothing, if the answer does not start at prev.
func (w *writeTracking) unwritten(prev image.ImageID) ([]span.Span, error) {
	fresh, lost := w.fresh, w.lost
	w.fresh, w.lost = nil, nil
	t := &C.ckpt_track
	registered, err := scanPagemap(int(t.pagemap), 0, userEnd, 0, uapi.PageIsWPAllowed, uapi.PageIsWPAllowed, true)
	if err != nil {
		w.known = nil
		return nil, fmt.Errorf("asking the kernel for tracked mappings: %w", err)
	}
	// Registrations only end between snapshots (munmap, mremap), and
	// only prepare adds them: what is registered now was at the snapshot.
	w.known = appendSpans(w.known[:0], registered)
	switch {
	case t.err == C.ENOSPC:
		// The pages past the last region reported stay written:
		// they count next time.  Twice the room for next time.
		n := uint64(t.cap)
		if err := growRegions(2 * n); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("more than %d stretches of written pages; room for twice as many next time", n)
	case t.err != 0:
		return nil, fmt.Errorf("asking the kernel for written pages: %w", unix.Errno(t.err))
	}
	// The precopy's areas come first in the report (cc_shim/handler.c),
	// then all memory in order: sorted here, as span.Subtract needs.
	var regions []uapi.PageRegion
	if t.n > 0 {
		regions = joinRegions(slices.Clone(unsafe.Slice((*uapi.PageRegion)(unsafe.Pointer(t.regions)), t.n)))
	}
	written := appendSpans(nil, regions)
	if !w.from(prev) {
		return nil, nil
	}
	return span.Subtract(span.Subtract(span.Subtract(w.known, written), fresh), lost), nil
}

// from reports whether the checkpoint under way has the kernel's answer
// since the snapshot of image prev.
func (w *writeTracking) from(prev image.ImageID) bool {
	return prev != (image.ImageID{}) && prev == w.basis
}

// tracksSince reports whether the kernel's answer for [start, end) counts
// from the snapshot of image prev: the range was registered then, and has
// been since (a mapping replaced or moved loses its registration, and
// prepare registers again only what was not registered at that snapshot).
// Before the precopy registers it again.
func (w *writeTracking) tracksSince(prev image.ImageID, start, end uint64) bool {
	if !w.from(prev) || len(span.Subtract([]span.Span{{Start: start, End: end}}, w.known)) > 0 ||
		overlapsAny(w.fresh, start, end) {
		return false
	}
	r, err := scanPagemap(int(C.ckpt_track.pagemap), start, end, 0, uapi.PageIsWPAllowed, uapi.PageIsWPAllowed, true)
	return err == nil && len(r) == 1 && r[0].Start == start && r[0].End == end
}

// wrote notes that the image id holds the last snapshot.
func (w *writeTracking) wrote(id image.ImageID) { w.since = id }
