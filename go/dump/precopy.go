package dump

import (
	"cmp"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"sync/atomic"

	"github.com/ckpt/ckpt/go/fresh"
	"github.com/ckpt/ckpt/go/image"
	"github.com/ckpt/ckpt/go/procfs"
	"github.com/ckpt/ckpt/go/span"
	"golang.org/x/sys/unix"
)

// A Precopy copies the program's own big private memory into a new image
// while the program runs, so that the pause need not fork it: the fork
// copies a page table entry for each 4 KiB page, about 60 ms per 2 GiB here,
// where the pause should be under 20 ms.  go/lib/precopy.go drives it:
//
//  1. With the areas' writes tracked by the kernel (go/lib/tracking.go),
//     Copy copies their pages as they are, and then again the pages the
//     program wrote meanwhile, once or twice.
//  2. Close closes what it has open, which must not be in the snapshot.
//     The pause copies the pages written since into scratch memory and
//     leaves the areas out of the snapshot child (cc_shim/precopy.c).
//  3. Took stores those copies for each area the pause took; Write
//     finishes the image, with the taken areas' pages from here and every
//     other area from the snapshot child.
//
// A page copied again goes over its older copy; one that held zeros before
// goes after the others, out of order, which the image format allows
// (format 4), as it allows the unused copies that areas left to the
// snapshot child leave behind.
//
// An incremental image starts from the pages its parents hold (the last
// image's Tracker): the caller copies only what the kernel saw written
// since that image's snapshot, or every page of an area it cannot tell
// for, and a page whose bytes a parent holds already is not stored again.
//
// A compressed image's data is stored in segments (compress.go), which
// cannot be written over: there a page copied again goes after the others
// too, and its older copy stays unused.
type Precopy struct {
	tmp     string
	fd      int
	out     *asyncFile
	off     atomic.Uint64 // where the next page data goes
	mem     *memReader    // this process's
	pagemap int
	areas   []*copiedArea
	zero    []byte
	// Copy's and the copiers' lists, kept: what is allocated now is in
	// the snapshot.
	chunks  []span.Span
	copiers [maxCopiers]*copier
	// track hashes every page for the image's Tracker; self is the
	// image's number among the tracker's images (its parents first).
	track bool
	self  uint32
	// With compression: how many compressors, the segments written so
	// far and where they end in the file (out's, kept while out is
	// closed), and the data offset each segment starts at, in order.
	compressors int
	buffered    bool
	segs        []image.Segment
	segsEnd     uint64
	cuts        []uint64
	scratch     []span.Span // PrecopyOptions.Scratch
}

// PrecopyOptions says what kind of image a Precopy begins.
type PrecopyOptions struct {
	Track    bool     // the image gets a Tracker (Request.Track)
	Prev     *Tracker // the image is incremental on Prev (Request.Prev)
	Compress bool     // the image is compressed (Request.Compress)
	Buffered bool     // page data goes through the page cache (Request.Buffered)
	// Scratch lists, in order, the library's scratch memory known now
	// (Request.Scratch): its pages are stored as zeros.
	Scratch []span.Span
}

// copiedArea is one area and where each of its stored pages is, in order.
type copiedArea struct {
	m      procfs.Mapping
	broken bool // some pages could not be read: not to be taken
	taken  bool
	// In scratch memory (see scratch.go), with room for every page: the
	// Go heap's garbage would be in the snapshot.
	pages   []copiedPage // the last copy of each page copied, in order
	updates []copiedPage // copies made by the pass under way, in order
}

type copiedPage struct {
	page uint32 // its number in the area
	crc  uint32
	off  uint64 // the file offset of its last copy; 0: it holds zeros
	hash uint64 // pageHash, with Precopy.track
	img  uint32 // the image holding it (a parent, or Precopy.self)
}

