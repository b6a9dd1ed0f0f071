package image

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

// memFile is an in-memory io.WriterAt and io.ReaderAt; writes may come
// from several goroutines (Unpack).
type memFile struct {
	mu sync.Mutex
	b  []byte
}

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if end := int(off) + len(p); end > len(m.b) {
		m.b = append(m.b, make([]byte, end-len(m.b))...)
	}
	copy(m.b[off:], p)
	return len(p), nil
}

func (m *memFile) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(m.b).ReadAt(p, off)
}

// segFile stores each Append as one segment, zstd-compressed where that
// makes it smaller, as go/dump does with --compress.
type segFile struct {
	f    *memFile
	segs []Segment
	next uint64
}

func (z *segFile) WriteAt(p []byte, off int64) (int, error) {
	stored, codec := p, CodecNone
	if c, ok := Compress(nil, p); ok {
		stored, codec = c, CodecZstd
	}
	z.f.WriteAt(stored, int64(z.next))
	z.segs = append(z.segs, Segment{Off: uint64(off), RawLen: uint64(len(p)), FileOff: z.next,
		StoredLen: uint64(len(stored)), Codec: codec, CRC: Checksum(stored)})
	z.next += uint64(len(stored))
	return len(p), nil
}

// sample writes a small but complete image: three areas, one of them with
// two runs, one a vDSO.
func sample(t testing.TB) (*Image, []byte) { return sampleStored(t, false) }

// sampleStored writes the sample image, its data compressed or not; one
// of its pages does not compress.
func sampleStored(t testing.TB, compress bool) (*Image, []byte) {
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
			{Start: 0x7ffff7000000, End: 0x7ffff7008000, Prot: ProtRead | ProtWrite, Name: "sparse"},
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
	z := &segFile{f: f, next: DataStart}
	if compress {
		w = NewSegmentWriter(f, z, DataStart)
	}
	page := func(c byte, n int) []byte { return bytes.Repeat([]byte{c}, n*PageSize) }
	noise := make([]byte, PageSize) // xorshift: does not compress
	for i, x := 0, uint32(2463534242); i < len(noise); i++ {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		noise[i] = byte(x)
	}
	for _, x := range []struct {
		area, page int
		data       []byte
	}{{0, 0, page(1, 2)}, {0, 3, noise}, {1, 0, page(3, 1)}} {
		r, err := w.WritePages(x.data)
		if err != nil {
			t.Fatal(err)
		}
		r.Page = uint64(x.page)
		im.Areas[x.area].Runs = append(im.Areas[x.area].Runs, r)
	}
	// Pages 0, 2, 3 and 7 of the last area, back to back: a run with a
	// mask (format 5).
	r, err := w.WritePages(append(page(5, 1), append(noise, page(6, 2)...)...))
	if err != nil {
		t.Fatal(err)
	}
	r.Pages, r.Mask = 8, 0b10001101
	im.Areas[3].Runs = []Run{r}
	if r, err = w.WritePages(page(4, 1)); err != nil {
		t.Fatal(err)
	}
	r.Page = 1
	im.Files[1].Runs = []Run{r}
	im.Segments = z.segs
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
		{"data shared, out of order", func(im *Image) { im.Areas[1].Runs[0].FileOff = DataStart + PageSize }},
		{"data unaligned", func(im *Image) { im.Areas[1].Runs[0].FileOff += 512 }},
		{"data before the data", func(im *Image) { im.Areas[0].Runs[0].FileOff = 0 }},
		{"data in the metadata", func(im *Image) { im.Files[1].Runs[0].FileOff += 2 * PageSize }},
		{"vdso data", func(im *Image) { im.Areas[2].Runs = im.Areas[1].Runs }},
		{"mask too long", func(im *Image) { im.Areas[3].End += 64 * PageSize; im.Areas[3].Runs[0].Pages = 65 }},
		{"mask without first page", func(im *Image) { im.Areas[3].Runs[0].Mask = 0b10001100 }},
		{"mask past the run", func(im *Image) { im.Areas[3].Runs[0].Mask = 0b110001101 }},
		{"mask short of the run", func(im *Image) { im.Areas[3].Runs[0].Mask = 0b1101 }},
		{"masked data past the data", func(im *Image) { im.Areas[3].Runs[0].Mask = 0b11111111 }},
		{"bad kind", func(im *Image) { im.Areas[1].Kind = 99 }},
		{"bad prot", func(im *Image) { im.Areas[1].Prot = 8 }},
		{"files unsorted", func(im *Image) { im.Files[0].FD = 6 }},
		{"negative fd", func(im *Image) { im.Files[0].FD = -1 }},
		{"file data not deleted", func(im *Image) { im.Files[1].Deleted = false }},
		{"saved pipe", func(im *Image) { im.Files[2].Saved = true }},
		{"file run past size", func(im *Image) { im.Files[1].Runs[0].Page = 2 }},
		{"bad file kind", func(im *Image) { im.Files[2].Kind = 42 }},
		{"source without parent", func(im *Image) { im.Areas[0].Runs[1].Source = 1 }},
		{"parent elsewhere", func(im *Image) { im.Parents = []Parent{{ID: ImageID{1}, Name: "../x.ckpt"}} }},
		{"parent without id", func(im *Image) { im.Parents = []Parent{{Name: "x.ckpt"}} }},
		{"parent is itself", func(im *Image) { im.ID = ImageID{7}; im.Parents = []Parent{{ID: im.ID, Name: "x.ckpt"}} }},
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
	// threads=0, areas=4, then the first area's start (0x400000).
	idx := bytes.Index(meta, []byte{0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0x40, 0})
	if idx < 0 {
		t.Fatal("cannot find the thread count")
	}
	e.b = append(e.b, meta[:idx]...)
	e.u32(0xffffffff)
	if _, err := DecodeMeta(e.b); !errors.Is(err, ErrCorrupt) {
		t.Errorf("DecodeMeta with a huge count: got %v, wanted %v", err, ErrCorrupt)
	}
}

