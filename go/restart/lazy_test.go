package restart

import (
	"fmt"
	"testing"
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
