package dump

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"unsafe"

	"github.com/ckpt/ckpt/go/image"
	"github.com/ckpt/ckpt/go/procfs"
	"github.com/ckpt/ckpt/go/span"
	"golang.org/x/sys/unix"
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

// TestRuns: stored pages that follow each other in the area and in the file
// make one run, of at most chunkPages pages, whose CRC is that of its bytes.
func TestRuns(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	data := make([]byte, 600*image.PageSize)
	for i := range data {
		data[i] = byte(r.IntN(256))
	}
	a := &copiedArea{}
	for pg := uint32(0); pg < 600; pg++ {
		if pg == 300 {
			continue // a page of zeros: no note
		}
		off := uint64(image.DataStart) + uint64(pg)*image.PageSize
		if pg == 450 {
			off += 1 << 30 // copied again later, elsewhere
		}
		b := data[int(pg)*image.PageSize : int(pg+1)*image.PageSize]
		a.pages = append(a.pages, copiedPage{page: pg, crc: image.Checksum(b), off: off})
	}
	runs := a.runs(0, nil)
	want := [][2]uint64{{0, 256}, {256, 44}, {301, 149}, {450, 1}, {451, 149}}
	if len(runs) != len(want) {
		t.Fatalf("got %d runs %+v, want %v", len(runs), runs, want)
	}
	for k, run := range runs {
		if run.Page != want[k][0] || run.Pages != want[k][1] {
			t.Errorf("run %d covers %d+%d, want %d+%d", k, run.Page, run.Pages, want[k][0], want[k][1])
		}
		if crc := image.Checksum(data[run.Page*image.PageSize : (run.Page+run.Pages)*image.PageSize]); run.CRC != crc {
			t.Errorf("run %d: CRC %#x, want %#x", k, run.CRC, crc)
		}
	}
}

// TestRunsFromParents: in an incremental image, pages a parent holds make
// runs of their own with that parent's Source, never joined with the
// image's own pages even where the offsets would follow.
func TestRunsFromParents(t *testing.T) {
	const self = 2
	a := &copiedArea{}
	for pg := uint32(0); pg < 8; pg++ {
		img := uint32(self)
		if pg >= 3 && pg < 6 {
			img = 0 // the oldest parent
		}
		a.pages = append(a.pages, copiedPage{page: pg, off: image.DataStart + uint64(pg)*image.PageSize, img: img})
	}
	runs := a.runs(self, nil)
	want := [][3]uint64{{0, 3, 0}, {3, 3, 1}, {6, 2, 0}} // page, pages, Source
	if len(runs) != len(want) {
		t.Fatalf("got %d runs %+v, want %v", len(runs), runs, want)
	}
	for k, run := range runs {
		if run.Page != want[k][0] || run.Pages != want[k][1] || uint64(run.Source) != want[k][2] {
			t.Errorf("run %d: page %d+%d source %d, want %v", k, run.Page, run.Pages, run.Source, want[k])
		}
	}
}

// TestRunsCuts: in a compressed image no run of the image's own crosses
// the start of a segment, even where pages and offsets follow each other.
func TestRunsCuts(t *testing.T) {
	a := &copiedArea{}
	for pg := uint32(0); pg < 10; pg++ {
		a.pages = append(a.pages, copiedPage{page: pg, off: image.DataStart + uint64(pg)*image.PageSize})
	}
	runs := a.runs(0, []uint64{image.DataStart, image.DataStart + 4*image.PageSize})
	if len(runs) != 2 || runs[0].Pages != 4 || runs[1].Page != 4 || runs[1].Pages != 6 {
		t.Fatalf("got runs %+v, want pages 0+4 and 4+6", runs)
	}
}

