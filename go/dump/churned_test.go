package dump

import (
	"slices"
	"testing"

	"github.com/ckpt/ckpt/go/span"
)

// An area wasted at checkpoints 1, 3 and 6 is left out of checkpoint 2,
// then 4 and 5, then 7 to 10; taken at 11, it is copied at 12 again, and
// a wasted area beside it changes nothing for it.
func TestChurned(t *testing.T) {
	var c Churned
	heap := span.Span{Start: 0x1000, End: 0x9000}
	other := span.Span{Start: 0x10000, End: 0x20000}
	var skipped []int
	for n := 1; n <= 12; n++ {
		c.Next()
		if c.Skips(span.Span{Start: 0x2000, End: 0x3000}) { // inside heap
			skipped = append(skipped, n)
			continue
		}
		switch n {
		case 1, 3, 6:
			c.Wasted(heap)
			c.Wasted(other)
		case 11:
			c.Taken(heap)
		}
	}
	if want := []int{2, 4, 5, 7, 8, 9, 10}; !slices.Equal(skipped, want) {
		t.Errorf("left out of checkpoints %v, want %v", skipped, want)
	}
	if len(c.areas) != 1 || c.areas[0].Span != other || c.areas[0].skip != 4 {
		t.Errorf("remembered %+v after 12 checkpoints, want only the other area, left out 4 times", c.areas)
	}
	// Overlapping wastes merge: the longest skip counts.
	var d Churned
	d.Next()
	d.Wasted(span.Span{Start: 0x1000, End: 0x3000})
	d.Wasted(span.Span{Start: 0x2000, End: 0x5000})
	if len(d.areas) != 1 || d.areas[0].Span != (span.Span{Start: 0x1000, End: 0x5000}) || d.areas[0].skip != 2 {
		t.Errorf("merged %+v", d.areas)
	}
	// The skip stops growing.
	var e Churned
	for range 200 {
		e.Next()
		if !e.Skips(heap) {
			e.Wasted(heap)
		}
	}
	if e.areas[0].skip != maxChurnSkip {
		t.Errorf("skip %d after many wastes, want %d", e.areas[0].skip, maxChurnSkip)
	}
}
