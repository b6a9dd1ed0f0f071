package restart

import (
	"iter"
	"math/bits"
	"slices"
	"sort"

	"github.com/ckpt/ckpt/go/image"
	"github.com/ckpt/ckpt/go/span"
)

// piece is pages still to load: of the len bytes at addr in the program,
// the pages mask names (bit i: the page at addr+i*PageSize), whose data
// lies back to back from off in the data of source src (the run's Source:
// 0 the image, k its parent k).  The pages between are zeros: the run
// skips them (image.Run.Mask).  A piece holds at most faultChunk bytes.
type piece struct {
	addr, len, off uint64
	run            int32 // its run's number (loader.run)
	src            int16
	mask           uint16 // never 0 in a piece not done
}

// The mask has a bit for each page of a fault chunk.
var _ = [17]struct{}{}[faultChunk/image.PageSize]

func (p *piece) end() uint64 { return p.addr + p.len }

// full reports whether every page of p is stored.
func (p *piece) full() bool { return uint64(p.mask) == 1<<(p.len/image.PageSize)-1 }

// dataLen is the number of bytes of data p loads.
func (p *piece) dataLen() uint64 { return uint64(bits.OnesCount16(p.mask)) * image.PageSize }

// stretches yields p's stretches of stored pages, counted from addr.
func (p *piece) stretches() iter.Seq[image.Stretch] {
	return image.MaskStretches(uint64(p.mask), p.off)
}

// from returns the part of p from addr (inside it) on; its mask is 0 if
// none of those pages is stored.
func (p piece) from(addr uint64) piece {
	k := (addr - p.addr) / image.PageSize
	p.off += uint64(bits.OnesCount16(p.mask&(1<<k-1))) * image.PageSize
	p.mask >>= k
	p.addr, p.len = addr, p.end()-addr
	return p
}

// before returns the part of p before addr (inside it); its mask is 0 if
// none of those pages is stored.
func (p piece) before(addr uint64) piece {
	k := (addr - p.addr) / image.PageSize
	p.mask &= 1<<k - 1
	p.len = addr - p.addr
	return p
}

// pending is what a loader still has to load into one process.  Its pieces
// are sorted by address and none is longer than faultChunk (runs are split
// at faultChunk boundaries), so that a fault loads one whole piece and a
// loaded piece is only marked done (its len set to 0), without moving the
// others.  An image with every other page zero has 32,768 pieces per 2 GiB
// (262,144 before runs had masks); the first version cut the list and
// copied its tail (up to 8 MiB) at every fault.  Only the program's own
// changes to its memory map (rare) split pieces or rebuild the list.
type pending struct {
	ps   []piece // sorted by addr; len 0: done
	head int     // ps[:head] are all done
	left int     // pieces not done

	// order is the ranges loaded first, one after the other (see
	// loadOrder); at is where loading is up to in order[0].
	order []span.Span
	at    uint64
}

// appendRunPieces appends the pieces of run r (number k) of an area at
// start to ps: cut at faultChunk boundaries, each trimmed to its first and
// last stored page, none without one.
func appendRunPieces(ps []piece, start uint64, r *image.Run, k int32) []piece {
	const P = image.PageSize
	off := r.FileOff
	for i := uint64(0); i < r.Pages; {
		addr := start + (r.Page+i)*P
		n := min(r.Pages-i, (faultChunk-addr%faultChunk)/P) // pages to the chunk's end
		m := uint64(1)<<n - 1                               // a dense run's
		if r.Mask != 0 {
			m = r.Mask >> i & (1<<n - 1)
		}
		i += n
		if m == 0 {
			continue
		}
		skip := uint64(bits.TrailingZeros64(m))
		m >>= skip
		p := piece{addr: addr + skip*P, len: uint64(bits.Len64(m)) * P, off: off, run: k, src: int16(r.Source), mask: uint16(m)}
		ps = append(ps, p)
		off += p.dataLen()
	}
	return ps
}

// runPieceCount is the number of pieces appendRunPieces appends for r.
func runPieceCount(start uint64, r *image.Run) int {
	var buf [image.MaxMaskPages*image.PageSize/faultChunk + 1]piece
	if r.Mask != 0 {
		return len(appendRunPieces(buf[:0], start, r, 0))
	}
	addr := start + r.Page*image.PageSize
	return int((addr+r.MemLen()-1)/faultChunk-addr/faultChunk) + 1
}

