package image

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestStretches(t *testing.T) {
	for _, test := range []struct {
		r    Run
		want []Stretch
	}{
		{Run{Page: 5, Pages: 3, FileOff: 0x1000}, []Stretch{{5, 3, 0x1000}}},
		{Run{Page: 5, Pages: 4, FileOff: 0x1000, Mask: 0b1001}, []Stretch{{5, 1, 0x1000}, {8, 1, 0x2000}}},
		{Run{Page: 0, Pages: 7, FileOff: 0, Mask: 0b1110011}, []Stretch{{0, 2, 0}, {4, 3, 0x2000}}},
		{Run{Page: 1, Pages: 64, FileOff: 0, Mask: ^uint64(0)}, []Stretch{{1, 64, 0}}},
		{Run{Page: 0, Pages: 64, FileOff: 0, Mask: 1<<63 | 1}, []Stretch{{0, 1, 0}, {63, 1, PageSize}}},
	} {
		if got := slices.Collect(test.r.Stretches()); !slices.Equal(got, test.want) {
			t.Errorf("%+v: got %v, want %v", test.r, got, test.want)
		}
		if n := test.r.StretchCount(); n != uint64(len(test.want)) {
			t.Errorf("%+v: StretchCount %d", test.r, n)
		}
		if n := test.r.StoredPages(); n*PageSize != test.r.DataLen() {
			t.Errorf("%+v: %d pages stored but %d bytes", test.r, n, test.r.DataLen())
		}
		// The same stretches from the mask alone, counted from 0.
		if test.r.Mask != 0 {
			var got []Stretch
			for st := range MaskStretches(test.r.Mask, test.r.FileOff) {
				got = append(got, Stretch{st.Page + test.r.Page, st.Pages, st.FileOff})
			}
			if !slices.Equal(got, test.want) {
				t.Errorf("MaskStretches(%#b, %#x): got %v, want %v", test.r.Mask, test.r.FileOff, got, test.want)
			}
		}
	}
	if got := slices.Collect(MaskStretches(0, 0)); len(got) != 0 {
		t.Errorf("MaskStretches(0, 0) = %v", got)
	}
}

func TestChecksumAppend(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	a, b := make([]byte, 3*PageSize), make([]byte, 5*PageSize)
	for i := range a {
		a[i] = byte(r.Uint32())
	}
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	if got, want := ChecksumAppend(Checksum(a), Checksum(b), 5), Checksum(append(a, b...)); got != want {
		t.Errorf("3 pages then 5: got %#x, want %#x", got, want)
	}
	if got := ChecksumAppend(Checksum(a), Checksum(nil), 0); got != Checksum(a) {
		t.Errorf("nothing appended: got %#x, want %#x", got, Checksum(a))
	}
}

// packed writes an area of n pages whose page i holds stored(i) (nil: not
// stored), a run per stretch, each stretch one write or, with perSegment,
// one segment; packs the runs and reads the image back.
func packed(t *testing.T, n uint64, stored func(i uint64) []byte, perSegment bool) *Image {
	t.Helper()
	im := &Image{
		Process: Process{Arch: EMX8664, PageSize: PageSize, PID: 42, Signal: 12},
		Threads: []Thread{{TID: 42}},
		Areas:   []Area{{Start: 0x100000, End: 0x100000 + Addr(n*PageSize), Prot: ProtRead | ProtWrite}},
	}
	f := &memFile{}
	w := NewWriter(f)
	z := &segFile{f: f, next: DataStart}
	if perSegment {
		w = NewSegmentWriter(f, z, DataStart)
	}
	for i := uint64(0); i < n; {
		if stored(i) == nil {
			i++
			continue
		}
		var data []byte
		j := i
		for ; j < n && stored(j) != nil; j++ {
			data = append(data, stored(j)...)
		}
		r, err := w.WritePages(data)
		if err != nil {
			t.Fatal(err)
		}
		r.Page = i
		im.Areas[0].Runs = append(im.Areas[0].Runs, r)
		i = j
	}
	im.Segments = z.segs
	im.PackRuns()
	got, _ := finish(t, w, im, f)
	// Every page reads back as written, through the stretches.
	mem := make([]byte, n*PageSize)
	raw := f
	if perSegment {
		raw = &memFile{}
		if err := Unpack(bytes.NewReader(f.b), got, raw, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range got.Areas[0].Runs {
		for s := range r.Stretches() {
			copy(mem[s.Page*PageSize:], raw.b[s.FileOff:][:s.Pages*PageSize])
		}
	}
	for i := uint64(0); i < n; i++ {
		want := stored(i)
		if want == nil {
			want = make([]byte, PageSize)
		}
		if !bytes.Equal(mem[i*PageSize:][:PageSize], want) {
			t.Fatalf("page %d reads back wrong", i)
		}
	}
	return got
}

func pageOf(i uint64) []byte { return bytes.Repeat([]byte{byte(i*7 + 1)}, PageSize) }

// evenPages stores every other page, from page 0.
func evenPages(i uint64) []byte {
	if i%2 == 0 {
		return pageOf(i)
	}
	return nil
}

func TestPackEveryOtherPage(t *testing.T) {
	im := packed(t, 1000, evenPages, false)
	// 500 one-page runs become one run per 64 pages (63 spanned: the
	// last page of each is stored).
	rs := im.Areas[0].Runs
	if len(rs) != 16 {
		t.Errorf("%d runs, want 16", len(rs))
	}
	if rs[0].Pages != 63 || rs[0].Mask != 0x5555555555555555 || rs[0].StoredPages() != 32 {
		t.Errorf("first run %+v", rs[0])
	}
}

func TestPackMixed(t *testing.T) {
	// Long stretches stay runs of their own, without masks; short ones
	// around them join.
	r := rand.New(rand.NewPCG(5, 6))
	pattern := make([]bool, 3000)
	for i := range pattern {
		switch {
		case i >= 500 && i < 800: // one stretch of 300 pages
			pattern[i] = true
		case i >= 2000:
			pattern[i] = r.IntN(4) == 0
		default:
			pattern[i] = r.IntN(2) == 0
		}
	}
	im := packed(t, uint64(len(pattern)), func(i uint64) []byte {
		if pattern[i] {
			return pageOf(i)
		}
		return nil
	}, false)
	long := false
	for _, r := range im.Areas[0].Runs {
		if r.Pages >= 300 && r.Mask == 0 {
			long = true
		}
		if r.Mask != 0 && r.Pages > MaxMaskPages {
			t.Errorf("run %+v", r)
		}
	}
	if !long {
		t.Error("the stretch of 300 pages was merged")
	}
}

func TestPackKeepsSegmentsApart(t *testing.T) {
	im := packed(t, 100, evenPages, true)
	if n := len(im.Areas[0].Runs); n != 50 {
		t.Errorf("%d runs, want 50: one per segment", n)
	}
}

func TestPackKeepsSourcesApart(t *testing.T) {
	rs := []Run{
		{Page: 0, Pages: 1, FileOff: DataStart, CRC: 1},
		{Page: 2, Pages: 1, FileOff: DataStart + PageSize, CRC: 2, Source: 1},
		{Page: 4, Pages: 1, FileOff: DataStart + 2*PageSize, CRC: 3, Source: 1},
		{Page: 70, Pages: 1, FileOff: DataStart + 3*PageSize, CRC: 4, Source: 1},
	}
	got := packRuns(rs, nil)
	if len(got) != 3 || got[1].Mask != 0b101 || got[1].Source != 1 || got[2].Page != 70 {
		t.Errorf("got %+v", got)
	}
}
