package restart

import (
	"encoding/binary"
	"testing"

	"github.com/ckpt/ckpt/go/image"
)

func TestChoosePlan(t *testing.T) {
	const stubStart, stubEnd = 0x10000000000, 0x10000022000
	for _, test := range []struct {
		desc     string
		areas    []image.Area
		relocate bool
	}{
		{"no collision", []image.Area{{Start: 0x400000, End: 0x500000}, {Start: 0x7ffd0000, End: 0x7fff0000}}, false},
		{"image at the stub", []image.Area{{Start: 0x10000000000, End: 0x10000100000}}, true},
		{"image under the first windows", []image.Area{{Start: 0x100000000, End: 0x1000000000}}, false},
	} {
		t.Run(test.desc, func(t *testing.T) {
			p, err := choosePlan(test.areas, stubStart, stubEnd, 10000, 3)
			if err != nil {
				t.Fatal(err)
			}
			if (p.relocAddr != 0) != test.relocate {
				t.Errorf("relocAddr = %#x, wanted relocation %v", p.relocAddr, test.relocate)
			}
			ranges := [][2]uint64{{p.argsAddr, p.argsAddr + p.argsLen}, {p.parkAddr, p.parkAddr + p.parkLen},
				{p.stacksAddr, p.stacksAddr + p.stacksLen}, {p.scratchAddr, p.scratchAddr + p.scratchLen}}
			if p.relocAddr != 0 {
				ranges = append(ranges, [2]uint64{p.relocAddr, p.relocAddr + stubEnd - stubStart})
			} else {
				ranges = append(ranges, [2]uint64{stubStart, stubEnd})
			}
			for i, r := range ranges {
				for _, a := range test.areas {
					if overlaps(r[0], r[1], uint64(a.Start), uint64(a.End)) {
						t.Errorf("range %d %#x-%#x overlaps area %#x-%#x", i, r[0], r[1], a.Start, a.End)
					}
				}
				for j, o := range ranges[:i] {
					if overlaps(r[0], r[1], o[0], o[1]) {
						t.Errorf("range %d overlaps range %d", i, j)
					}
				}
			}
		})
	}
}

func TestEncodeArgsSize(t *testing.T) {
	im := &image.Image{
		Threads: []image.Thread{{}, {}},
		Areas: []image.Area{{Start: 0x1000, End: 0x3000, Runs: []image.Run{{Page: 0, Pages: 1}, {Page: 1, Pages: 1}}},
			{Start: 0x5000, End: 0x6000}},
	}
	b := encodeArgs(im, &plan{}, 3, nil, nil, true)
	if want := argsSize + 2*areaSize + 2*runSize + 2*threadSize; len(b) != want || uint64(len(b)) != argsBlobSize(im, false) {
		t.Errorf("encodeArgs: %d bytes, wanted %d (argsBlobSize %d)", len(b), want, argsBlobSize(im, false))
	}
	// With the loader serving private memory, its runs stay behind and
	// the area says so.
	b = encodeArgs(im, &plan{loaderOnly: true}, 3, nil, nil, true)
	if want := argsSize + 2*areaSize + 2*threadSize; len(b) != want || uint64(len(b)) != argsBlobSize(im, true) {
		t.Errorf("encodeArgs, loader only: %d bytes, wanted %d (argsBlobSize %d)", len(b), want, argsBlobSize(im, true))
	}
	area := b[argsSize:]
	if flags := binary.LittleEndian.Uint32(area[24:]); flags != areaLoader {
		t.Errorf("loader only: the area with runs has flags %#x, want %#x", flags, areaLoader)
	}
	if nruns := binary.LittleEndian.Uint64(area[40:]); nruns != 0 {
		t.Errorf("loader only: the area passes %d runs", nruns)
	}
	if flags := binary.LittleEndian.Uint32(area[areaSize+24:]); flags != 0 {
		t.Errorf("loader only: the area without runs has flags %#x", flags)
	}
}

func TestStubRange(t *testing.T) {
	start, end, err := stubRange()
	if err != nil {
		t.Fatal(err)
	}
	if start != 0x10000000000 || end <= start || end-start > 1<<20 {
		t.Errorf("stub range %#x-%#x, wanted a small range at 0x10000000000", start, end)
	}
}