// StartPrecopy creates the image's temporary file next to path for a
// checkpoint of this process, with the areas maps (private anonymous
// memory, tracked for writes) to be copied.  An incremental image's pages
// start as o.Prev has them.
func StartPrecopy(path string, maps []procfs.Mapping, o PrecopyOptions) (_ *Precopy, err error) {
	prev := o.Prev
	if w := noFaultWriter("/proc/self", maps, openFiles()); w != "" {
		return nil, fmt.Errorf("the program has %s, which can write its memory unseen", w)
	}
	p := &Precopy{fd: -1, pagemap: -1, zero: make([]byte, image.PageSize),
		track: o.Track || prev != nil, segsEnd: image.DataStart, scratch: o.Scratch, buffered: o.Buffered}
	p.off.Store(image.DataStart)
	if o.Compress {
		p.compressors = runtime.GOMAXPROCS(0)
	}
	if prev != nil {
		p.self = uint32(len(prev.Images))
	}
	defer func() {
		if err != nil {
			p.Abort()
		}
	}()
	if p.tmp, p.fd, err = createTemp(path, unix.Getpid()); err != nil {
		return nil, err
	}
	if p.mem, err = openMem("/proc/self", unix.Getpid()); err != nil {
		return nil, err
	}
	if p.pagemap, err = unix.Open("/proc/self/pagemap", unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
		return nil, err
	}
	p.open(p.fd)
	for _, m := range maps {
		n := pagesOf(m)
		a := &copiedArea{m: m, pages: newScratch[copiedPage](int(n)), updates: newScratch[copiedPage](int(n))}
		p.areas = append(p.areas, a)
		if a.pages == nil || a.updates == nil || n > 1<<32 {
			return nil, fmt.Errorf("no memory to note the pages of %#x-%#x", m.Start, m.End)
		}
		if prev != nil {
			for _, t := range prev.pagesIn(m.Start, m.End) {
				a.pages = append(a.pages, copiedPage{page: uint32((t.addr - m.Start) / image.PageSize),
					crc: t.crc, off: t.off, hash: t.hash, img: t.img})
			}
		}
	}
	return p, nil
}

// openFiles lists this process's descriptors, for noFaultWriter.
func openFiles() []image.File {
	fd, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer unix.Close(fd)
	var files []image.File
	for _, name := range dirNames(fd) {
		if v, err := strconv.ParseInt(name, 10, 32); err == nil {
			files = append(files, image.File{FD: int32(v)})
		}
	}
	return files
}

// Areas returns the areas being copied; ok[i] is false for one that could
// not be read whole, which the pause must leave to the snapshot child.
func (p *Precopy) Areas() (ms []procfs.Mapping, ok []bool) {
	for _, a := range p.areas {
		ms, ok = append(ms, a.m), append(ok, !a.broken)
	}
	return ms, ok
}

// scratchAt reports whether addr is in the library's scratch memory.
func (p *Precopy) scratchAt(addr uint64) bool {
	i := sort.Search(len(p.scratch), func(i int) bool { return p.scratch[i].End > addr })
	return i < len(p.scratch) && p.scratch[i].Start <= addr
}

// find returns the note of page, if there is one.
func (a *copiedArea) find(page uint64) (copiedPage, bool) {
	i := sort.Search(len(a.pages), func(i int) bool { return uint64(a.pages[i].page) >= page })
	if i < len(a.pages) && uint64(a.pages[i].page) == page {
		return a.pages[i], true
	}
	return copiedPage{}, false
}

// Close waits for the writes and closes every descriptor the precopy has
// open, before the snapshot: the image must not hold them.
func (p *Precopy) Close() error {
	var err error
	if p.out != nil {
		err = p.out.close()
		p.segs, p.segsEnd = p.out.segs, p.out.segsEnd
		p.out = nil
	}
	p.mem.close()
	for _, fd := range []*int{&p.fd, &p.pagemap} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
	if err != nil {
		return fmt.Errorf("writing %q: %w", p.tmp, err)
	}
	return nil
}

