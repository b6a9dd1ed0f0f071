package restart

import (
	"slices"
	"sort"

	"github.com/ckpt/ckpt/go/span"
)

// piece is a stretch of pages still to load: len bytes at addr in the
// program, from off in the data of source src (the run's Source: 0 the
// image, k its parent k).
type piece struct {
	addr, len, off uint64
	run            int32 // its run's number (loader.run)
	src            int32
}

func (p *piece) end() uint64 { return p.addr + p.len }

// pending is what a loader still has to load into one process.  Its pieces
// are sorted by address and none is longer than faultChunk (runs are split
// at faultChunk boundaries), so that a fault loads one whole piece and a
// loaded piece is only marked done (its len set to 0), without moving the
// others.  An image with every other page zero has 262,144 pieces per
// 2 GiB; the first version cut the list and copied its tail (up to 8 MiB)
// at every fault.  Only the program's own changes to its memory map (rare)
// split pieces or rebuild the list.
type pending struct {
	ps   []piece // sorted by addr; len 0: done
	head int     // ps[:head] are all done
	left int     // pieces not done

	// order is the ranges loaded first, one after the other (see
	// loadOrder); at is where loading is up to in order[0].
	order []span.Span
	at    uint64
}

// splitCount is the number of pieces appendSplit cuts p into.
func splitCount(p piece) int { return int((p.end()-1)/faultChunk-p.addr/faultChunk) + 1 }

// appendSplit appends p to ps cut at faultChunk boundaries.
func appendSplit(ps []piece, p piece) []piece {
	for p.len > 0 {
		q := p
		q.len = min(p.len, (p.addr/faultChunk+1)*faultChunk-p.addr)
		ps = append(ps, q)
		p.addr, p.off, p.len = p.addr+q.len, p.off+q.len, p.len-q.len
	}
	return ps
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
			d := end - p.addr
			p.addr, p.off, p.len = end, p.off+d, p.len-d
		case p.end() <= end: // its back
			p.len = start - p.addr
		default: // its middle: the back becomes a piece of its own
			s.cut(end)
			s.ps[i].len = start - s.ps[i].addr
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
	p := &s.ps[i]
	tail := *p
	tail.addr, tail.off, tail.len = addr, p.off+(addr-p.addr), p.end()-addr
	p.len = addr - p.addr
	s.ps = slices.Insert(s.ps, i+1, tail)
	s.left++
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
