// Package dump writes the image of a snapshot process: the copy-on-write
// child that libckpt.so's signal handler forks.  The child is frozen for as
// long as dump reads it, so the image is consistent while the program itself
// keeps running.
//
// dump runs inside the checkpointed program, next to its threads, so it uses
// raw system calls only (no os.File: the Go runtime's netpoller would open
// descriptors that become part of the process).
package dump

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"unsafe"

	"github.com/ckpt/ckpt/go/image"
	"github.com/ckpt/ckpt/go/procfs"
	"github.com/ckpt/ckpt/go/span"
	"github.com/ckpt/ckpt/go/uapi"
	"golang.org/x/sys/unix"
)

// Request says what to write.
type Request struct {
	Child   int    // the snapshot child's PID
	Path    string // the image's final path
	Process image.Process
	Threads []image.Thread
	Files   []image.File // descriptors with FD, flags and offset filled in
	// SaveFiles stores the contents of regular files up to
	// image.MaxSavedFile bytes (CKPT_SAVE_FILES).
	SaveFiles bool
	// Compress stores page data zstd-compressed, on as many goroutines
	// as GOMAXPROCS allows (CKPT_COMPRESS).
	Compress bool
	// Buffered writes page data through the page cache even where it
	// could go to the disk directly (direct.go; CKPT_DIRECT=0).
	Buffered bool
	// ID is the new image's ID.
	ID image.ImageID
	// Track builds a Tracker of the image's pages for the next
	// checkpoint (CKPT_INCREMENTAL); with Prev, the tracker of the last
	// image, the image is incremental: it refers to Prev's images for
	// pages that did not change, and Prev's images must all have names.
	Track bool
	Prev  *Tracker
	// Unwritten lists, in increasing order, address ranges in which the
	// kernel saw no write since the snapshot of Prev's newest image (see
	// go/lib/tracking.go).  Their private anonymous pages are taken from
	// Prev's images, or known to be still zero, without being read.
	Unwritten []span.Span
	// CheckUnwritten reads those pages anyway and counts in
	// Result.Missed the ones that changed: a test of the kernel's answer.
	CheckUnwritten bool
	// CheckPrecopy compares the pages of the areas the precopy took with
	// the snapshot child's, which kept them (CKPT_PRECOPY=check), and
	// counts in Result.PrecopyMissed the ones that differ: a test.
	CheckPrecopy bool
	// Scratch lists, in increasing order, address ranges of the
	// library's own memory whose contents no image needs (scratch.go):
	// not stored, they come back as zeros.
	Scratch []span.Span
	// Precopy, if not nil, holds the image's file begun before the
	// snapshot, and the pages of the areas the pause took, which the
	// snapshot child does not have (precopy.go), begun with the same
	// Track, Prev, Compress and Buffered.
	Precopy *Precopy
}

// Result describes a written image.
type Result struct {
	Size    uint64   // bytes in the image file
	Tracker *Tracker // with Request.Track
	Stored  uint64   // bytes of pages this image holds itself
	Reused  uint64   // bytes of pages it takes from its parents
	Unread  uint64   // pages taken as they were without reading them (Unwritten)
	Missed  uint64   // with CheckUnwritten: of those, pages that had changed
	// Distrusted names what made the image ignore Request.Unwritten
	// (nofault.go): the kernel's tracking cannot be relied on here.
	Distrusted string
	// PrecopyMissed counts, with CheckPrecopy, the pages the precopy
	// stored that are not what the snapshot child has.
	PrecopyMissed uint64
}

// chunkPages is how many pages are read, checked and written at a time.
const chunkPages = 256

// Write writes the image of r.Child to a hidden temporary file next to
// r.Path, syncs it and renames it into place, so r.Path only ever holds a
// complete image and a failure leaves the previous image untouched.
func Write(r *Request) (res Result, err error) {
	dir := filepath.Dir(r.Path)
	var tmp string
	var fd int
	if r.Precopy != nil {
		// The file the precopy began.
		tmp = r.Precopy.tmp
		if err = r.Precopy.Close(); err == nil {
			if fd, err = unix.Open(tmp, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err != nil {
				err = fmt.Errorf("opening %q again: %w", tmp, err)
			}
		}
		if err != nil {
			unix.Unlink(tmp)
			return res, err
		}
	} else if tmp, fd, err = createTemp(r.Path, r.Child); err != nil {
		return res, err
	}
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
		if err != nil {
			unix.Unlink(tmp)
		}
	}()
	size, err := writeImage(fd, r, &res)
	if err != nil {
		return res, fmt.Errorf("writing %q: %w", tmp, err)
	}
	if err := unix.Fsync(fd); err != nil {
		return res, fmt.Errorf("syncing %q: %w", tmp, err)
	}
	err = unix.Close(fd)
	fd = -1
	if err != nil {
		return res, fmt.Errorf("closing %q: %w", tmp, err)
	}
	if err := unix.Rename(tmp, r.Path); err != nil {
		return res, fmt.Errorf("renaming %q: %w", tmp, err)
	}
	if dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
		unix.Fsync(dfd)
		unix.Close(dfd)
	}
	res.Size = size
	return res, nil
}