func TestCompressedRoundTrip(t *testing.T) {
	want, b := sampleStored(t, true)
	_, plain := sample(t)
	got, h, err := Read(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Errorf("decoded image differs:\ngot  %+v\nwant %+v", got, want)
	}
	codecs := map[Codec]int{}
	for _, s := range got.Segments {
		codecs[s.Codec]++
	}
	if codecs[CodecZstd] == 0 || codecs[CodecNone] == 0 {
		t.Errorf("segments by codec: %v; wanted both compressed and stored ones", codecs)
	}
	if len(b) >= len(plain) {
		t.Errorf("compressed image is %d bytes, the plain one %d", len(b), len(plain))
	}
	if err := VerifyData(bytes.NewReader(b), got, nil); err != nil {
		t.Errorf("VerifyData: %v", err)
	}
	// Unpacked, the data sits where the plain image stores it.
	out := &memFile{}
	if err := Unpack(bytes.NewReader(b), got, out, nil); err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	plainIm, ph, err := Read(bytes.NewReader(plain), int64(len(plain)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.b[DataStart:], plain[DataStart:ph.MetaOff]) {
		t.Errorf("unpacked data differs from the plain image's")
	}
	if fmt.Sprintf("%+v", plainIm.Areas) != fmt.Sprintf("%+v", got.Areas) {
		t.Errorf("runs differ between the plain and the compressed image")
	}
	if h.MetaOff >= ph.MetaOff {
		t.Errorf("compressed data ends at %#x, the plain image's at %#x", h.MetaOff, ph.MetaOff)
	}
}

func TestCompressedDamage(t *testing.T) {
	_, good := sampleStored(t, true)
	im, h, err := Read(bytes.NewReader(good), int64(len(good)))
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range im.Segments {
		for _, at := range []uint64{0, s.StoredLen / 2, s.StoredLen - 1} {
			b := append([]byte(nil), good...)
			b[s.FileOff+at] ^= 0x10
			if err := VerifyData(bytes.NewReader(b), im, nil); !errors.Is(err, ErrChecksum) {
				t.Errorf("segment %d (%s) damaged at byte %d: VerifyData got %v, wanted %v", i, s.Codec, at, err, ErrChecksum)
			}
		}
	}
	// A segment whose stored CRC matches damaged bytes still fails: the
	// runs' CRCs are of the data itself.
	for i, s := range im.Segments {
		if s.Codec != CodecNone {
			continue
		}
		b := append([]byte(nil), good...)
		b[s.FileOff+7] ^= 1
		bad := *im
		bad.Segments = append([]Segment(nil), im.Segments...)
		bad.Segments[i].CRC = Checksum(b[s.FileOff : s.FileOff+s.StoredLen])
		if err := VerifyData(bytes.NewReader(b), &bad, nil); !errors.Is(err, ErrChecksum) {
			t.Errorf("segment %d with a matching CRC over damaged data: got %v, wanted %v", i, err, ErrChecksum)
		}
	}
	for _, test := range []struct {
		desc   string
		change func(*Image)
	}{
		{"gap", func(im *Image) { im.Segments[1].Off += PageSize }},
		{"file gap", func(im *Image) { im.Segments[1].FileOff++ }},
		{"stored grows", func(im *Image) { im.Segments[0].StoredLen = im.Segments[0].RawLen + 1 }},
		{"raw stored short", func(im *Image) {
			for i := range im.Segments {
				if im.Segments[i].Codec == CodecNone {
					im.Segments[i].StoredLen--
				}
			}
		}},
		{"unknown codec", func(im *Image) { im.Segments[0].Codec = 9 }},
		{"huge", func(im *Image) { im.Segments[0].RawLen = MaxSegmentLen + PageSize }},
		{"one segment short", func(im *Image) { im.Segments = im.Segments[:len(im.Segments)-1] }},
		{"run spans two", func(im *Image) {
			s := im.Segments
			s[1].Off -= PageSize
			s[1].RawLen += PageSize
			s[0].RawLen -= PageSize
		}},
	} {
		t.Run(test.desc, func(t *testing.T) {
			bad := *im
			bad.Segments = append([]Segment(nil), im.Segments...)
			test.change(&bad)
			if err := bad.Validate(h.MetaOff); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Validate: got %v, wanted %v", err, ErrCorrupt)
			}
		})
	}
}

