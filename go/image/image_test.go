package image

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// memFile is an in-memory io.WriterAt and io.ReaderAt.
type memFile struct{ b []byte }

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	if end := int(off) + len(p); end > len(m.b) {
		m.b = append(m.b, make([]byte, end-len(m.b))...)
	}
	copy(m.b[off:], p)
	return len(p), nil
}

func (m *memFile) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(m.b).ReadAt(p, off)
}

// sample writes a small but complete image: three areas, one of them with
// two runs, one a vDSO.
func sample(t testing.TB) (*Image, []byte) {
	im := &Image{
		Process: Process{Arch: EMX8664, PageSize: PageSize, PID: 42, Signal: 12, Created: 1,
			Kernel: "6.18", Exe: "/bin/prog", Name: "prog", Brk: 0x602000,
			MM: MMLayout{StartCode: 0x400000, EndCode: 0x401000, StartBrk: 0x601000}, RestoreInfo: 0x7000},
		Threads: []Thread{{TID: 42, RSP: 0x7ffd0000, RIP: 0x401234, FSBase: 0x7f0000001000, Name: "prog"},
			{TID: 43, Flags: ThreadCoordinator, Name: "ckpt"}},
		Areas: []Area{
			{Start: 0x400000, End: 0x404000, Prot: ProtRead | ProtExec, Name: "/bin/prog", Inode: 7},
			{Start: 0x601000, End: 0x602000, Prot: ProtRead | ProtWrite, Kind: KindHeap, Name: "[heap]"},
			{Start: 0x7fff0000, End: 0x7fff2000, Prot: ProtRead | ProtExec, Kind: KindVDSO, Name: "[vdso]"},
		},
		Files: []File{
			{FD: 3, Flags: 0x401, Kind: FileRegular, Offset: 10, Size: 100, Path: "/tmp/log"},
			{FD: 5, Kind: FileRegular, Deleted: true, Size: 5000, Path: "/tmp/scratch"},
			{FD: 7, Kind: FilePipe, Offset: -29, Path: "pipe:[1234]"},
		},
	}
	im.Process.Rlimits[7] = Rlimit{Cur: 1024, Max: 4096}
	im.Process.Cwd = "/home/user"
	im.Process.Itimers[0] = Itimer{ValueSec: 3}
	im.Process.Timers = []PosixTimer{{ID: 3, Clock: 1, Signal: 10, ValueNsec: 5000, Value: 0xdead}}
	f := &memFile{}
	w := NewWriter(f)
	page := func(c byte, n int) []byte { return bytes.Repeat([]byte{c}, n*PageSize) }
	for _, x := range []struct {
		area, page int
		data       []byte
	}{{0, 0, page(1, 2)}, {0, 3, page(2, 1)}, {1, 0, page(3, 1)}} {
		r, err := w.WritePages(x.data)
		if err != nil {
			t.Fatal(err)
		}
		r.Page = uint64(x.page)
		im.Areas[x.area].Runs = append(im.Areas[x.area].Runs, r)
	}
	r, err := w.WritePages(page(4, 1))
	if err != nil {
		t.Fatal(err)
	}
	r.Page = 1
	im.Files[1].Runs = []Run{r}
	if _, err := w.Finish(im); err != nil {
		t.Fatal(err)
	}
	return im, f.b
}

func TestRoundTrip(t *testing.T) {
	want, b := sample(t)
	got, h, err := Read(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if h.FileSize != uint64(len(b)) {
		t.Errorf("FileSize: got %d, wanted %d", h.FileSize, len(b))
	}
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Errorf("decoded image differs:\ngot  %+v\nwant %+v", got, want)
	}
	if err := VerifyData(bytes.NewReader(b), got, nil); err != nil {
		t.Errorf("VerifyData: %v", err)
	}
	if got.Areas[0].PermString() != "r-xp" {
		t.Errorf("PermString: got %q", got.Areas[0].PermString())
	}
}

