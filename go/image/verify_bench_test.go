package image

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkVerifyData checks the data of a 256 MiB image in a file (in the
// page cache, as restart finds an image it just wrote), in runs of one page
// (what a half-zero heap gives) and of 64 pages, beside one read of the
// same file: restart's verify/read ratio without a process.  The data is
// random, far larger than the caches.
//
//	go test -run '^$' -bench VerifyData ./go/image
func BenchmarkVerifyData(b *testing.B) {
	const size = 256 << 20
	path := filepath.Join(b.TempDir(), "image")
	for _, pages := range []int{1, 64} {
		im := writeRandomImage(b, path, size, pages)
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("read-%d", pages), func(b *testing.B) {
			b.SetBytes(size)
			buf := make([]byte, 4<<20)
			for range b.N {
				for off := int64(0); off < size; off += int64(len(buf)) {
					if _, err := f.ReadAt(buf, DataStart+off); err != nil && err != io.EOF {
						b.Fatal(err)
					}
				}
			}
		})
		b.Run(fmt.Sprintf("runs-of-%d", pages), func(b *testing.B) {
			b.SetBytes(size)
			for range b.N {
				if err := VerifyData(f, im, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
		f.Close()
	}
}

// writeRandomImage writes an image of size bytes of random data at path in
// runs of the given number of pages, a page apart in memory, and returns
// it as Read decodes it.
func writeRandomImage(b *testing.B, path string, size, pages int) *Image {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	runLen := pages * PageSize
	n := size / runLen
	im := &Image{
		Process: Process{Arch: EMX8664, PageSize: PageSize, PID: 42, Signal: 12},
		Threads: []Thread{{TID: 42}},
		Areas:   []Area{{Start: 1 << 32, End: Addr(1<<32 + 2*size), Prot: ProtRead | ProtWrite}},
	}
	w := NewWriter(f)
	rng := rand.New(rand.NewPCG(3, 4))
	chunk := make([]byte, 4<<20)
	runs := make([]Run, 0, n)
	for len(runs) < n {
		for i := 0; i < len(chunk); i += 8 {
			v := rng.Uint64()
			for k := range 8 {
				chunk[i+k] = byte(v >> (8 * k))
			}
		}
		off, err := w.Append(chunk)
		if err != nil {
			b.Fatal(err)
		}
		for p := 0; p < len(chunk); p += runLen {
			page := uint64(len(runs) * (pages + 1))
			runs = append(runs, Run{Page: page, Pages: uint64(pages), FileOff: off + uint64(p), CRC: Checksum(chunk[p : p+runLen])})
		}
	}
	im.Areas[0].Runs = runs
	if _, err := w.Finish(im); err != nil {
		b.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		b.Fatal(err)
	}
	got, _, err := Read(f, st.Size())
	if err != nil {
		b.Fatal(err)
	}
	return got
}
