package dump

import (
	"slices"
	"testing"
	"unsafe"

	"github.com/ckpt/ckpt/go/fresh"
)

// TestArena: scratch memory given back joins the free stretches next to
// it, so that the arena does not break up into pieces too small to use;
// scratch memory of a huge page or more starts on a huge page boundary.
func TestArena(t *testing.T) {
	unmapScratch(mapScratch(1)) // the arena is reserved on first use
	arena.Lock()
	if arena.base == nil {
		arena.Unlock()
		t.Fatal("no arena reserved")
	}
	before := slices.Clone(arena.free)
	arena.Unlock()
	var bs [][]byte
	for i := 0; i < 8; i++ {
		n := 5000 * (i + 1)
		if i%3 == 1 {
			n = 3 << 20 // on huge pages, leaving a stretch free before it
		}
		b := mapScratch(n)
		if b == nil {
			t.Fatal("no scratch memory")
		}
		if at := uintptr(unsafe.Pointer(&b[0])); n >= fresh.HugePage && at%fresh.HugePage != 0 {
			t.Fatalf("%d bytes of scratch memory at %#x, not on a huge page boundary", n, at)
		}
		b[len(b)-1] = 1 // writable
		bs = append(bs, b)
	}
	for _, i := range []int{1, 3, 0, 2, 7, 5, 6, 4} {
		unmapScratch(bs[i])
	}
	arena.Lock()
	defer arena.Unlock()
	if !slices.Equal(arena.free, before) {
		t.Errorf("free stretches %v, want %v as before", arena.free, before)
	}
}
