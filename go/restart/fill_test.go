package restart

import (
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/ckpt/ckpt/go/image"
	"golang.org/x/sys/unix"
)

// fillCase is an image of two areas of this process's own memory (dst):
// one of a page every other page, the first half in runs with masks, the
// rest in 150 one-page runs, then a vDSO area (never
// filled), then one with a run longer than fillChunk and a short one; its
// data file; and what dst must hold once filled.
func fillCase(t *testing.T) (im *image.Image, data int, dst, want []byte) {
	t.Helper()
	const pages = 1200
	dst, err := unix.Mmap(-1, 0, pages*image.PageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(dst) })
	base := uint64(uintptr(unsafe.Pointer(&dst[0])))
	want = make([]byte, len(dst))
	var file []byte
	rng := rand.New(rand.NewSource(1))
	add := func(a *image.Area, page, n uint64) {
		b := want[uint64(a.Start)-base+page*image.PageSize:][:n*image.PageSize]
		rng.Read(b)
		a.Runs = append(a.Runs, image.Run{Page: page, Pages: n, FileOff: uint64(len(file)), CRC: image.Checksum(b)})
		file = append(file, b...)
	}
	small := image.Area{Start: image.Addr(base), End: image.Addr(base + 600*image.PageSize)}
	for p := uint64(0); p < 600; p += 2 {
		add(&small, p, 1)
	}
	long := image.Area{Start: image.Addr(base + 600*image.PageSize), End: image.Addr(base + pages*image.PageSize)}
	add(&long, 10, fillChunk/image.PageSize*2+3)
	add(&long, 550, 5)
	vdso := image.Area{Start: 0x1000, End: 0x3000, Kind: image.KindVDSO,
		Runs: []image.Run{{Page: 0, Pages: 1, FileOff: 0, CRC: 0}}}
	masked := &image.Image{Areas: []image.Area{{Runs: small.Runs[:150]}}}
	masked.PackRuns()
	small.Runs = slices.Concat(masked.Areas[0].Runs, small.Runs[150:])
	if small.Runs[0].Mask == 0 || len(small.Runs) != 5+150 {
		t.Fatalf("packed into %d runs, the first %+v", len(small.Runs), small.Runs[0])
	}
	im = &image.Image{Areas: []image.Area{small, vdso, long}}
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	if data, err = unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(data) })
	return im, data, dst, want
}

// TestFillNext: the filler hands out every run of the filled areas once,
// in order, whole, at most fillChunk bytes and fillRuns runs at a time but
// for a longer run alone.
func TestFillNext(t *testing.T) {
	im, _, _, _ := fillCase(t)
	f := &filler{im: im}
	var got []fillSeg
	for {
		segs := f.next(make([]fillSeg, 0, fillRuns))
		if len(segs) == 0 {
			break
		}
		n := uint64(0)
		for _, s := range segs {
			n += s.len
		}
		if len(segs) > 1 && n > fillChunk {
			t.Errorf("%d runs of %d bytes handed out at once", len(segs), n)
		}
		got = append(got, segs...)
	}
	var want []fillSeg
	for i, a := range im.Areas {
		if a.Kind == image.KindVDSO {
			continue
		}
		for _, r := range a.Runs {
			want = append(want, fillSeg{addr: uint64(a.Start) + r.Page*image.PageSize, off: r.FileOff,
				len: r.DataLen(), mask: r.Mask, crc: r.CRC, area: i})
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d runs handed out, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("run %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestFill fills this process's own memory from an image file, checking
// every run; then, with a byte of the long run damaged, it must fail naming
// the run.
func TestFill(t *testing.T) {
	im, data, dst, want := fillCase(t)
	f := &filler{im: im, data: data, verify: true}
	if err := f.fill(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if string(dst) != string(want) {
		t.Fatal("the memory filled differs from the image's")
	}
	if f.filled != im.Areas[0].StoredBytes()+im.Areas[2].StoredBytes() {
		t.Errorf("filled %d bytes", f.filled)
	}

	r := im.Areas[2].Runs[0]
	if _, err := unix.Pwrite(data, []byte{0x5a}, int64(r.FileOff+r.DataLen()-1)); err != nil {
		t.Fatal(err)
	}
	f = &filler{im: im, data: data, verify: true}
	err := f.fill(os.Getpid())
	if !errors.Is(err, image.ErrChecksum) || !strings.Contains(err.Error(), "file offset") {
		t.Fatalf("fill of a damaged image: %v", err)
	}
}
