package span

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// pages lists the page numbers (0..63) that the spans cover.
func pages(l []Span) []uint64 {
	var p []uint64
	for _, s := range l {
		for a := s.Start; a < s.End; a++ {
			p = append(p, a)
		}
	}
	return p
}

// random returns sorted, non-overlapping spans within [0, 64).
func random(r *rand.Rand) []Span {
	var l []Span
	for a := uint64(r.IntN(4)); a < 64; {
		n := uint64(1 + r.IntN(6))
		l = append(l, Span{Start: a, End: min(a+n, 64)})
		a += n + uint64(r.IntN(5)) // may be 0: adjacent spans
	}
	return l
}

func TestSubtract(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 2000; i++ {
		a, b := random(r), random(r)
		got := Subtract(a, b)
		var want []uint64
		for _, p := range pages(a) {
			if !slices.Contains(pages(b), p) {
				want = append(want, p)
			}
		}
		if !slices.Equal(pages(got), want) {
			t.Fatalf("Subtract(%v, %v) = %v: pages %v, want %v", a, b, got, pages(got), want)
		}
		if !slices.IsSortedFunc(got, func(x, y Span) int { return int(x.Start) - int(y.Start) }) {
			t.Fatalf("Subtract(%v, %v) = %v is not sorted", a, b, got)
		}
	}
}

func TestInsert(t *testing.T) {
	a := []Span{{0, 2}, {5, 6}, {9, 12}}
	for _, tc := range []struct {
		s    Span
		want []Span
	}{
		{Span{3, 4}, []Span{{0, 2}, {3, 4}, {5, 6}, {9, 12}}},
		{Span{20, 30}, []Span{{0, 2}, {5, 6}, {9, 12}, {20, 30}}},
		{Span{2, 5}, []Span{{0, 2}, {2, 5}, {5, 6}, {9, 12}}},
	} {
		if got := Insert(a, tc.s); !slices.Equal(got, tc.want) {
			t.Errorf("Insert(%v, %v) = %v, want %v", a, tc.s, got, tc.want)
		}
	}
	if len(a) != 3 || a[1] != (Span{5, 6}) {
		t.Errorf("Insert changed its argument: %v", a)
	}
}
