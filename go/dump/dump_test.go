package dump

import (
	"bytes"
	"encoding/binary"
	"sync"
	"testing"
	"unsafe"

	"github.com/ckpt/ckpt/go/image"
	"golang.org/x/sys/unix"
)

// memFile is an io.WriterAt in memory.
type memFile struct{ b []byte }

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	if end := int(off) + len(p); end > len(m.b) {
		m.b = append(m.b, make([]byte, end-len(m.b))...)
	}
	return copy(m.b[off:], p), nil
}

func TestAppendRuns(t *testing.T) {
	const P = image.PageSize
	// Pages: data, zero, data, data, zero, data.
	layout := []bool{true, false, true, true, false, true}
	orig := make([]byte, len(layout)*P)
	for i, data := range layout {
		if data {
			for k := 0; k < P; k++ {
				orig[i*P+k] = byte(i + 1 + k%7)
			}
		}
	}
	buf := append([]byte(nil), orig...)
	f := &memFile{}
	w := image.NewWriter(f)
	// An earlier run, so that offsets do not start at the data start.
	if _, err := w.WritePages(make([]byte, P)); err != nil {
		t.Fatal(err)
	}
	runs, err := appendRuns(w, []image.Run{{Page: 99}}, buf, 10, make([]byte, P), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []image.Run{{Page: 99}, {Page: 10, Pages: 1}, {Page: 12, Pages: 2}, {Page: 15, Pages: 1}}
	if len(runs) != len(want) {
		t.Fatalf("got %d runs %+v, wanted %d", len(runs), runs, len(want))
	}
	next := uint64(image.DataStart + P)
	for i, r := range runs[1:] {
		if r.Page != want[i+1].Page || r.Pages != want[i+1].Pages {
			t.Errorf("run %d: pages %d+%d, wanted %d+%d", i, r.Page, r.Pages, want[i+1].Page, want[i+1].Pages)
		}
		if r.FileOff != next {
			t.Errorf("run %d: file offset %#x, wanted %#x", i, r.FileOff, next)
		}
		next += r.DataLen()
		src := orig[(r.Page-10)*P : (r.Page-10+r.Pages)*P]
		got := f.b[r.FileOff : r.FileOff+r.DataLen()]
		if !bytes.Equal(got, src) {
			t.Errorf("run %d: the file holds other bytes than the pages", i)
		}
		if r.CRC != image.Checksum(src) {
			t.Errorf("run %d: CRC %#x, wanted %#x", i, r.CRC, image.Checksum(src))
		}
	}
}

// The compressing writer: chunks compressed on several goroutines come out
// in order as segments that a reader unpacks to the same pages.
func TestCompressedChunks(t *testing.T) {
	const P = image.PageSize
	fd, err := unix.Open(t.TempDir(), unix.O_RDWR|unix.O_TMPFILE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	out := newAsyncFile(fd, chunkPages*P, 3, false)
	w := image.NewSegmentWriter(out, segmentWriter{out}, image.DataStart)
	area := image.Area{Start: 0x10000000, End: 0x10000000 + 40*chunkPages*P, Prot: image.ProtRead}
	var want []byte // the area's pages as written
	x := uint64(1)
	for c := 0; c < 40; c++ {
		buf := out.get()
		for i := 0; i < len(buf); i += 8 {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			v := x
			switch c % 3 {
			case 1: // compresses: small numbers
				v &= 0x0f0f
			case 2: // half the pages zero
				if (i/P)%2 == 1 {
					v = 0
				}
			}
			binary.LittleEndian.PutUint64(buf[i:], v)
		}
		want = append(want, buf...)
		if area.Runs, err = appendRuns(w, area.Runs, buf, uint64(c*chunkPages), make([]byte, P), nil, 0); err != nil {
			t.Fatal(err)
		}
		out.put(buf)
	}
	im := &image.Image{
		Process: image.Process{Arch: image.EMX8664, PageSize: P, PID: 7, Signal: 12},
		Threads: []image.Thread{{TID: 7}},
		Areas:   []image.Area{area},
	}
	if im.Segments, err = out.segments(); err != nil {
		t.Fatal(err)
	}
	size, err := w.Finish(im)
	if err == nil {
		err = out.close()
	}
	if err != nil {
		t.Fatal(err)
	}
	r := rawReader(fd)
	got, _, err := image.Read(r, int64(size))
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	codecs := map[image.Codec]int{}
	for _, s := range got.Segments {
		codecs[s.Codec]++
	}
	if codecs[image.CodecZstd] == 0 || codecs[image.CodecNone] == 0 {
		t.Errorf("segments by codec %v: wanted both", codecs)
	}
	mem := &memFile{}
	if err := image.Unpack(r, got, syncWriter{mem}, nil); err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	page := make([]byte, len(want))
	for _, run := range got.Areas[0].Runs {
		copy(page[run.Page*P:], mem.b[run.FileOff:run.FileOff+run.DataLen()])
	}
	if !bytes.Equal(page, want) {
		t.Errorf("unpacked pages differ from those written")
	}
}

// syncWriter serializes Unpack's writes from several goroutines.
type syncWriter struct{ m *memFile }

var syncMu sync.Mutex

func (s syncWriter) WriteAt(p []byte, off int64) (int, error) {
	syncMu.Lock()
	defer syncMu.Unlock()
	return s.m.WriteAt(p, off)
}

// TestNextPages finds the two pages touched in a large area, and nothing
// after them.
func TestNextPages(t *testing.T) {
	const size = 64 << 20
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	mem[10<<20] = 1
	mem[40<<20+5] = 2
	pm, err := unix.Open("/proc/self/pagemap", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pm)
	s := &source{pagemap: pm}
	start := uint64(uintptr(unsafe.Pointer(&mem[0])))
	if _, _, ok := s.nextPages(start, start+size); !ok {
		t.Skip("no PAGEMAP_SCAN on this kernel")
	}
	from := start
	for _, want := range []uint64{10 << 20, 40 << 20} {
		r, found, ok := s.nextPages(from, start+size)
		// A huge page (transparent huge pages "always") holds more.
		if !ok || !found || r.Start > start+want || r.End <= start+want || r.End-r.Start > 2<<20 {
			t.Fatalf("nextPages from +%#x: %#x-%#x found %v ok %v, want the page at +%#x", from-start, r.Start-start, r.End-start, found, ok, want)
		}
		from = r.End
	}
	if r, found, ok := s.nextPages(from, start+size); !ok || found {
		t.Errorf("nextPages after the last page: %#x-%#x found %v ok %v, want nothing", r.Start-start, r.End-start, found, ok)
	}
}