// Took stores what the pause copied of area i (which it took): the pages
// of written, one after the other in copies in the order of written; the
// pages of gone, written too, are no longer in memory: they hold zeros.
// The kernel's report need not be in order nor free of repeats (see
// joinRegions in go/lib): the copies are stored in address order, a page
// once.
func (p *Precopy) Took(i int, written, gone []span.Span, copies []byte) error {
	a := p.areas[i]
	a.taken = true
	if len(written) == 0 && len(gone) == 0 {
		return nil
	}
	if err := p.reopen(); err != nil {
		return err
	}
	type copied struct {
		span.Span
		data []byte
		gone bool
	}
	l := make([]copied, 0, len(written))
	for _, sp := range written {
		n := sp.End - sp.Start
		if sp.Start < a.m.Start || sp.End > a.m.End || n > uint64(len(copies)) {
			return fmt.Errorf("written pages %#x-%#x are not in area %#x-%#x", sp.Start, sp.End, a.m.Start, a.m.End)
		}
		l = append(l, copied{Span: sp, data: copies[:n]})
		copies = copies[n:]
	}
	for _, sp := range gone {
		if sp.Start < a.m.Start || sp.End > a.m.End {
			return fmt.Errorf("dropped pages %#x-%#x are not in area %#x-%#x", sp.Start, sp.End, a.m.Start, a.m.End)
		}
		l = append(l, copied{Span: sp, gone: true})
	}
	slices.SortStableFunc(l, func(x, y copied) int { return cmp.Compare(x.Start, y.Start) })
	cp := p.copier(0, a, a.updates)
	var done uint64 // where the pages stored so far end
	for _, c := range l {
		if c.Start < done {
			skip := min(done, c.End) - c.Start
			c.Start = c.Start + skip
			if !c.gone {
				c.data = c.data[skip:]
			}
		}
		done = max(done, c.End)
		first := (c.Start - a.m.Start) / image.PageSize
		if c.gone {
			if err := cp.store(first, (c.End-c.Start)/image.PageSize, absent, nil); err != nil {
				return fmt.Errorf("writing %q: %w", p.tmp, err)
			}
			continue
		}
		for off := uint64(0); off < uint64(len(c.data)); off += chunkPages * image.PageSize {
			m := min(uint64(len(c.data))-off, chunkPages*image.PageSize)
			buf := p.out.get()[:m]
			copy(buf, c.data[off:off+m])
			err := cp.store(first+off/image.PageSize, m/image.PageSize, nil, buf)
			p.out.put(buf)
			if err != nil {
				return fmt.Errorf("writing %q: %w", p.tmp, err)
			}
		}
	}
	if err := cp.over.flush(p.out); err != nil {
		return fmt.Errorf("writing %q: %w", p.tmp, err)
	}
	a.updates = cp.updates
	a.merge()
	return nil
}

// absent is store's present for pages no longer in memory.
func absent(uint64) bool { return false }

// reopen opens the file again after the snapshot.
func (p *Precopy) reopen() error {
	if p.out != nil {
		return nil
	}
	fd, err := unix.Open(p.tmp, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %q again: %w", p.tmp, err)
	}
	p.open(fd)
	return nil
}

// open starts writing the file open at fd, after the segments written
// before if compressed.
func (p *Precopy) open(fd int) {
	p.fd = fd
	p.out = newAsyncFile(fd, chunkPages*image.PageSize, p.compressors, p.buffered)
	p.out.segs, p.out.segsEnd = p.segs, p.segsEnd
}

// Scratch returns the memory that notes the pages: no image needs it.
func (p *Precopy) Scratch() []span.Span {
	var l []span.Span
	for _, a := range p.areas {
		for _, notes := range [][]copiedPage{a.pages, a.updates} {
			if sp, ok := scratchSpan(notes); ok {
				l = span.Insert(l, sp)
			}
		}
	}
	return l
}

// Abort deletes the temporary file and frees the notes: the checkpoint
// goes on without the precopy, or failed.
func (p *Precopy) Abort() {
	p.Close()
	unix.Unlink(p.tmp)
	p.Free()
}

// Free frees the notes: in a process just restored, or once the image is
// written.
func (p *Precopy) Free() {
	for _, a := range p.areas {
		freeScratch(a.pages)
		freeScratch(a.updates)
		a.pages, a.updates = nil, nil
	}
	p.areas = nil
}

