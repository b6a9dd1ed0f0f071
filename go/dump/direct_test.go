package dump

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/ckpt/ckpt/go/image"
	"golang.org/x/sys/unix"
)

// Whole pages go direct, the rest through the cache, and the file holds
// every write where it was put, whichever way it went.
func TestDirectWrites(t *testing.T) {
	const P = image.PageSize
	path := filepath.Join(t.TempDir(), "image")
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		t.Fatal(err)
	}
	out := newAsyncFile(fd, chunkPages*P, 0, false)
	if st.Type == ext4Magic || st.Type == xfsMagic {
		if out.direct < 0 {
			t.Fatalf("no direct descriptor on file system %#x", st.Type)
		}
	} else if out.direct >= 0 {
		t.Fatalf("a direct descriptor on file system %#x", st.Type)
	}
	want := make([]byte, 12*P)
	put := func(n, off int, skew int, v byte) {
		buf := out.get()
		p := buf[skew : skew+n]
		for i := range p {
			p[i] = v + byte(i%251)
		}
		copy(want[off:], p)
		if _, err := out.WriteAt(p, int64(off)); err != nil {
			t.Fatal(err)
		}
		out.put(buf)
	}
	put(4*P, P, 0, 1)     // direct
	put(100, 0, 0, 2)     // not whole pages: cached
	put(2*P, 5*P, 8, 3)   // from memory not page-aligned: cached
	put(3*P, 8*P, 0, 4)   // direct, past the end
	put(P, 3*P+512, 0, 5) // at an offset not page-aligned: cached
	put(P, 11*P, 0, 6)    // direct
	if err := out.close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		for i := range want {
			if i >= len(got) || got[i] != want[i] {
				t.Fatalf("the file differs from byte %d on (%d bytes, want %d)", i, len(got), len(want))
			}
		}
	}
}

func TestDirectOK(t *testing.T) {
	const P = image.PageSize
	b := MapScratch(4 * P)
	if b == nil {
		t.Fatal("no scratch memory")
	}
	defer freeScratch(b)
	for _, c := range []struct {
		what string
		p    []byte
		off  int64
		want bool
	}{
		{"pages", b, 0, true},
		{"a page", b[:P], 8 * P, true},
		{"pages from the second", b[P : 3*P], P, true},
		{"a page but a byte", b[:P-1], 0, false},
		{"a page from byte 1", b[1 : P+1], 0, false},
		{"a page at 512", b[:P], 512, false},
		{"nothing", b[:0], 0, false},
	} {
		if got := directOK(c.p, c.off); got != c.want {
			t.Errorf("directOK(%s) = %v, want %v", c.what, got, c.want)
		}
	}
}