func (s *pending) empty() bool { return s.left == 0 }

// first returns the index of the lowest piece not done; the set must not be
// empty.
func (s *pending) first() int {
	for s.ps[s.head].len == 0 {
		s.head++
	}
	return s.head
}

// next returns the index of the piece to load next and where the range
// it is in ends: the first piece not done in the ranges of s.order, in
// their order, then the lowest one not done.  The set must not be empty.
func (s *pending) next() (int, uint64) {
	for len(s.order) > 0 {
		r := s.order[0]
		i := s.after(max(r.Start, s.at))
		for i < len(s.ps) && s.ps[i].len == 0 && s.ps[i].addr < r.End {
			i++
		}
		if i < len(s.ps) && s.ps[i].addr < r.End {
			s.at = s.ps[i].addr
			return i, r.End
		}
		s.order, s.at = s.order[1:], 0
	}
	return s.first(), ^uint64(0)
}

// after returns the index of the first piece that ends after addr.
func (s *pending) after(addr uint64) int {
	// Ends never decrease: a done piece ends where it starts, at or
	// after the end of the one before.
	return sort.Search(len(s.ps), func(i int) bool { return s.ps[i].end() > addr })
}

// find returns the index of the piece not done that holds addr, or -1.
func (s *pending) find(addr uint64) int {
	i := s.after(addr)
	if i < len(s.ps) && s.ps[i].addr <= addr {
		return i
	}
	return -1
}

// done marks piece i loaded.
func (s *pending) done(i int) {
	if s.ps[i].len != 0 {
		s.ps[i].len = 0
		s.left--
	}
}

// drop takes [start, end) off the set: the program discarded or unmapped it.
func (s *pending) drop(start, end uint64) {
	for i := s.after(start); i < len(s.ps) && s.ps[i].addr < end; i++ {
		p := &s.ps[i]
		switch {
		case p.len == 0:
		case start <= p.addr && p.end() <= end:
			s.done(i)
		case start <= p.addr: // its front
			s.set(i, p.from(end))
		case p.end() <= end: // its back
			s.set(i, p.before(start))
		default: // its middle: the back becomes a piece of its own
			s.cut(end)
			s.set(i, s.ps[i].before(start))
			return
		}
	}
}

// remap moves what is pending in [from, from+n) to to (mremap): nothing is
// pending where it lands any more.
func (s *pending) remap(from, to, n uint64) {
	s.cut(from)
	s.cut(from + n)
	var moved []piece
	for i := range s.ps {
		if p := s.ps[i]; p.len != 0 && p.addr >= from && p.addr < from+n {
			p.addr = p.addr - from + to
			moved = append(moved, p)
			s.done(i)
		}
	}
	s.drop(to, to+n)
	live := append(s.live(len(moved)), moved...)
	sort.Slice(live, func(i, j int) bool { return live[i].addr < live[j].addr })
	*s = pending{ps: live, left: len(live), order: s.order, at: s.at}
}

// cut splits the piece that holds addr inside it, so that a piece starts at
// addr.
func (s *pending) cut(addr uint64) {
	i := s.find(addr)
	if i < 0 || s.ps[i].addr == addr {
		return
	}
	p := s.ps[i]
	if tail := p.from(addr); tail.mask != 0 {
		s.ps = slices.Insert(s.ps, i+1, tail)
		s.left++
	}
	s.set(i, p.before(addr))
}

// set replaces piece i, which is not done, with p, a part of it: done if
// p has no page stored.
func (s *pending) set(i int, p piece) {
	if p.mask == 0 {
		s.done(i)
		return
	}
	s.ps[i] = p
}

// clone returns the pieces not done as a set of their own (a forked child's).
func (s *pending) clone() *pending {
	live := s.live(0)
	return &pending{ps: live, left: len(live), order: s.order, at: s.at}
}

// live returns a new list of the pieces not done, with room for extra more.
func (s *pending) live(extra int) []piece {
	live := make([]piece, 0, s.left+extra)
	for _, p := range s.ps[s.head:] {
		if p.len != 0 {
			live = append(live, p)
		}
	}
	return live
}
