// Package span does set arithmetic on sorted lists of address ranges, as
// the kernel reports them (PAGEMAP_SCAN regions, /proc/PID/maps lines).
package span

// Span is the range of addresses [Start, End).
type Span struct{ Start, End uint64 }

// Overlaps reports whether s and o share an address.
func (s Span) Overlaps(o Span) bool { return s.Start < o.End && o.Start < s.End }

// A list of spans is sorted by Start and its spans do not overlap; adjacent
// spans need not be joined.

// Subtract returns the parts of the spans of a that are in no span of b.
func Subtract(a, b []Span) []Span {
	var out []Span
	j := 0
	for _, s := range a {
		for j < len(b) && b[j].End <= s.Start {
			j++
		}
		start := s.Start
		for k := j; k < len(b) && b[k].Start < s.End; k++ {
			if b[k].Start > start {
				out = append(out, Span{Start: start, End: b[k].Start})
			}
			start = max(start, b[k].End)
		}
		if start < s.End {
			out = append(out, Span{Start: start, End: s.End})
		}
	}
	return out
}

// Insert returns a new list: a with s, which overlaps none of a's spans.
func Insert(a []Span, s Span) []Span {
	out := make([]Span, 0, len(a)+1)
	i := 0
	for i < len(a) && a[i].Start < s.Start {
		i++
	}
	out = append(out, a[:i]...)
	out = append(out, s)
	return append(out, a[i:]...)
}