func TestRefusesDamage(t *testing.T) {
	_, good := sample(t)
	im, _, err := Read(bytes.NewReader(good), int64(len(good)))
	if err != nil {
		t.Fatal(err)
	}
	dataOff := im.Areas[0].Runs[0].FileOff
	for _, test := range []struct {
		desc   string
		damage func([]byte) []byte
		want   error
	}{
		{"empty", func(b []byte) []byte { return nil }, ErrBadMagic},
		{"text", func(b []byte) []byte { return []byte("hello, world\n") }, ErrBadMagic},
		{"magic", func(b []byte) []byte { b[1] ^= 1; return b }, ErrBadMagic},
		{"header bit", func(b []byte) []byte { b[20] ^= 4; return b }, ErrChecksum},
		{"short header", func(b []byte) []byte { return b[:30] }, ErrTruncated},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }, ErrTruncated},
		{"cut at data", func(b []byte) []byte { return b[:dataOff] }, ErrTruncated},
		{"grown", func(b []byte) []byte { return append(b, 0) }, ErrCorrupt},
		{"metadata bit", func(b []byte) []byte { b[len(b)-3] ^= 0x80; return b }, ErrChecksum},
	} {
		t.Run(test.desc, func(t *testing.T) {
			b := test.damage(append([]byte(nil), good...))
			_, _, err := Read(bytes.NewReader(b), int64(len(b)))
			if !errors.Is(err, test.want) {
				t.Errorf("Read: got %v, wanted %v", err, test.want)
			}
		})
	}
	t.Run("data bit", func(t *testing.T) {
		b := append([]byte(nil), good...)
		b[dataOff+100] ^= 1
		im, _, err := Read(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		if err := VerifyData(bytes.NewReader(b), im, nil); !errors.Is(err, ErrChecksum) {
			t.Errorf("VerifyData: got %v, wanted %v", err, ErrChecksum)
		}
	})
}

func TestValidate(t *testing.T) {
	for _, test := range []struct {
		desc   string
		change func(*Image)
	}{
		{"other arch", func(im *Image) { im.Process.Arch = 183 }},
		{"no threads", func(im *Image) { im.Threads = nil }},
		{"no leader", func(im *Image) { im.Threads[0].TID = 44 }},
		{"repeated tid", func(im *Image) { im.Threads[1].TID = 42 }},
		{"unaligned", func(im *Image) { im.Areas[0].Start++ }},
		{"empty area", func(im *Image) { im.Areas[1].End = im.Areas[1].Start }},
		{"kernel address", func(im *Image) { im.Areas[2].End = 0xffffffffff601000 }},
		{"overlap", func(im *Image) { im.Areas[1].Start = im.Areas[0].End - PageSize }},
		{"unsorted", func(im *Image) { im.Areas[0], im.Areas[1] = im.Areas[1], im.Areas[0] }},
		{"run past area", func(im *Image) { im.Areas[0].Runs[1].Page = 3 + 1 }},
		{"run overflow", func(im *Image) { im.Areas[0].Runs[1].Page = ^uint64(0) }},
		{"runs overlap", func(im *Image) { im.Areas[0].Runs[1].Page = 1 }},
		{"data moved", func(im *Image) { im.Areas[1].Runs[0].FileOff += PageSize }},
		{"vdso data", func(im *Image) { im.Areas[2].Runs = im.Areas[1].Runs }},
		{"bad kind", func(im *Image) { im.Areas[1].Kind = 99 }},
		{"bad prot", func(im *Image) { im.Areas[1].Prot = 8 }},
		{"files unsorted", func(im *Image) { im.Files[0].FD = 6 }},
		{"negative fd", func(im *Image) { im.Files[0].FD = -1 }},
		{"file data not deleted", func(im *Image) { im.Files[1].Deleted = false }},
		{"saved pipe", func(im *Image) { im.Files[2].Saved = true }},
		{"file run past size", func(im *Image) { im.Files[1].Runs[0].Page = 2 }},
		{"bad file kind", func(im *Image) { im.Files[2].Kind = 42 }},
	} {
		t.Run(test.desc, func(t *testing.T) {
			_, b := sample(t)
			im, h, err := Read(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatal(err)
			}
			test.change(im)
			if err := im.Validate(h.MetaOff); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Validate: got %v, wanted %v", err, ErrCorrupt)
			}
		})
	}
}

func TestDecodeMetaBounds(t *testing.T) {
	// A count far larger than the bytes that follow must not allocate.
	e := &encoder{}
	im, _ := sample(t)
	im.Threads = nil
	meta := EncodeMeta(im)
	// The thread count follows the fixed process part; find it by
	// encoding with zero threads and patching the count.
	// threads=0, areas=3, then the first area's start (0x400000).
	idx := bytes.Index(meta, []byte{0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0x40, 0})
	if idx < 0 {
		t.Fatal("cannot find the thread count")
	}
	e.b = append(e.b, meta[:idx]...)
	e.u32(0xffffffff)
	if _, err := DecodeMeta(e.b); !errors.Is(err, ErrCorrupt) {
		t.Errorf("DecodeMeta with a huge count: got %v, wanted %v", err, ErrCorrupt)
	}
}
