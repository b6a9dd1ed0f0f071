package fresh

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

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
	for _, n := range []int{1 << 20, HugePage, 4 << 20, 4<<20 + 5} {
		s := Slice[byte](n)
		if len(s) != n || cap(s) != n || uintptr(unsafe.Pointer(&s[0]))%HugePage != 0 {
			t.Fatalf("Slice[byte](%d): len %d cap %d at %p, want a huge page boundary", n, len(s), cap(s), &s[0])
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

// TestMap: the bytes start on a huge page boundary inside the mapping,
// read as zeros and keep what is written.
func TestMap(t *testing.T) {
	for _, n := range []int{1, 3 << 20, 4 << 20} {
		whole, b, err := Map(n)
		if err != nil {
			t.Fatal(err)
		}
		start := uintptr(unsafe.Pointer(&whole[0]))
		at := uintptr(unsafe.Pointer(&b[0]))
		if len(b) != n || at%HugePage != 0 || at < start || at+uintptr(n) > start+uintptr(len(whole)) {
			t.Fatalf("Map(%d): %d bytes at %#x in %d at %#x", n, len(b), at, len(whole), start)
		}
		for i := range b {
			if b[i] != 0 {
				t.Fatalf("Map(%d)[%d] = %d", n, i, b[i])
			}
			b[i] = byte(i)
		}
		if b[n-1] != byte(n-1) {
			t.Fatalf("Map(%d) lost what was written", n)
		}
		if err := unix.Munmap(whole); err != nil {
			t.Fatal(err)
		}
	}
}
