package dump

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/ckpt/ckpt/go/image"
	"github.com/ckpt/ckpt/go/procfs"
	"github.com/ckpt/ckpt/go/span"
	"golang.org/x/sys/unix"
)

// Reading the program's memory is most of what a precopy does, once its
// pages go to the disk directly (direct.go): process_vm_readv copies
// 4-9 GB/s from one CPU here and two CPUs reading side by side reach
// twice that, and checking each page for zeros and checksumming it come
// on top.  So Copy splits each area's chunks into as many consecutive parts
// as there are CPUs (at most maxCopiers) and a copier goroutine does each
// part: reads, checks, checksums, writes, and notes its pages in a list of
// its own, which Copy appends to the area's in order.  What the copiers
// share is safe to share: the writer (a channel), the memory reader and
// the page map (reads at offsets), the area's notes of the passes before
// (only read until merge), and the file offset of the next page data
// (taken atomically: the parts' pages interleave in the file by chunk,
// which the format allows).
//
// A compressed image is copied by one copier: its segments must follow
// each other in the order of their data offsets.

// maxCopiers bounds the copiers of one area: past a few, memory bandwidth
// is the limit, and each holds two of the writer's buffers.
const maxCopiers = 4

// minCopierChunks is the least number of chunks worth a copier of their own.
const minCopierChunks = 16

// copierCount is how many copiers an area of n chunks gets.
func (p *Precopy) copierCount(n int) int {
	if p.compressors > 0 {
		return 1
	}
	return max(1, min(runtime.GOMAXPROCS(0), maxCopiers, n/minCopierChunks))
}

// A copier copies pages of one area for a Precopy.
type copier struct {
	p       *Precopy
	a       *copiedArea
	updates []copiedPage // the pages copied, in order; room for every one
	broken  bool         // some pages could not be read

	entries []byte             // a chunk's page map entries
	remote  []unix.RemoteIovec // its present stretches
	fresh   []int              // store's: updates of the pages it writes
	over    overWrite          // store's: pages written over their older copies
}

// copier returns copier i, set to copy pages of a noting them in updates.
// Its lists are made once per Precopy: what is allocated now is in the
// snapshot.
func (p *Precopy) copier(i int, a *copiedArea, updates []copiedPage) *copier {
	c := p.copiers[i]
	if c == nil {
		c = &copier{p: p, entries: make([]byte, chunkPages*8),
			remote: make([]unix.RemoteIovec, 0, chunkPages/2+1), fresh: make([]int, 0, chunkPages)}
		p.copiers[i] = c
	}
	c.a, c.updates, c.broken, c.over = a, updates, false, overWrite{}
	return c
}

// Copy copies the pages of spans (in order, each inside one of the areas;
// repeats are skipped) that are in memory or swap, and notes the ones
// that are not as holding zeros: the first time the whole areas, then the
// pages the program wrote since.
func (p *Precopy) Copy(spans []span.Span) error {
	k := 0
	var done uint64 // where the pages copied so far end: skip repeats
	for _, a := range p.areas {
		chunks := p.chunks[:0] // of at most chunkPages pages each
		for ; k < len(spans) && spans[k].Start < a.m.End; k++ {
			sp := spans[k]
			sp.Start = max(sp.Start, done)
			if sp.Start >= sp.End {
				continue
			}
			done = sp.End
			if sp.Start < a.m.Start || sp.End > a.m.End {
				return fmt.Errorf("pages %#x-%#x are not in one area", sp.Start, sp.End)
			}
			for addr := sp.Start; addr < sp.End; {
				end := min(sp.End, addr+chunkPages*image.PageSize)
				chunks = append(chunks, span.Span{Start: addr, End: end})
				addr = end
			}
		}
		p.chunks = chunks
		if err := p.copyChunks(a, chunks); err != nil {
			return fmt.Errorf("copying %#x-%#x: %w", a.m.Start, a.m.End, err)
		}
		a.merge()
	}
	return nil
}

// copyChunks copies chunks of a, split among copiers.
func (p *Precopy) copyChunks(a *copiedArea, chunks []span.Span) error {
	n := p.copierCount(len(chunks))
	if n == 1 {
		c := p.copier(0, a, a.updates)
		err := c.copyAll(chunks)
		a.updates, a.broken = c.updates, a.broken || c.broken
		return err
	}
	cs := make([]*copier, n)
	parts := make([][]span.Span, n)
	for i := range cs {
		parts[i] = chunks[i*len(chunks)/n : (i+1)*len(chunks)/n]
		var pages uint64
		for _, ch := range parts[i] {
			pages += (ch.End - ch.Start) / image.PageSize
		}
		cs[i] = p.copier(i, a, newScratch[copiedPage](int(pages)))
		if cs[i].updates == nil {
			return fmt.Errorf("no memory to note the pages of %#x-%#x", a.m.Start, a.m.End)
		}
		defer freeScratch(cs[i].updates)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.copyAll(parts[i])
		}()
	}
	wg.Wait()
	for i, c := range cs {
		if errs[i] != nil {
			return errs[i]
		}
		a.updates = append(a.updates, c.updates...)
		a.broken = a.broken || c.broken
		c.updates = nil // scratch memory, unmapped on return
	}
	return nil
}