// TestPrecopyTook copies an area of this process, then stores what a pause
// would have found: one page written again, two dropped (MADV_DONTNEED),
// one written again with the bytes a parent holds.  The runs must hold the
// newest bytes of every page, nothing for the dropped ones, and the page a
// parent holds must come from it.
func TestPrecopyTook(t *testing.T) {
	const n = 8
	const P = image.PageSize
	mem, err := unix.Mmap(-1, 0, n*P, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	for i := range mem {
		mem[i] = byte(i/P + 1)
	}
	start := uint64(uintptr(unsafe.Pointer(&mem[0])))
	area := procfs.Mapping{Start: start, End: start + n*P, Read: true, Write: true}
	// A parent that holds page 5 with bytes 0x55.
	parentPage := bytes.Repeat([]byte{0x55}, P)
	prev := &Tracker{Images: []image.Parent{{}}, pages: []trackedPage{
		{addr: start + 5*P, hash: pageHash(parentPage), off: 1 << 20, crc: image.Checksum(parentPage)}}}
	p, err := StartPrecopy(filepath.Join(t.TempDir(), "x.ckpt"), []procfs.Mapping{area}, PrecopyOptions{Prev: prev})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Abort()
	if err := p.Copy([]span.Span{{Start: area.Start, End: area.End}}); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(mem)
	again := bytes.Repeat([]byte{0xaa}, P)
	copy(want[1*P:], again)
	clear(want[2*P : 4*P])
	copy(want[5*P:], parentPage)
	copies := append(slices.Clone(again), parentPage...)
	err = p.Took(0, []span.Span{{Start: start + P, End: start + 2*P}, {Start: start + 5*P, End: start + 6*P}},
		[]span.Span{{Start: start + 2*P, End: start + 4*P}}, copies)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	got := takenMemory(t, p, n, func(r image.Run) []byte {
		if r.Page != 5 || r.Pages != 1 || r.Source != 1 || r.FileOff != 1<<20 {
			t.Errorf("run from a parent %+v, want page 5 at 1 MiB of parent 1", r)
		}
		return parentPage
	})
	for i := 0; i < n; i++ {
		if !bytes.Equal(got[i*P:(i+1)*P], want[i*P:(i+1)*P]) {
			t.Errorf("page %d: got %#x..., want %#x...", i, got[i*P], want[i*P])
		}
	}
}

// TestPrecopyCopyChunks copies an area of many chunks holding data, zeros
// and pages never touched, then again after some pages changed, some were
// dropped and some were touched for the first time, by one copier and by
// four side by side (copier.go).  The runs must hold exactly the memory's
// non-zero pages.
func TestPrecopyCopyChunks(t *testing.T) {
	for _, copiers := range []int{1, maxCopiers} {
		t.Run(fmt.Sprint(copiers), func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(copiers))
			testCopyChunks(t, copiers)
		})
	}
}

func testCopyChunks(t *testing.T, copiers int) {
	const P = image.PageSize
	const n = maxCopiers*minCopierChunks*chunkPages + 3
	mem, err := unix.Mmap(-1, 0, n*P, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	for i := 0; i < n; i++ {
		switch i % 3 {
		case 0:
			mem[i*P+i%P] = byte(i) | 1
		case 1:
			mem[i*P] = 1 // present, but zeros
			mem[i*P] = 0
		}
	}
	start := uint64(uintptr(unsafe.Pointer(&mem[0])))
	area := procfs.Mapping{Start: start, End: start + n*P, Read: true, Write: true}
	p, err := StartPrecopy(filepath.Join(t.TempDir(), "x.ckpt"), []procfs.Mapping{area}, PrecopyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Abort()
	if got := p.copierCount(n / chunkPages); got != copiers {
		t.Fatalf("%d copiers, want %d", got, copiers)
	}
	if err := p.Copy([]span.Span{{Start: area.Start, End: area.End}}); err != nil {
		t.Fatal(err)
	}
	// Changed, dropped, touched for the first time: copied again.  Pages
	// 90-119 hold data every third page, stored one after the other: they
	// are written over their first copies in one write.
	var again []span.Span
	changed := []int{3, chunkPages, chunkPages + 2, 3*chunkPages + 1, n - 1}
	for i := 90; i < 120; i++ {
		changed = append(changed, i)
	}
	for i := 5 * chunkPages; i < n-1; i += 97 {
		changed = append(changed, i)
	}
	for _, i := range changed {
		mem[i*P+7] ^= 0x5a
		again = span.Insert(again, span.Span{Start: start + uint64(i)*P, End: start + uint64(i+1)*P})
	}
	drop := mem[2*chunkPages*P : (2*chunkPages+6)*P]
	if err := unix.Madvise(drop, unix.MADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	again = span.Insert(again, span.Span{Start: start + 2*chunkPages*P, End: start + (2*chunkPages+6)*P})
	if err := p.Copy(again); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Took(0, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	got := takenMemory(t, p, n, func(r image.Run) []byte {
		t.Errorf("run from a parent %+v in a full image", r)
		return nil
	})
	for i := 0; i < n; i++ {
		if !bytes.Equal(got[i*P:(i+1)*P], mem[i*P:(i+1)*P]) {
			t.Errorf("page %d: the runs do not hold what memory does", i)
		}
	}
}

// takenMemory returns the n pages of the one area p took as its runs hold
// them, each run's CRC checked; parent gives the bytes of a run a parent
// holds.
func takenMemory(t *testing.T, p *Precopy, n int, parent func(image.Run) []byte) []byte {
	t.Helper()
	const P = image.PageSize
	taken, err := p.taken()
	if err != nil || len(taken) != 1 {
		t.Fatalf("taken: %v, %d areas", err, len(taken))
	}
	f, err := os.Open(p.tmp)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, n*P)
	for _, r := range taken[0].Runs {
		if r.Source != 0 {
			copy(got[r.Page*P:], parent(r))
			continue
		}
		b := make([]byte, r.DataLen())
		if _, err := f.ReadAt(b, int64(r.FileOff)); err != nil {
			t.Fatal(err)
		}
		if image.Checksum(b) != r.CRC {
			t.Errorf("run %+v: CRC does not match its data", r)
		}
		copy(got[r.Page*P:], b)
	}
	return got
}
