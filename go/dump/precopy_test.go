package dump

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestMerge: a pass's copies replace the notes of the same pages and fill
// in new ones, in order, in place.
func TestMerge(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for round := 0; round < 200; round++ {
		const pages = 300
		a := &copiedArea{pages: make([]copiedPage, 0, pages), updates: make([]copiedPage, 0, pages)}
		want := map[uint32]uint64{}
		for pass := 0; pass < 4; pass++ {
			for pg := uint32(0); pg < pages; pg++ {
				if r.IntN(3) == 0 {
					off := uint64(r.IntN(1000)+1) * 4096
					a.updates = append(a.updates, copiedPage{page: pg, off: off})
					want[pg] = off
				}
			}
			a.merge()
			if !slices.IsSortedFunc(a.pages, func(x, y copiedPage) int { return int(x.page) - int(y.page) }) {
				t.Fatalf("round %d pass %d: notes out of order", round, pass)
			}
			if len(a.pages) != len(want) {
				t.Fatalf("round %d pass %d: %d notes, want %d", round, pass, len(a.pages), len(want))
			}
			for _, p := range a.pages {
				if want[p.page] != p.off {
					t.Fatalf("round %d pass %d: page %d at %#x, want %#x", round, pass, p.page, p.off, want[p.page])
				}
			}
		}
	}
}
