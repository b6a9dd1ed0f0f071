package dump

import (
	"bytes"
	"testing"

	"github.com/ckpt/ckpt/go/image"
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
	runs, err := appendRuns(w, []image.Run{{Page: 99}}, buf, 10, make([]byte, P))
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
		next += r.Len()
		src := orig[(r.Page-10)*P : (r.Page-10+r.Pages)*P]
		got := f.b[r.FileOff : r.FileOff+r.Len()]
		if !bytes.Equal(got, src) {
			t.Errorf("run %d: the file holds other bytes than the pages", i)
		}
		if r.CRC != image.Checksum(src) {
			t.Errorf("run %d: CRC %#x, wanted %#x", i, r.CRC, image.Checksum(src))
		}
	}
}
