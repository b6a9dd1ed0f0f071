package main

import (
	"cmp"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/ckpt/ckpt/go/procfs"
	"github.com/ckpt/ckpt/go/span"
	"github.com/ckpt/ckpt/go/uapi"
	"golang.org/x/sys/unix"
)

// A checkpoint's pause is mostly fork copying the page table: about 120 ns
// for each 4 KiB page here, 60 ms for 2 GiB.  Write-protecting the pages
// with userfaultfd instead, to copy them before the program's first write,
// costs the same; fewer entries is what helps.  A 2 MiB huge page is one
// entry, so after a long pause ckpt collapses the program's private
// anonymous memory into huge pages (MADV_COLLAPSE, Linux 6.1) on the
// coordinator's thread while the program runs, and the next fork copies 512
// times fewer entries (2 GiB: 3 ms).  Copy-on-write after that fork is
// cheaper too (whole huge pages split once, not 512 faults each set up).
//
// Only 2 MiB extents whose every page is present and not the shared zero
// page are collapsed, so the program's resident memory does not grow; the
// kernel itself refuses areas marked MADV_NOHUGEPAGE and processes with
// PR_SET_THP_DISABLE.  The program's writes during the next checkpoint split
// the huge pages they hit, so the pass runs again after each long pause.
// It stops as soon as a checkpoint is requested.

// hugeAfter is the pause after which the collapse pass runs: below it, the
// pass would cost more than it saves.
const hugeAfter = 10 * time.Millisecond

// hugePolicy is CKPT_HUGEPAGES: "0" never collapses, "1" after every
// checkpoint, anything else after a pause longer than hugeAfter.
type hugePolicy int

const (
	hugeLongPause hugePolicy = iota
	hugeNever
	hugeAlways
)

func parseHugePolicy(s string) hugePolicy {
	switch s {
	case "0":
		return hugeNever
	case "1":
		return hugeAlways
	}
	return hugeLongPause
}

func (p hugePolicy) after(pause time.Duration) bool {
	return p == hugeAlways || p == hugeLongPause && pause > hugeAfter
}

const hugeSize = 2 << 20

// collapseHuge runs the pass.  It returns early when the wake descriptor
// becomes readable (a checkpoint was requested), and quietly does nothing on
// kernels without PAGEMAP_SCAN or MADV_COLLAPSE.  It says nothing: a line
// after every checkpoint would be noise, and the next report's pause shows
// the effect.
//
// With write tracking (uffd >= 0, tracking.go) the kernel refuses extents
// holding a write-protected page, so each extent is unprotected first: its
// pages count as written at the next checkpoint, which reads and hashes
// them (its image does not grow: unchanged pages are still found), and
// once collapsed it is protected again as one huge page.
func collapseHuge(wake, uffd int) {
	maps, err := procfs.ReadFile("/proc/self/maps")
	if err != nil {
		return
	}
	ms, err := procfs.ParseMaps(maps)
	if err != nil {
		return
	}
	pm, err := unix.Open("/proc/self/pagemap", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(pm)
	for _, m := range ms {
		if !collapsible(m) {
			continue
		}
		for _, ext := range fullExtents(pm, m.Start, m.End) {
			if requested(wake) {
				return
			}
			if uffd >= 0 {
				unprotect := uapi.UffdioRange{Start: ext, Len: hugeSize}
				uapi.Ioctl(uffd, uapi.UffdioWriteprotect, unsafe.Pointer(&unprotect))
			}
			// The raw call: ext is the program's memory, not Go's.
			_, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(ext), hugeSize, unix.MADV_COLLAPSE)
			if errno == unix.EINVAL {
				break // not for this mapping (or not on this kernel)
			}
		}
	}
}

// collapsible reports whether m is private anonymous memory the program
// writes: its heap, mmap'ed memory, Go's own.
func collapsible(m procfs.Mapping) bool {
	anon := m.Name == "" || m.Name == "[heap]" || strings.HasPrefix(m.Name, "[anon:")
	return anon && m.Inode == 0 && !m.Shared && m.Read && m.Write && m.End-m.Start >= hugeSize
}

// fullExtents returns the 2 MiB-aligned extents inside [start, end) whose
// pages are all present, none of them the zero page, and not already one
// huge page.
func fullExtents(pm int, start, end uint64) []uint64 {
	start = (start + hugeSize - 1) &^ (hugeSize - 1)
	end &^= hugeSize - 1
	if start >= end {
		return nil
	}
	regions, err := scanPagemap(pm, start, end, 0, uapi.PageIsPresent, uapi.PageIsPresent|uapi.PageIsPFNZero|uapi.PageIsHuge, true)
	if err != nil {
		return nil
	}
	var exts []uint64
	for _, r := range regions {
		if r.Categories&(uapi.PageIsPFNZero|uapi.PageIsHuge) != 0 {
			continue
		}
		for e := (r.Start + hugeSize - 1) &^ (hugeSize - 1); e+hugeSize <= r.End; e += hugeSize {
			exts = append(exts, e)
		}
	}
	return exts
}

// scanPagemap runs PAGEMAP_SCAN over [start, end) and returns the regions
// of pages in the categories of mask, in order, those that touch with the
// same categories (of ret) joined.  With out false it asks for no regions, to
// write-protect with uapi.PMScanWPMatching alone.
func scanPagemap(pm int, start, end, flags, mask, ret uint64, out bool) ([]uapi.PageRegion, error) {
	var regions []uapi.PageRegion
	var vec []uapi.PageRegion
	if out {
		vec = make([]uapi.PageRegion, 1024)
	}
	for start < end {
		arg := uapi.PMScanArg{
			Size: uint64(unsafe.Sizeof(uapi.PMScanArg{})), Flags: flags, Start: start, End: end,
			CategoryMask: mask, ReturnMask: ret,
		}
		if out {
			arg.Vec, arg.VecLen = uint64(uintptr(unsafe.Pointer(&vec[0]))), uint64(len(vec))
		}
		n, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(pm), uapi.PagemapScan, uintptr(unsafe.Pointer(&arg)))
		if errno != 0 {
			return nil, errno
		}
		regions = append(regions, vec[:n]...)
		if arg.WalkEnd <= start {
			return nil, unix.EIO // no progress
		}
		start = arg.WalkEnd
	}
	return joinRegions(regions), nil
}

// appendSpans appends the address ranges of regions to l.
func appendSpans(l []span.Span, regions []uapi.PageRegion) []span.Span {
	for _, r := range regions {
		l = append(l, span.Span{Start: r.Start, End: r.End})
	}
	return l
}

// joinRegions sorts regions and joins those that touch or overlap with the
// same categories.  The kernel's answer is not always in order: with more
// than 512 regions, Linux 6.18 walks part of the range again, reporting
// lower regions after higher ones (pages written meanwhile, with
// PMScanWPMatching) or the same regions twice (without it).
func joinRegions(regions []uapi.PageRegion) []uapi.PageRegion {
	slices.SortStableFunc(regions, func(a, b uapi.PageRegion) int { return cmp.Compare(a.Start, b.Start) })
	out := regions[:0]
	for _, r := range regions {
		if k := len(out) - 1; k >= 0 && r.Start <= out[k].End && out[k].Categories == r.Categories {
			out[k].End = max(out[k].End, r.End)
		} else {
			out = append(out, r)
		}
	}
	return out
}

// requested reports whether a checkpoint request waits on the wake pipe.
func requested(wake int) bool {
	fds := []unix.PollFd{{Fd: int32(wake), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0
}