// createTemp creates the hidden temporary file an image for path is written
// to before it is renamed, named after id, once it removed those that
// earlier checkpoints to the same image left when they were killed half-way
// (only one checkpoint of a process runs at a time, so none of them is
// being written).
func createTemp(path string, id int) (string, int, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	prefix := "." + base + ".tmp"
	if dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
		for _, name := range dirNames(dfd) {
			if strings.HasPrefix(name, prefix) {
				unix.Unlinkat(dfd, name, 0)
			}
		}
		unix.Close(dfd)
	}
	tmp := filepath.Join(dir, fmt.Sprintf("%s%d", prefix, id))
	fd, err := unix.Open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return "", -1, fmt.Errorf("creating %q: %w", tmp, err)
	}
	return tmp, fd, nil
}

// dirNames lists the directory open at fd, with raw system calls.
func dirNames(fd int) []string {
	var names []string
	buf := make([]byte, 8192)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil || n <= 0 {
			return names
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}

// source reads the child's memory and page map.
type source struct {
	mem       *memReader
	pagemap   int
	noScan    bool // the kernel has no PAGEMAP_SCAN (nextPages)
	entries   []byte
	out       *asyncFile // hands out the buffers pages are read into
	zero      []byte
	tr        *tracking   // with Request.Track
	unwritten []span.Span // Request.Unwritten from the first that may still matter
	check     bool        // Request.CheckUnwritten
	scratch   []span.Span // Request.Scratch, from the first that may still matter
	res       *Result
}

func writeImage(fd int, r *Request, res *Result) (size uint64, err error) {
	proc := fmt.Sprintf("/proc/%d", r.Child)
	mapsText, err := procfs.ReadFile(proc + "/maps")
	if err != nil {
		return 0, err
	}
	maps, err := procfs.ParseMaps(mapsText)
	if err != nil {
		return 0, err
	}
	statText, err := procfs.ReadFile(proc + "/stat")
	if err != nil {
		return 0, err
	}
	mm, err := procfs.ParseStatMM(statText)
	if err != nil {
		return 0, err
	}
	im := &image.Image{Process: r.Process, Threads: r.Threads, Files: r.Files, ID: r.ID}
	p := &im.Process
	p.Arch, p.PageSize = image.EMX8664, image.PageSize
	p.MM = image.MMLayout{
		StartCode: image.Addr(mm.StartCode), EndCode: image.Addr(mm.EndCode),
		StartData: image.Addr(mm.StartData), EndData: image.Addr(mm.EndData),
		StartBrk: image.Addr(mm.StartBrk), StartStack: image.Addr(mm.StartStack),
		ArgStart: image.Addr(mm.ArgStart), ArgEnd: image.Addr(mm.ArgEnd),
		EnvStart: image.Addr(mm.EnvStart), EnvEnd: image.Addr(mm.EnvEnd),
	}
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		p.Kernel = unix.ByteSliceToString(uts.Release[:])
	}
	if exe, err := readlink(proc + "/exe"); err == nil {
		p.Exe = exe
	}
	if err := processState(r.Child, p); err != nil {
		return 0, err
	}

	compressors := 0
	if r.Compress {
		compressors = runtime.GOMAXPROCS(0)
	}
	out := newAsyncFile(fd, chunkPages*image.PageSize, compressors, r.Buffered)
	defer func() {
		if cerr := out.close(); err == nil {
			err = cerr
		}
	}()
	src := &source{pagemap: -1, out: out, scratch: r.Scratch, res: res,
		entries: make([]byte, chunkPages*8), zero: make([]byte, image.PageSize)}
	var taken []takenArea // the precopy's, not in the child
	if r.Precopy != nil {
		if taken, err = r.Precopy.taken(); err != nil {
			return 0, err
		}
	}
	if r.Track {
		pages := trackablePages(maps)
		for _, a := range taken {
			pages += int(a.Pages())
		}
		src.tr = newTracking(r.Prev, r.ID, pages)
		if r.Prev != nil {
			src.unwritten, src.check = r.Unwritten, r.CheckUnwritten
		}
		if len(r.Unwritten) > 0 {
			if res.Distrusted = noFaultWriter(proc, maps, r.Files); res.Distrusted != "" {
				src.unwritten = nil
			}
		}
	}
	defer src.close()
	if src.mem, err = openMem(proc, r.Child); err != nil {
		return 0, fmt.Errorf("opening %s/mem: %w", proc, err)
	}
	if src.pagemap, err = unix.Open(proc+"/pagemap", unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
		return 0, fmt.Errorf("opening %s/pagemap: %w", proc, err)
	}

	w := image.NewWriter(out)
	switch {
	case r.Compress && r.Precopy != nil:
		out.segs, out.segsEnd = r.Precopy.segs, r.Precopy.segsEnd
		w = image.NewSegmentWriter(out, segmentWriter{out}, r.Precopy.off.Load())
	case r.Compress:
		w = image.NewSegmentWriter(out, segmentWriter{out}, image.DataStart)
	case r.Precopy != nil:
		w = image.NewWriterAfter(out, r.Precopy.off.Load())
	}
	for _, m := range maps {
		a, ok := areaOf(m)
		if !ok {
			continue
		}
		for len(taken) > 0 && taken[0].Start < a.Start {
			src.took(im, &taken[0])
			taken = taken[1:]
		}
		if len(taken) > 0 && taken[0].Start == a.Start && r.CheckPrecopy {
			// The child kept the area: the image has it from the
			// precopy, which must agree.
			if err := src.checkTaken(&taken[0]); err != nil {
				return 0, fmt.Errorf("checking %#x-%#x: %w", m.Start, m.End, err)
			}
			src.took(im, &taken[0])
			taken = taken[1:]
			continue
		}
		if !a.Kind.Special() {
			if err := src.copyArea(w, &a, m); err != nil {
				return 0, fmt.Errorf("copying %#x-%#x %s: %w", m.Start, m.End, m.Name, err)
			}
		}
		im.Areas = append(im.Areas, a)
	}
	for i := range taken {
		src.took(im, &taken[i])
	}
	for i := range im.Files {
		if err := src.describeFile(w, proc, &im.Files[i], r.SaveFiles); err != nil {
			return 0, fmt.Errorf("saving descriptor %d: %w", im.Files[i].FD, err)
		}
	}
	if r.Compress {
		if im.Segments, err = out.segments(); err != nil {
			return 0, err
		}
	}
	if src.tr != nil {
		im.Parents = src.tr.finish(im)
		res.Tracker = src.tr.next
	}
	im.PackRuns()
	res.Stored = im.SourceBytes(0)
	res.Reused = im.StoredBytes() - res.Stored
	size, err = w.Finish(im)
	return size, err
}