// merge folds the pass's copies into the area's notes, the newer copy of a
// page winning.  pages has room for every page of the area, so the merge
// runs in place from the end.
func (a *copiedArea) merge() {
	old, ups := a.pages, a.updates
	fresh := 0 // updates of pages not noted yet
	for i, j := 0, 0; j < len(ups); {
		switch {
		case i < len(old) && old[i].page < ups[j].page:
			i++
		case i < len(old) && old[i].page == ups[j].page:
			i, j = i+1, j+1
		default:
			fresh, j = fresh+1, j+1
		}
	}
	all := old[:len(old)+fresh]
	i, j := len(old)-1, len(ups)-1
	for w := len(all) - 1; j >= 0; w-- {
		if i >= 0 && old[i].page > ups[j].page {
			all[w], i = old[i], i-1
			continue
		}
		if i >= 0 && old[i].page == ups[j].page {
			i--
		}
		all[w], j = ups[j], j-1
	}
	a.pages, a.updates = all, a.updates[:0]
}

// runs returns the runs of the area's stored pages, of at most chunkPages
// pages like those of the snapshot child: a restart checks and loads a run
// as a whole (`--lazy`: on the first fault in it).  Pages a parent holds
// are in runs with that parent's Source; self is the image's own number.
// No run of the image's own crosses one of cuts, where a segment starts.
// They are counted first: a heap of one-page runs has 262,000 for 2 GiB,
// and growing the list as it goes took most of the time.
func (a *copiedArea) runs(self uint32, cuts []uint64) []image.Run {
	n := 0
	a.eachRun(self, cuts, func(image.Run) { n++ })
	runs := fresh.Slice[image.Run](n)[:0] // megabytes: see package fresh
	a.eachRun(self, cuts, func(r image.Run) { runs = append(runs, r) })
	return runs
}

// eachRun calls yield with each run that runs returns, in order.
func (a *copiedArea) eachRun(self uint32, cuts []uint64, yield func(image.Run)) {
	var r image.Run // the run under way, if r.Pages > 0
	for _, pg := range a.pages {
		if pg.off == 0 {
			continue
		}
		src := uint32(0)
		if pg.img != self {
			src = pg.img + 1
		}
		if r.Pages > 0 && r.Source == src && r.Page+r.Pages == uint64(pg.page) && r.FileOff+r.DataLen() == pg.off &&
			r.Pages < chunkPages && !(src == 0 && isCut(cuts, pg.off)) {
			r.Pages++
			r.CRC = image.ChecksumAppendPage(r.CRC, pg.crc)
			continue
		}
		if r.Pages > 0 {
			yield(r)
		}
		r = image.Run{Page: uint64(pg.page), Pages: 1, FileOff: pg.off, CRC: pg.crc, Source: src}
	}
	if r.Pages > 0 {
		yield(r)
	}
}

// takenArea is an area the pause took, with its runs, and the notes of its
// pages for the image's Tracker.
type takenArea struct {
	image.Area
	pages []copiedPage
}

// record notes the area's pages in tr, the image's tracking.
func (a *takenArea) record(tr *tracking) {
	for _, pg := range a.pages {
		if pg.off != 0 {
			tr.record(trackedPage{addr: uint64(a.Start) + uint64(pg.page)*image.PageSize,
				hash: pg.hash, off: pg.off, crc: pg.crc, img: pg.img})
		}
	}
}

// taken returns the areas the pause took, in address order.
func (p *Precopy) taken() ([]takenArea, error) {
	var l []takenArea
	for _, a := range p.areas {
		if !a.taken {
			continue
		}
		for i := 1; i < len(a.pages); i++ {
			if a.pages[i].page <= a.pages[i-1].page {
				return nil, fmt.Errorf("internal error: the notes of %#x-%#x have page %d after page %d (%d notes)",
					a.m.Start, a.m.End, a.pages[i].page, a.pages[i-1].page, len(a.pages))
			}
		}
		area, _ := areaOf(a.m)
		area.Runs = a.runs(p.self, p.cuts)
		l = append(l, takenArea{area, a.pages})
	}
	return l, nil
}

func isCut(cuts []uint64, off uint64) bool {
	_, found := slices.BinarySearch(cuts, off)
	return found
}

func pagesOf(m procfs.Mapping) uint64 { return (m.End - m.Start) / image.PageSize }

// Perms is m's protection as /proc/PID/maps shows it ("rw-p").
func Perms(m procfs.Mapping) string {
	a, _ := areaOf(m)
	return a.PermString()
}