// Images of formats 1 to 4 (no segments section, no IDs and sources, no
// masks) still read.
func TestReadsOlderVersions(t *testing.T) {
	for _, version := range []uint32{1, 2, 3, 4} {
		want, b := sample(t)
		want.Areas = want.Areas[:3] // a run with a mask needs format 5
		h, err := DecodeHeader(b)
		if err != nil {
			t.Fatal(err)
		}
		meta := encodeMeta(want, version)
		h.Version, h.MetaLen, h.MetaCRC = version, uint64(len(meta)), Checksum(meta)
		h.FileSize = h.MetaOff + h.MetaLen
		old := append(append(h.Encode(), b[HeaderSize:h.MetaOff]...), meta...)
		got, gh, err := Read(bytes.NewReader(old), int64(len(old)))
		if err != nil {
			t.Fatalf("Read of a format %d image: %v", version, err)
		}
		if gh.Version != version || fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
			t.Errorf("format %d image read as version %d:\ngot  %+v\nwant %+v", version, gh.Version, got, want)
		}
		if err := VerifyData(bytes.NewReader(old), got, nil); err != nil {
			t.Errorf("VerifyData: %v", err)
		}
		h.Version = FormatVersion + 1
		newer := append(h.Encode(), old[HeaderSize:]...)
		if _, _, err := Read(bytes.NewReader(newer), int64(len(newer))); !errors.Is(err, ErrVersion) {
			t.Errorf("Read of a newer format: got %v, wanted %v", err, ErrVersion)
		}
	}
}

// Read streams the metadata through a buffer; values that straddle two
// fills of it, and a long array of runs read a buffer at a time, decode as
// they would in one piece, and any damage is a checksum mismatch.
func TestReadStreams(t *testing.T) {
	want, b := sample(t)
	h, err := DecodeHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	defer func(n int) { streamBuffer = n }(streamBuffer)
	for _, n := range []int{1, 7, 37, 100, 4096} {
		streamBuffer = n
		got, _, err := Read(bytes.NewReader(b), int64(len(b)))
		if err != nil || fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
			t.Fatalf("buffer of %d bytes: got %v\n%+v, want\n%+v", n, err, got, want)
		}
	}
	streamBuffer = 100
	for at := h.MetaOff; at < h.FileSize; at++ {
		damaged := append([]byte(nil), b...)
		damaged[at] ^= 0x10
		if _, _, err := Read(bytes.NewReader(damaged), int64(len(damaged))); !errors.Is(err, ErrChecksum) {
			t.Fatalf("metadata damaged at byte %d: got %v, wanted %v", at-h.MetaOff, err, ErrChecksum)
		}
	}
	short := b[:len(b)-1]
	if _, _, err := Read(bytes.NewReader(short), int64(len(b))); err == nil {
		t.Errorf("Read of a file shorter than it said succeeded")
	}
}