// took adds an area the precopy took to im, and its pages to the tracker.
func (s *source) took(im *image.Image, a *takenArea) {
	im.Areas = append(im.Areas, a.Area)
	if s.tr != nil {
		a.record(s.tr)
	}
}

// trackablePages is the most pages a tracker of maps can hold: the pages of
// the areas whose data is saved.
func trackablePages(maps []procfs.Mapping) int {
	n := 0
	for _, m := range maps {
		if a, ok := areaOf(m); ok && !a.Kind.Special() {
			n += int(a.Pages())
		}
	}
	return n
}

func (s *source) close() {
	s.mem.close()
	if s.pagemap >= 0 {
		unix.Close(s.pagemap)
	}
}

// areaOf turns a maps line into an image area; false means it is not saved.
func areaOf(m procfs.Mapping) (image.Area, bool) {
	a := image.Area{
		Start: image.Addr(m.Start), End: image.Addr(m.End),
		Offset: m.Offset, Major: m.Major, Minor: m.Minor, Inode: m.Inode, Name: m.Name,
	}
	if m.Read {
		a.Prot |= image.ProtRead
	}
	if m.Write {
		a.Prot |= image.ProtWrite
	}
	if m.Exec {
		a.Prot |= image.ProtExec
	}
	if m.Shared {
		a.Flags |= image.AreaShared
	}
	switch m.Name {
	case "[vsyscall]":
		return a, false // fixed by the kernel; cannot be remapped
	case "[vdso]":
		a.Kind = image.KindVDSO
	case "[vvar]":
		a.Kind = image.KindVVAR
	case "[vvar_vclock]":
		a.Kind = image.KindVVARVclock
	case "[stack]":
		a.Kind = image.KindStack
	case "[heap]":
		a.Kind = image.KindHeap
	}
	return a, m.End <= image.MaxUserAddr
}

