package dump

import "github.com/ckpt/ckpt/go/span"

// Churned remembers the areas whose copy before the pause went to waste:
// the pause found them remapped, untracked or written faster than it
// could copy.  Such a copy stays in the image unused, as large as the
// area, so the area is forked instead for the next checkpoint, then, if
// the next copy is wasted too, for the next 2, 4, ... up to 32; a copy
// taken again forgets it.  (Before, an area was forked for good after
// one waste: a program that remapped its heap once, while a checkpoint
// ran, paused for the fork of that heap at every checkpoint after.)
type Churned struct {
	n     int // checkpoints begun (Next)
	areas []churnedArea
}

type churnedArea struct {
	span.Span
	skip  int // checkpoints it was left out for after its last waste
	until int // left out while n < until
}

// maxChurnSkip bounds how many checkpoints in a row an area is left out.
const maxChurnSkip = 32

// Next counts a checkpoint: call it before asking Skips about its areas.
func (c *Churned) Next() { c.n++ }

// Skips reports whether s overlaps an area left out now.
func (c *Churned) Skips(s span.Span) bool {
	for _, a := range c.areas {
		if a.Overlaps(s) && c.n < a.until {
			return true
		}
	}
	return false
}

// Wasted records that this checkpoint's copy of s went to waste.  Areas
// it overlaps are merged into it, with the longest skip among them.
func (c *Churned) Wasted(s span.Span) {
	skip := 0
	kept := c.areas[:0]
	for _, a := range c.areas {
		if a.Overlaps(s) {
			skip = max(skip, a.skip)
			s.Start, s.End = min(s.Start, a.Start), max(s.End, a.End)
			continue
		}
		kept = append(kept, a)
	}
	skip = min(max(2*skip, 1), maxChurnSkip)
	c.areas = append(kept, churnedArea{Span: s, skip: skip, until: c.n + 1 + skip})
}

// Taken records that this checkpoint's copy of s was used: what is
// remembered of the areas it overlaps is forgotten.
func (c *Churned) Taken(s span.Span) {
	kept := c.areas[:0]
	for _, a := range c.areas {
		if !a.Overlaps(s) {
			kept = append(kept, a)
		}
	}
	c.areas = kept
}