// ReadOutline reads everything but the runs, and checks the metadata's CRC
// all the same.
func TestReadOutline(t *testing.T) {
	for _, compress := range []bool{false, true} {
		want, b := sampleStored(t, compress)
		got, h, err := ReadOutline(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatalf("compressed %v: %v", compress, err)
		}
		for i := range want.Areas {
			want.Areas[i].Runs = nil
		}
		for i := range want.Files {
			want.Files[i].Runs = nil
		}
		if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
			t.Errorf("compressed %v: got\n%+v, want\n%+v", compress, got, want)
		}
		damaged := append([]byte(nil), b...)
		damaged[h.MetaOff+h.MetaLen/2] ^= 1
		if _, _, err := ReadOutline(bytes.NewReader(damaged), int64(len(damaged))); !errors.Is(err, ErrChecksum) {
			t.Errorf("compressed %v, damaged metadata: got %v, wanted %v", compress, err, ErrChecksum)
		}
	}
}

// Gather copies the pages an incremental image takes from a parent, checks
// them, and refuses a damaged or short parent.
func TestGather(t *testing.T) {
	parent, pb := sample(t)
	ph, err := DecodeHeader(pb)
	if err != nil {
		t.Fatal(err)
	}
	child := func() *Image {
		c := *parent
		c.Areas = append([]Area(nil), parent.Areas...)
		for i := range c.Areas {
			c.Areas[i].Runs = append([]Run(nil), parent.Areas[i].Runs...)
			for j := range c.Areas[i].Runs {
				c.Areas[i].Runs[j].Source = 1
			}
		}
		c.Files = nil
		c.Parents = []Parent{{ID: ImageID{9}, Name: "parent.ckpt"}}
		return &c
	}
	c, out := child(), &memFile{}
	if err := c.Gather([]io.ReaderAt{bytes.NewReader(pb)}, []uint64{ph.MetaOff}, out, DataStart, nil); err != nil {
		t.Fatalf("Gather: %v", err)
	}
	if len(c.Parents) != 0 {
		t.Errorf("parents left after Gather: %v", c.Parents)
	}
	for i, a := range c.Areas {
		for j, r := range a.Runs {
			p := parent.Areas[i].Runs[j]
			if r.Source != 0 || !bytes.Equal(out.b[r.FileOff:r.FileOff+r.DataLen()], pb[p.FileOff:p.FileOff+p.DataLen()]) {
				t.Errorf("area %d run %d: not gathered from the parent", i, j)
			}
		}
	}
	damaged := append([]byte(nil), pb...)
	damaged[parent.Areas[0].Runs[0].FileOff+5] ^= 1
	err = child().Gather([]io.ReaderAt{bytes.NewReader(damaged)}, []uint64{ph.MetaOff}, nil, DataStart, nil)
	if !errors.Is(err, ErrChecksum) {
		t.Errorf("Gather from a damaged parent: got %v, wanted %v", err, ErrChecksum)
	}
	err = child().Gather([]io.ReaderAt{bytes.NewReader(pb)}, []uint64{DataStart + PageSize}, nil, DataStart, nil)
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("Gather beyond a parent's data: got %v, wanted %v", err, ErrCorrupt)
	}
}

// VerifyData reads runs that lie back to back in blocks; an image with
// some areas left out (what restart checks itself around lazy loading)
// has gaps between its runs, which must not be read as theirs.
func TestVerifyWithGaps(t *testing.T) {
	im, b := sample(t)
	gappy := *im
	gappy.Areas = []Area{im.Areas[1], im.Areas[2]} // no area 0: its runs come first
	if err := VerifyData(bytes.NewReader(b), &gappy, nil); err != nil {
		t.Errorf("VerifyData of an image with gaps: %v", err)
	}
	damaged := append([]byte(nil), b...)
	damaged[im.Areas[1].Runs[0].FileOff+9] ^= 4
	if err := VerifyData(bytes.NewReader(damaged), &gappy, nil); !errors.Is(err, ErrChecksum) {
		t.Errorf("VerifyData of a damaged image with gaps: got %v, wanted %v", err, ErrChecksum)
	}
}

