package restart

import (
	"fmt"
	"sort"
	"testing"

	"github.com/ckpt/ckpt/go/image"
	"github.com/ckpt/ckpt/go/span"
)

// The loader's bookkeeping of what is still to load, against a page-by-page
// model: each page maps to the data offset it must be filled from, or is
// absent.
func TestPending(t *testing.T) {
	const P = 4096
	model := func(s *pending) map[uint64]uint64 {
		m := map[uint64]uint64{}
		for _, p := range s.ps {
			for a := p.addr; a < p.end(); a += P {
				m[a] = p.off + (a - p.addr)
			}
		}
		return m
	}
	// A piece of 20 pages crosses a faultChunk (16 page) boundary.
	start := []piece{{addr: 0x10000, len: 4 * P, off: 0x1000}, {addr: 0x20000, len: 20 * P, off: 0x9000},
		{addr: 0x40000, len: P, off: 0x2000}}
	for _, test := range []struct {
		desc string
		op   func(*pending)
		want func(map[uint64]uint64)
	}{
		{"nothing", func(*pending) {}, func(map[uint64]uint64) {}},
		{"drop inside a piece", func(s *pending) { s.drop(0x11000, 0x13000) },
			func(m map[uint64]uint64) { delete(m, 0x11000); delete(m, 0x12000) }},
		{"drop across pieces", func(s *pending) { s.drop(0x12000, 0x22000) },
			func(m map[uint64]uint64) {
				for a := range m {
					if a >= 0x12000 && a < 0x22000 {
						delete(m, a)
					}
				}
			}},
		{"drop the front", func(s *pending) { s.drop(0x10000, 0x10000+P) },
			func(m map[uint64]uint64) { delete(m, 0x10000) }},
		{"load the piece a fault hits", func(s *pending) { s.done(s.find(0x31000)) },
			func(m map[uint64]uint64) {
				for a := uint64(0x30000); a < 0x34000; a += P {
					delete(m, a)
				}
			}},
		{"load the first, then drop around it", func(s *pending) { s.done(s.first()); s.drop(0x13000, 0x21000) },
			func(m map[uint64]uint64) {
				for a := range m {
					if a < 0x21000 {
						delete(m, a)
					}
				}
			}},
		{"remap part of a piece", func(s *pending) { s.remap(0x21000, 0x80000, 2*P) },
			func(m map[uint64]uint64) {
				m[0x80000], m[0x81000] = m[0x21000], m[0x22000]
				delete(m, 0x21000)
				delete(m, 0x22000)
			}},
		{"remap onto pending pages", func(s *pending) { s.remap(0x40000, 0x10000, P) },
			func(m map[uint64]uint64) {
				m[0x10000] = m[0x40000]
				delete(m, 0x40000)
			}},
	} {
		t.Run(test.desc, func(t *testing.T) {
			var ps []piece
			for _, p := range start {
				ps = appendSplit(ps, p)
			}
			s := &pending{ps: ps, left: len(ps)}
			for _, p := range s.ps {
				if p.len > faultChunk || p.addr/faultChunk != (p.end()-1)/faultChunk {
					t.Fatalf("piece %+v crosses a fault chunk", p)
				}
			}
			want := model(s)
			test.op(s)
			test.want(want)
			if fmt.Sprint(model(s)) != fmt.Sprint(want) {
				t.Errorf("got %v, want %v", model(s), want)
			}
			live := 0
			for i, p := range s.ps {
				if i > 0 && s.ps[i-1].end() > p.addr {
					t.Fatalf("pieces out of order: %+v", s.ps)
				}
				if p.len != 0 {
					live++
				}
			}
			if live != s.left {
				t.Errorf("%d pieces left, counted %d", s.left, live)
			}
			for a, off := range want {
				if i := s.find(a); i < 0 || s.ps[i].off+(a-s.ps[i].addr) != off {
					t.Errorf("find(%#x) = %d", a, i)
				}
			}
			if s.find(0x38000) >= 0 || s.find(0x50000) >= 0 {
				t.Errorf("find of a page never pending succeeded")
			}
			if c := s.clone(); fmt.Sprint(model(c)) != fmt.Sprint(want) || c.left != live {
				t.Errorf("clone has %v", model(c))
			}
			for !s.empty() {
				s.done(s.first())
			}
		})
	}
}

// The background order: the areas with the fewest bytes to load first,
// each in address order, what faults loaded skipped, the rest (moved by
// mremap, say) last in address order; as many pieces as there are.
func TestLoadOrder(t *testing.T) {
	const P = 4096
	run := func(page, pages uint64) image.Run { return image.Run{Page: page, Pages: pages, FileOff: page * P} }
	groups := []runGroup{
		{first: 0, start: 0x100000, runs: []image.Run{run(0, 20), run(30, 10)}}, // 30 pages: last
		{first: 2, start: 0x400000, runs: []image.Run{run(1, 1)}},               // 1 page: first
		{first: 3, start: 0x500000, runs: []image.Run{run(0, 2), run(4, 2)}},    // 4 pages: second
	}
	order := loadOrder(groups)
	if want := []span.Span{{Start: 0x401000, End: 0x402000}, {Start: 0x500000, End: 0x506000}, {Start: 0x100000, End: 0x128000}}; fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("loadOrder = %#x, want %#x", order, want)
	}
	var ps []piece
	for _, g := range groups {
		for j := range g.runs {
			ps = appendSplit(ps, runPiece(g.start, &g.runs[j], g.first+int32(j)))
		}
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].addr < ps[j].addr })
	s := &pending{ps: ps, left: len(ps), order: order}
	s.done(s.find(0x504000))          // a fault loaded it
	s.remap(0x11e000, 0x600000, 10*P) // the heap's last run moved above everything
	var got []uint64
	for !s.empty() {
		i, limit := s.next()
		if end := s.ps[i].end(); end > limit {
			t.Fatalf("piece at %#x ends at %#x, after its range (%#x)", s.ps[i].addr, end, limit)
		}
		got = append(got, s.ps[i].addr)
		s.done(i)
	}
	want := []uint64{0x401000, 0x500000, 0x100000, 0x110000, 0x600000, 0x602000} // (split at 0x120000)
	if fmt.Sprintf("%#x", got) != fmt.Sprintf("%#x", want) {
		t.Errorf("loaded %#x, want %#x", got, want)
	}
}
