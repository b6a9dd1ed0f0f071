package fresh

import "testing"

type run struct {
	page, pages, off uint64
	crc, src         uint32
}

// TestSlice: a slice of several huge pages' worth, and one not starting on
// a page, read as zeros and keep what is written.
func TestSlice(t *testing.T) {
	for _, n := range []int{1, 100, 3 << 20 / 32, 262272} {
		s := Slice[run](n)
		if len(s) != n {
			t.Fatalf("Slice(%d): len %d", n, len(s))
		}
		for i := range s {
			if s[i] != (run{}) {
				t.Fatalf("Slice(%d)[%d] = %+v, not zero", n, i, s[i])
			}
			s[i].page = uint64(i)
		}
		for i := range s {
			if s[i].page != uint64(i) {
				t.Fatalf("Slice(%d)[%d] lost what was written", n, i)
			}
		}
	}
	b := make([]byte, 5<<20)
	b[12345] = 7
	Populate(b[3:]) // not page aligned: whole pages around it
	Populate(b[:0])
	if b[12345] != 7 || b[0] != 0 {
		t.Fatal("Populate changed what memory holds")
	}
}
