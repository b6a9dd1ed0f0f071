package restart

import (
	"fmt"
	"math/bits"
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
			if p.len == 0 {
				continue
			}
			for st := range p.stretches() {
				for k := range st.Pages {
					m[p.addr+(st.Page+k)*P] = st.FileOff + k*P
				}
			}
		}
		return m
	}
	// Offset of the page at a in piece p, as loading places it.
	dataOff := func(p piece, a uint64) uint64 {
		k := (a - p.addr) / P
		return p.off + uint64(bits.OnesCount16(p.mask&(1<<k-1)))*P
	}
	dropRange := func(m map[uint64]uint64, lo, hi uint64) {
		for a := range m {
			if a >= lo && a < hi {
				delete(m, a)
			}
		}
	}
	// A run of 20 pages crosses a faultChunk (16 page) boundary; the last
	// one skips pages and crosses three.
	runs := []image.Run{{Page: 0x10, Pages: 4, FileOff: 0x1000}, {Page: 0x20, Pages: 20, FileOff: 0x9000},
		{Page: 0x40, Pages: 1, FileOff: 0x2000}, {Page: 0x5e, Pages: 40, FileOff: 0x30000, Mask: 1<<39 | 0xf0f0a05}}
	for _, test := range []struct {
		desc string
		op   func(*pending)
		want func(map[uint64]uint64)
	}{
		{"nothing", func(*pending) {}, func(map[uint64]uint64) {}},
		{"drop inside a piece", func(s *pending) { s.drop(0x11000, 0x13000) },
			func(m map[uint64]uint64) { delete(m, 0x11000); delete(m, 0x12000) }},
		{"drop across pieces", func(s *pending) { s.drop(0x12000, 0x22000) },
			func(m map[uint64]uint64) { dropRange(m, 0x12000, 0x22000) }},
		{"drop the front", func(s *pending) { s.drop(0x10000, 0x10000+P) },
			func(m map[uint64]uint64) { delete(m, 0x10000) }},
		{"load the piece a fault hits", func(s *pending) { s.done(s.find(0x31000)) },
			func(m map[uint64]uint64) { dropRange(m, 0x30000, 0x34000) }},
		{"load the first, then drop around it", func(s *pending) { s.done(s.first()); s.drop(0x13000, 0x21000) },
			func(m map[uint64]uint64) { dropRange(m, 0, 0x21000) }},
		{"remap part of a piece", func(s *pending) { s.remap(0x21000, 0xf0000, 2*P) },
			func(m map[uint64]uint64) {
				m[0xf0000], m[0xf1000] = m[0x21000], m[0x22000]
				delete(m, 0x21000)
				delete(m, 0x22000)
			}},
		{"remap onto pending pages", func(s *pending) { s.remap(0x40000, 0x10000, P) },
			func(m map[uint64]uint64) {
				m[0x10000] = m[0x40000]
				delete(m, 0x40000)
			}},
		{"drop inside a piece that skips pages", func(s *pending) { s.drop(0x61000, 0x6a000) },
			func(m map[uint64]uint64) { dropRange(m, 0x61000, 0x6a000) }},
		{"drop all a piece stores, not all it spans", func(s *pending) { s.drop(0x70000, 0x76000) },
			func(m map[uint64]uint64) { dropRange(m, 0x70000, 0x76000) }},
		{"drop the front and back of pieces that skip pages", func(s *pending) { s.drop(0x5f000, 0x62000); s.drop(0x6d000, 0x72000) },
			func(m map[uint64]uint64) { dropRange(m, 0x5f000, 0x62000); dropRange(m, 0x6d000, 0x72000) }},
		{"remap part of a piece that skips pages", func(s *pending) { s.remap(0x62000, 0xa0000, 3*P) },
			func(m map[uint64]uint64) {
				for a := uint64(0x62000); a < 0x65000; a += P {
					if off, ok := m[a]; ok {
						m[a-0x62000+0xa0000] = off
						delete(m, a)
					}
				}
			}},
	} {
		t.Run(test.desc, func(t *testing.T) {
			var ps []piece
			for k := range runs {
				n := len(ps)
				ps = appendRunPieces(ps, 0, &runs[k], int32(k))
				if got := runPieceCount(0, &runs[k]); got != len(ps)-n {
					t.Fatalf("run %d: runPieceCount %d, appended %d", k, got, len(ps)-n)
				}
			}
			s := &pending{ps: ps, left: len(ps)}
			want := model(s)
			if len(want) != 4+20+1+13 {
				t.Fatalf("%d pages pending to begin with", len(want))
			}
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
				if p.len == 0 {
					continue
				}
				live++
				if p.len > faultChunk || p.addr/faultChunk != (p.end()-1)/faultChunk ||
					p.mask == 0 || uint64(p.mask)>>(p.len/P) != 0 {
					t.Errorf("piece %+v crosses a fault chunk or has a bad mask", p)
				}
			}
			if live != s.left {
				t.Errorf("%d pieces left, counted %d", s.left, live)
			}
			for a, off := range want {
				if i := s.find(a); i < 0 || dataOff(s.ps[i], a) != off {
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
			ps = appendRunPieces(ps, g.start, &g.runs[j], g.first+int32(j))
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

// Faults read before an answer that woke their threads need none of
// their own; the others keep their order.
func TestDropAnswered(t *testing.T) {
	faults := []uint64{0x5000, 0x1000, 0x3000, 0x4000, 0x2000, 0x1000, 0x6000}
	got := dropAnswered(faults, 0x2000, 0x5000)
	want := []uint64{0x5000, 0x1000, 0x1000, 0x6000}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("dropAnswered = %#x, want %#x", got, want)
	}
	if got := dropAnswered(nil, 0, 0x1000); len(got) != 0 {
		t.Errorf("dropAnswered(nil) = %#x", got)
	}
}

// The restore information and each thread's TLS first, then the code
// they resume in and return through, then their stacks, each fault chunk
// once.
func TestHotChunks(t *testing.T) {
	const C = faultChunk
	threads := []image.Thread{
		{RIP: 0x7000_0460, RSP: 0x9000_f000, FSBase: 0x5000_06c0, RseqAddr: 0x5000_0660},
		{RIP: 0x7000_0460, RSP: 0x8000_0440, FSBase: 0x6000_16c0},
	}
	im := &image.Image{Threads: threads}
	im.Process.RestoreInfo = 0x7200_0100
	im.Process.Sigactions[62] = image.Sigaction{Handler: 0x7000_1000, Flags: saRestorer, Restorer: 0x7100_0040}
	im.Process.Sigactions[11] = image.Sigaction{Handler: 1} // SIG_IGN
	var got []uint64
	for _, s := range hotChunks(im) {
		if s.End-s.Start != C || s.Start%C != 0 {
			t.Errorf("chunk %#x-%#x", s.Start, s.End)
		}
		got = append(got, s.Start)
	}
	want := []uint64{0x7200_0000, 0x5000_0000, 0x6000_0000, 0x7000_0000, 0x7100_0000, 0x9000_0000, 0x9001_0000, 0x8000_0000}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("hotChunks = %#x, want %#x", got, want)
	}
}