// copyAll copies chunks one after the other.
func (c *copier) copyAll(chunks []span.Span) error {
	for _, ch := range chunks {
		if err := c.copyChunk(ch); err != nil {
			c.over.flush(c.p.out)
			return err
		}
	}
	return c.over.flush(c.p.out)
}

// copyChunk copies the present pages of ch in one read of all its
// stretches: reading a hole would map the zero page into the program.  A
// page no longer present (MADV_DONTNEED) holds zeros now.  A chunk that
// cannot be read (unmapped since) breaks the area: the pause leaves it to
// the snapshot child.
func (c *copier) copyChunk(ch span.Span) error {
	const P = image.PageSize
	first, n := (ch.Start-c.a.m.Start)/P, (ch.End-ch.Start)/P
	e := c.entries[:n*8]
	if err := preadFull(c.p.pagemap, e, int64(ch.Start/P*8)); err != nil {
		return fmt.Errorf("reading pagemap: %w", err)
	}
	present := func(i uint64) bool {
		return binary.LittleEndian.Uint64(e[i*8:])&(procfs.PagePresent|procfs.PageSwapped) != 0
	}
	c.remote = c.remote[:0]
	var size int
	for i := uint64(0); i < n; {
		if !present(i) {
			i++
			continue
		}
		j := i + 1
		for j < n && present(j) {
			j++
		}
		c.remote = append(c.remote, unix.RemoteIovec{Base: uintptr(ch.Start + i*P), Len: int((j - i) * P)})
		size += int((j - i) * P)
		i = j
	}
	if size == 0 {
		return c.store(first, n, present, nil)
	}
	buf := c.p.out.get()[:size]
	defer c.p.out.put(buf)
	if err := c.p.mem.readv(buf, c.remote); err != nil {
		c.broken = true
		return nil
	}
	return c.store(first, n, present, buf)
}

// store writes the pages among n from page first of the area for which
// present is true (every one, with present nil), which buf holds one after
// the other, where they hold more than zeros, and notes where each is.  A
// page stored before is written over its older copy, which nothing else
// refers to: the file grows only by pages that held zeros before (and
// keeps a copy only of pages that came to hold zeros).  A page not present
// holds zeros now.  With track, a page whose bytes are stored already,
// here or in a parent, is not stored again.
func (c *copier) store(first, n uint64, present func(uint64) bool, buf []byte) error {
	const P = image.PageSize
	p, a := c.p, c.a
	var kept uint64 // new pages moved to the front of buf
	var next uint64 // the next page of buf
	fresh := c.fresh[:0]
	for i := uint64(0); i < n; i++ {
		u := copiedPage{page: uint32(first + i)}
		old, ok := a.find(first + i)
		if present != nil && !present(i) {
			if ok && old.off != 0 {
				c.updates = append(c.updates, u) // no longer in memory
			}
			continue
		}
		k := next
		next++
		pg := buf[k*P : (k+1)*P]
		if bytes.Equal(pg, p.zero) || p.scratchAt(a.m.Start+(first+i)*P) {
			if ok && old.off != 0 {
				c.updates = append(c.updates, u) // holds zeros now
			}
			continue
		}
		u.crc, u.img = image.Checksum(pg), p.self
		if p.track {
			u.hash = pageHash(pg)
			if ok && old.off != 0 && old.crc == u.crc && old.hash == u.hash {
				continue
			}
		}
		if ok && old.off != 0 && old.img == p.self && p.compressors == 0 {
			if err := c.over.add(p.out, pg, old.off); err != nil {
				return err
			}
			u.off = old.off
			c.updates = append(c.updates, u)
			continue
		}
		if kept != k {
			copy(buf[kept*P:], pg)
		}
		u.off = kept * P
		kept++
		fresh = append(fresh, len(c.updates))
		c.updates = append(c.updates, u)
	}
	if kept == 0 {
		return nil
	}
	var off uint64
	var data io.WriterAt = p.out
	if p.compressors > 0 {
		// One copier: the segments follow each other.
		off = p.off.Load()
		p.off.Store(off + kept*P)
		data = segmentWriter{p.out}
		p.cuts = append(p.cuts, off)
	} else {
		off = p.off.Add(kept*P) - kept*P
	}
	if _, err := data.WriteAt(buf[:kept*P], int64(off)); err != nil {
		return err
	}
	for _, k := range fresh {
		c.updates[k].off += off
	}
	return nil
}

// overWrite gathers pages written over their older copies into one write
// while those copies lie one after the other in the file: pages written
// again since the last pass are often neighbours, and page by page they
// would each be a write of their own (to the disk, where it goes direct).
type overWrite struct {
	buf []byte // a writer's buffer, the pages not written yet
	off uint64 // where they go
}

// add queues pg to be written at off.
func (o *overWrite) add(out *asyncFile, pg []byte, off uint64) error {
	if o.buf != nil && (off != o.off+uint64(len(o.buf)) || len(o.buf) == cap(o.buf)) {
		if err := o.flush(out); err != nil {
			return err
		}
	}
	if o.buf == nil {
		o.buf, o.off = out.get()[:0], off
	}
	o.buf = append(o.buf, pg...)
	return nil
}

// flush writes what add queued, and gives the buffer back.
func (o *overWrite) flush(out *asyncFile) error {
	if o.buf == nil {
		return nil
	}
	_, err := out.WriteAt(o.buf, int64(o.off))
	out.put(o.buf)
	o.buf = nil
	return err
}