// copyArea stores the area's pages that hold data.  Private anonymous
// memory that was never touched is not present and is skipped.  Pages of a
// file mapping are read whether present or not, since a restore maps the
// area anonymously: readable ones, and private ones whatever their
// protection (an area made unreadable still holds the file's bytes, which
// the program sees again if it makes the area readable).  Pages that hold
// only zeros are skipped too: a restore maps fresh zero pages there.
// Private anonymous pages the kernel saw no write to are not read at all,
// nor, where the kernel can tell (nextPages), are chunks without a page in
// memory or swap.
func (s *source) copyArea(w *image.Writer, a *image.Area, m procfs.Mapping) error {
	readAll := m.Inode != 0 && (m.Read || !m.Shared)
	pages := a.Pages()
	wantBuf, sameBuf := make([]bool, chunkPages), make([]bool, chunkPages)
	var known uint64 // where the chunks known to hold pages end
	for first := uint64(0); first < pages; first += chunkPages {
		addr := uint64(a.Start) + first*image.PageSize
		if !readAll && addr >= known {
			r, found, ok := s.nextPages(addr, uint64(a.End))
			if ok && !found {
				break
			}
			if ok {
				first = max(first, (r.Start-uint64(a.Start))/image.PageSize/chunkPages*chunkPages)
				addr, known = uint64(a.Start)+first*image.PageSize, r.End
			}
		}
		n := min(uint64(chunkPages), pages-first)
		want, same := wantBuf[:n], sameBuf[:n]
		clear(same)
		tracked := !m.Shared && s.unwrittenIn(addr, addr+n*image.PageSize)
		if readAll && !tracked {
			for i := range want {
				want[i] = true
			}
		} else if err := s.present(addr, want, same, readAll, tracked); err != nil {
			return err
		}
		if s.scratchIn(addr, addr+n*image.PageSize) {
			for i := range want {
				if s.scratchAt(addr + uint64(i)*image.PageSize) {
					want[i], same[i] = false, false
				}
			}
		}
		if s.check && tracked {
			if err := s.checkSame(addr, same); err != nil {
				return err
			}
		}
		for i := uint64(0); i < n; {
			if same[i] {
				s.reuse(a, first+i, addr+i*image.PageSize)
				i++
				continue
			}
			j := i + 1
			for j < n && !same[j] {
				j++
			}
			if err := s.copyWanted(w, a, first+i, want[i:j], m.Shared); err != nil {
				return err
			}
			i = j
		}
	}
	return nil
}