// TestDataOutOfOrder: a writer may store an image's pages in any order and
// leave bytes no run refers to (format 4), as a checkpoint does that
// copies pages before the program stops and some of them again after.
func TestDataOutOfOrder(t *testing.T) {
	im := &Image{
		Process: Process{Arch: EMX8664, PageSize: PageSize, PID: 42, Signal: 12},
		Threads: []Thread{{TID: 42}},
		Areas:   []Area{{Start: 0x10000, End: 0x20000, Prot: ProtRead | ProtWrite}},
	}
	f := &memFile{}
	w := NewWriter(f)
	page := func(c byte) []byte { return bytes.Repeat([]byte{c}, PageSize) }
	// Pages 5 and 6, a stale copy of page 2 nothing refers to, then
	// pages 0 to 2 as they are now.
	late, err := w.WritePages(append(page(5), page(6)...))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WritePages(page(0xee)); err != nil {
		t.Fatal(err)
	}
	early, err := w.WritePages(bytes.Join([][]byte{page(0), page(1), page(2)}, nil))
	if err != nil {
		t.Fatal(err)
	}
	late.Page = 5
	im.Areas[0].Runs = []Run{early, late}
	got, _ := finish(t, w, im, f)
	stale := append([]byte(nil), f.b...)
	stale[late.FileOff+late.DataLen()+7] ^= 1 // the unused page: nobody reads it
	if err := VerifyData(bytes.NewReader(stale), got, nil); err != nil {
		t.Errorf("VerifyData with the unused page changed: %v", err)
	}
	damaged := append([]byte(nil), f.b...)
	damaged[early.FileOff+2*PageSize+7] ^= 1
	if err := VerifyData(bytes.NewReader(damaged), got, nil); !errors.Is(err, ErrChecksum) {
		t.Errorf("VerifyData of damaged data out of order: got %v, wanted %v", err, ErrChecksum)
	}
}

// TestVerifyNamesFirstDamage: two areas whose data interleave in the file;
// with a page of each damaged, VerifyData names the one first in the file,
// not the first area's.
func TestVerifyNamesFirstDamage(t *testing.T) {
	im := &Image{
		Process: Process{Arch: EMX8664, PageSize: PageSize, PID: 42, Signal: 12},
		Threads: []Thread{{TID: 42}},
		Areas: []Area{{Start: 0x10000, End: 0x20000, Prot: ProtRead | ProtWrite},
			{Start: 0x30000, End: 0x40000, Prot: ProtRead | ProtWrite}},
	}
	f := &memFile{}
	w := NewWriter(f)
	for i := range 8 { // pages 0-3 of each area, in turn
		r, err := w.WritePages(bytes.Repeat([]byte{byte(i + 1)}, PageSize))
		if err != nil {
			t.Fatal(err)
		}
		r.Page = uint64(i / 2)
		im.Areas[i%2].Runs = append(im.Areas[i%2].Runs, r)
	}
	got, _ := finish(t, w, im, f)
	first, later := im.Areas[1].Runs[1], im.Areas[0].Runs[3]
	damaged := append([]byte(nil), f.b...)
	damaged[first.FileOff+1] ^= 1
	damaged[later.FileOff+1] ^= 1
	err := VerifyData(bytes.NewReader(damaged), got, nil)
	if want := fmt.Sprintf("area 0x30000-0x40000 at file offset %#x", first.FileOff); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("VerifyData with two damaged pages: got %v, wanted the error to name %s", err, want)
	}
}

func TestChecksumAppendPage(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 7, PageSize, 3 * PageSize} {
		a := make([]byte, n)
		p := make([]byte, PageSize)
		for i := range a {
			a[i] = byte(r.Uint32())
		}
		for i := range p {
			p[i] = byte(r.Uint32())
		}
		want := ChecksumUpdate(Checksum(a), p)
		if got := ChecksumAppendPage(Checksum(a), Checksum(p)); got != want {
			t.Errorf("%d bytes then a page: got %#x, want %#x", n, got, want)
		}
	}
	// A zero page too: its CRC is not zero.
	z := make([]byte, PageSize)
	if got, want := ChecksumAppendPage(Checksum(z), Checksum(z)), Checksum(append(z, z...)); got != want {
		t.Errorf("two zero pages: got %#x, want %#x", got, want)
	}
}

