package restart

import (
	"fmt"
	"testing"
)

// The loader's bookkeeping of what is still to load, against a page-by-page
// model: each page maps to the data offset it must be filled from, or is
// absent.
func TestPendingPieces(t *testing.T) {
	const P = 4096
	model := func(ps []piece) map[uint64]uint64 {
		m := map[uint64]uint64{}
		for _, p := range ps {
			for a := p.addr; a < p.addr+p.len; a += P {
				m[a] = p.off + (a - p.addr)
			}
		}
		return m
	}
	sorted := func(ps []piece) bool {
		for i := 1; i < len(ps); i++ {
			if ps[i-1].addr+ps[i-1].len > ps[i].addr {
				return false
			}
		}
		return true
	}
	start := []piece{{addr: 0x10000, len: 4 * P, off: 0x1000}, {addr: 0x20000, len: 8 * P, off: 0x9000},
		{addr: 0x40000, len: P, off: 0x2000}}
	for _, test := range []struct {
		desc string
		op   func([]piece) []piece
		want func(map[uint64]uint64) map[uint64]uint64
	}{
		{"drop inside a piece", func(ps []piece) []piece { return drop(ps, 0x11000, 0x13000) },
			func(m map[uint64]uint64) map[uint64]uint64 {
				delete(m, 0x11000)
				delete(m, 0x12000)
				return m
			}},
		{"drop across pieces", func(ps []piece) []piece { return drop(ps, 0x12000, 0x22000) },
			func(m map[uint64]uint64) map[uint64]uint64 {
				for a := range m {
					if a >= 0x12000 && a < 0x22000 {
						delete(m, a)
					}
				}
				return m
			}},
		{"drop the front", func(ps []piece) []piece { return drop(ps, 0x10000, 0x10000+P) },
			func(m map[uint64]uint64) map[uint64]uint64 { delete(m, 0x10000); return m }},
		{"remap part of a piece", func(ps []piece) []piece { return remap(ps, 0x21000, 0x80000, 2*P) },
			func(m map[uint64]uint64) map[uint64]uint64 {
				m[0x80000], m[0x81000] = m[0x21000], m[0x22000]
				delete(m, 0x21000)
				delete(m, 0x22000)
				return m
			}},
		{"remap onto pending pages", func(ps []piece) []piece { return remap(ps, 0x40000, 0x10000, P) },
			func(m map[uint64]uint64) map[uint64]uint64 {
				m[0x10000] = m[0x40000]
				delete(m, 0x40000)
				return m
			}},
	} {
		t.Run(test.desc, func(t *testing.T) {
			ps := append([]piece(nil), start...)
			got := test.op(ps)
			want := test.want(model(start))
			if !sorted(got) {
				t.Fatalf("pieces out of order: %+v", got)
			}
			if fmt.Sprint(model(got)) != fmt.Sprint(want) {
				t.Errorf("got %v, want %v", model(got), want)
			}
			for a := range want {
				if i := find(got, a); i < 0 {
					t.Errorf("find(%#x) = -1", a)
				}
			}
			if find(got, 0x30000) >= 0 {
				t.Errorf("find of a page never pending succeeded")
			}
		})
	}
}