// copyWanted copies the wanted pages of a chunk starting at page first.  In
// private memory it reads from the first wanted page to the last in one go:
// pages in between that are not present read as zeros (the child maps the
// shared zero page), and zero pages are not stored.  Shared memory is read
// stretch by stretch, since reading a hole there would allocate a page that
// the program shares.
func (s *source) copyWanted(w *image.Writer, a *image.Area, first uint64, want []bool, shared bool) error {
	n := uint64(len(want))
	for i := uint64(0); i < n; {
		if !want[i] {
			i++
			continue
		}
		j := i + 1
		for j < n && (want[j] || !shared) {
			j++
		}
		for j > i+1 && !want[j-1] {
			j--
		}
		if err := s.copyRange(w, a, first+i, j-i); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// nextPages returns the first stretch of pages in [start, end) that are
// in memory or swap, with found false if there is none, and ok false where
// the kernel cannot tell (PAGEMAP_SCAN is Linux 6.7).  Skipping the rest
// matters for a program's large reservations, mostly empty (a runtime's
// arenas, a sanitizer's shadow memory): reading the page map of 16 GiB
// takes 37 ms, of 1 TiB seconds.
func (s *source) nextPages(start, end uint64) (r uapi.PageRegion, found, ok bool) {
	if s.noScan {
		return r, false, false
	}
	arg := uapi.PMScanArg{Size: uint64(unsafe.Sizeof(uapi.PMScanArg{})), Start: start, End: end,
		CategoryAnyofMask: uapi.PageIsPresent | uapi.PageIsSwapped, ReturnMask: uapi.PageIsPresent | uapi.PageIsSwapped,
		Vec: uint64(uintptr(unsafe.Pointer(&r))), VecLen: 1}
	if uapi.Ioctl(s.pagemap, uapi.PagemapScan, unsafe.Pointer(&arg)) != nil {
		s.noScan = true
		return r, false, false
	}
	return r, r.End > r.Start, true // r stays empty if no page matched
}

// present marks in want the pages from addr that are in memory or swap, or
// all of them with all.  With tracked, it marks in same the ones that stay
// as they were at the last checkpoint: unwritten since, and anonymous (the
// file's own pages of a private file mapping change with the file).
func (s *source) present(addr uint64, want, same []bool, all, tracked bool) error {
	e := s.entries[:len(want)*8]
	if err := preadFull(s.pagemap, e, int64(addr/image.PageSize*8)); err != nil {
		return fmt.Errorf("reading pagemap: %w", err)
	}
	for i := range want {
		v := binary.LittleEndian.Uint64(e[i*8:])
		want[i] = all || v&(procfs.PagePresent|procfs.PageSwapped) != 0
		same[i] = tracked && v&(procfs.PagePresent|procfs.PageSwapped) != 0 &&
			v&procfs.PageFileOrSharedAnon == 0 && s.unwrittenAt(addr+uint64(i)*image.PageSize)
	}
	return nil
}

func (s *source) unwrittenIn(start, end uint64) bool { return overlaps(&s.unwritten, start, end) }
func (s *source) unwrittenAt(addr uint64) bool       { return overlaps(&s.unwritten, addr, addr+1) }
func (s *source) scratchIn(start, end uint64) bool   { return overlaps(&s.scratch, start, end) }
func (s *source) scratchAt(addr uint64) bool         { return overlaps(&s.scratch, addr, addr+1) }

// overlaps reports whether any of [start, end) is in the spans l, and drops
// the spans below start from l: areas, chunks and pages come in address
// order.
func overlaps(l *[]span.Span, start, end uint64) bool {
	for len(*l) > 0 && (*l)[0].End <= start {
		*l = (*l)[1:]
	}
	return len(*l) > 0 && (*l)[0].Start < end
}

// reuse takes page (at addr) of area a as the last images hold it, without
// reading it.  If they do not hold it, it was zero or absent at the last
// checkpoint and, unwritten since, holds zeros now: nothing is stored.
func (s *source) reuse(a *image.Area, page, addr uint64) {
	s.res.Unread++
	old, ok := s.tr.unchanged(addr)
	if !ok {
		return
	}
	src := old.img + 1
	if k := len(a.Runs) - 1; k >= 0 {
		if r := &a.Runs[k]; r.Source == src && r.Page+r.Pages == page && r.FileOff+r.DataLen() == old.off {
			r.Pages++
			r.CRC = image.ChecksumAppendPage(r.CRC, old.crc)
			return
		}
	}
	a.Runs = append(a.Runs, image.Run{Page: page, Pages: 1, FileOff: old.off, CRC: old.crc, Source: src})
}

// checkSame reads the pages marked in same and counts in Result.Missed
// the ones that are not what the last images hold (or zero).
func (s *source) checkSame(addr uint64, same []bool) error {
	buf := s.out.get()[:len(same)*image.PageSize]
	defer s.out.put(buf)
	defer func(cursor int) { s.tr.cursor = cursor }(s.tr.cursor) // lookups of this chunk follow
	if err := s.mem.read(buf, addr); err != nil {
		return fmt.Errorf("checking unwritten pages: %w", err)
	}
	for i, ok := range same {
		if !ok {
			continue
		}
		p := buf[i*image.PageSize : (i+1)*image.PageSize]
		if old, found := s.tr.peek(addr + uint64(i)*image.PageSize); found {
			if image.Checksum(p) != old.crc || pageHash(p) != old.hash {
				s.res.Missed++
			}
		} else if !bytes.Equal(p, s.zero) {
			s.res.Missed++
		}
	}
	return nil
}

// copyRange reads pages [page, page+n) of the area and writes the runs of
// them that are not all zero.
func (s *source) copyRange(w *image.Writer, a *image.Area, page, n uint64) error {
	buf := s.out.get()[:n*image.PageSize]
	addr := uint64(a.Start) + page*image.PageSize
	if err := s.mem.read(buf, addr); err != nil {
		s.out.put(buf)
		// Part of the range cannot be read (a file mapping past its
		// end, a device): go page by page and skip what fails.
		if n == 1 {
			return nil
		}
		for i := uint64(0); i < n; i++ {
			if err := s.copyRange(w, a, page+i, 1); err != nil {
				return err
			}
		}
		return nil
	}
	var err error
	a.Runs, err = appendRuns(w, a.Runs, buf, page, s.zero, s.tr, addr)
	s.out.put(buf)
	return err
}

// appendRuns writes the pages of buf that are not all zero, buf's first
// page being page number first (at address addr), and appends a Run for
// each stretch.  The stretches are moved together in buf and written with
// one write.  With tr (an incremental checkpoint), pages the last images
// hold unchanged are not written: their runs point into those images.
func appendRuns(w *image.Writer, runs []image.Run, buf []byte, first uint64, zero []byte,
	tr *tracking, addr uint64) ([]image.Run, error) {
	const P = image.PageSize
	n := uint64(len(buf)) / P
	var kept uint64 // pages moved to the front of buf so far
	start := len(runs)
	var fresh []int // tr.next.pages entries whose offsets are relative to this write
	extend := false // the last run (one of this call's) may grow by the next page
	for i := uint64(0); i < n; i++ {
		p := buf[i*P : (i+1)*P]
		if bytes.Equal(p, zero) {
			extend = false
			continue
		}
		src, off := uint32(0), kept*P // stored here, at an offset relative to this write
		if tr != nil {
			hash, crc, old, ok := tr.lookup(addr+i*P, p)
			if ok {
				src, off = old.img+1, old.off
				tr.record(trackedPage{addr: addr + i*P, hash: hash, off: off, crc: crc, img: old.img})
			} else {
				fresh = append(fresh, len(tr.next.pages))
				tr.record(trackedPage{addr: addr + i*P, hash: hash, off: off, crc: crc, img: tr.self()})
			}
		}
		if src == 0 {
			if kept != i {
				copy(buf[kept*P:], p)
			}
			p = buf[kept*P : (kept+1)*P]
			kept++
		}
		if extend {
			if r := &runs[len(runs)-1]; r.Source == src && r.FileOff+r.DataLen() == off {
				r.Pages++
				r.CRC = image.ChecksumUpdate(r.CRC, p)
				continue
			}
		}
		runs = append(runs, image.Run{Page: first + i, Pages: 1, FileOff: off, CRC: image.Checksum(p), Source: src})
		extend = true
	}
	if kept == 0 {
		return runs, nil
	}
	base, err := w.Append(buf[:kept*P])
	if err != nil {
		return runs, err
	}
	for k := start; k < len(runs); k++ {
		if runs[k].Source == 0 {
			runs[k].FileOff += base
		}
	}
	for _, k := range fresh {
		tr.next.pages[k].off += base
	}
	return runs, nil
}

func preadFull(fd int, b []byte, off int64) error {
	return full(unix.Pread, fd, b, off, "unexpected end of file")
}

func pwriteFull(fd int, b []byte, off int64) error {
	return full(unix.Pwrite, fd, b, off, "short write")
}

// full runs a pread or pwrite until all of b is done, again after EINTR.
func full(op func(int, []byte, int64) (int, error), fd int, b []byte, off int64, short string) error {
	for done := 0; done < len(b); {
		n, err := op(fd, b[done:], off+int64(done))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New(short)
		}
		done += n
	}
	return nil
}

// readlink returns a link's target without the kernel's " (deleted)".
func readlink(path string) (string, error) {
	target, err := rawReadlink(path)
	return strings.TrimSuffix(target, " (deleted)"), err
}

// ImageID reads the ID of the image at path (its header and metadata).
func ImageID(path string) (image.ImageID, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return image.ImageID{}, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return image.ImageID{}, err
	}
	im, _, err := image.Read(rawReader(fd), st.Size)
	if err != nil {
		return image.ImageID{}, err
	}
	return im.ID, nil
}

// rawReader is an io.ReaderAt on a raw descriptor.
type rawReader int

func (r rawReader) ReadAt(p []byte, off int64) (int, error) {
	return len(p), preadFull(int(r), p, off)
}