// oneRunPerPage writes an image of one area with a one-page run for each
// i of order, in that order in the file: run i, page pageOf(i), holds
// bytes i+1.  It reads the image back and checks its data.
func oneRunPerPage(t *testing.T, order []int, pageOf func(int) uint64) (*Image, *Header) {
	t.Helper()
	im := &Image{
		Process: Process{Arch: EMX8664, PageSize: PageSize, PID: 42, Signal: 12},
		Threads: []Thread{{TID: 42}},
		Areas:   []Area{{Start: 0x100000, End: 0x200000, Prot: ProtRead | ProtWrite}},
	}
	f := &memFile{}
	w := NewWriter(f)
	runs := make([]Run, len(order))
	for _, i := range order {
		r, err := w.WritePages(bytes.Repeat([]byte{byte(i + 1)}, PageSize))
		if err != nil {
			t.Fatal(err)
		}
		r.Page = pageOf(i)
		runs[i] = r
	}
	im.Areas[0].Runs = runs
	return finish(t, w, im, f)
}

// TestDataReversed: one page per run, stored last page first: as many
// stretches in file order as runs (checkOverlap sorts them).
func TestDataReversed(t *testing.T) {
	order := make([]int, 100)
	for i := range order {
		order[i] = len(order) - 1 - i
	}
	im, h := oneRunPerPage(t, order, func(i int) uint64 { return uint64(i) })
	im.Areas[0].Runs[7].FileOff = im.Areas[0].Runs[3].FileOff
	if err := im.Validate(h.MetaOff); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Validate with two runs on the same page of data: got %v, wanted %v", err, ErrCorrupt)
	}
}

// TestDataInterleaved: two stretches of data in file order whose ranges
// interleave without sharing a page are accepted; made to share one, not.
func TestDataInterleaved(t *testing.T) {
	// Not adjacent pages: one run each.
	im, h := oneRunPerPage(t, []int{0, 2, 1, 3}, func(i int) uint64 { return uint64(i) * 2 })
	im.Areas[0].Runs[3].FileOff = im.Areas[0].Runs[1].FileOff
	if err := im.Validate(h.MetaOff); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Validate with two runs on the same page of data: got %v, wanted %v", err, ErrCorrupt)
	}
}

// TestMarkPages compares markPages with a bool for each page, for ranges
// that start and end anywhere in and across 64-page words.
func TestMarkPages(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		const pages = 300
		used, model := make([]uint64, pages/64+1), make([]bool, pages)
		for range 8 {
			first := rng.Uint64N(pages)
			n := 1 + rng.Uint64N(pages-first)
			want := false
			for p := first; p < first+n; p++ {
				want = want || model[p]
				model[p] = true
			}
			if got := markPages(used, first, n); got != want {
				t.Fatalf("round %d: markPages(%d, %d) = %v, wanted %v", round, first, n, got, want)
			}
		}
		for p, set := range model {
			if got := used[p/64]>>(p%64)&1 == 1; got != set {
				t.Fatalf("round %d: page %d marked %v, wanted %v", round, p, got, set)
			}
		}
	}
}

// TestSortStretches: runs in 1 to 70 stretches in file order come out
// sorted, each run once, merged or (past 64 stretches) sorted.
func TestSortStretches(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, k := range []int{1, 2, 3, 5, 64, 65, 70} {
		n := 1000
		offs := rng.Perm(n)
		// Cut into k stretches, each sorted.
		cuts := append([]int{0}, rng.Perm(n - 1)[:k-1]...)
		for i := range cuts[1:] {
			cuts[i+1]++
		}
		slices.Sort(cuts)
		cuts = append(cuts, n)
		for i := 0; i+1 < len(cuts); i++ {
			slices.Sort(offs[cuts[i]:cuts[i+1]])
		}
		runs := make([]namedRun, n)
		for i, o := range offs {
			runs[i] = namedRun{run: Run{FileOff: uint64(o) * PageSize, Pages: 1}, owner: int32(o)}
		}
		got := sortStretches(runs)
		if len(got) != n {
			t.Fatalf("%d stretches: %d runs, wanted %d", k, len(got), n)
		}
		for i, r := range got {
			if r.run.FileOff != uint64(i)*PageSize || r.owner != int32(i) {
				t.Fatalf("%d stretches: run %d is at %#x (owner %d)", k, i, r.run.FileOff, r.owner)
			}
		}
	}
}

// finish finishes the image im on w, which writes to f, reads it back and
// checks its data.
func finish(t *testing.T, w *Writer, im *Image, f *memFile) (*Image, *Header) {
	t.Helper()
	if _, err := w.Finish(im); err != nil {
		t.Fatal(err)
	}
	got, h, err := Read(bytes.NewReader(f.b), int64(len(f.b)))
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if err := VerifyData(bytes.NewReader(f.b), got, nil); err != nil {
		t.Fatalf("VerifyData: %v", err)
	}
	return got, h
}
