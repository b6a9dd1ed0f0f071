package image

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/ckpt/ckpt/go/fresh"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum is the CRC32C used everywhere in the format.
func Checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// ChecksumUpdate returns the Checksum of the bytes crc is the Checksum of
// followed by b.
func ChecksumUpdate(crc uint32, b []byte) uint32 { return crc32.Update(crc, castagnoli, b) }

// Writer writes an image: page data first, in file order, then the
// metadata and finally the header.
type Writer struct {
	w    io.WriterAt
	data io.WriterAt // where Append's pages go, by their runs' offsets
	off  uint64      // next free data offset; always page aligned
}

// NewWriter starts an image on w, which must be empty.
func NewWriter(w io.WriterAt) *Writer { return &Writer{w: w, data: w, off: DataStart} }

// NewWriterAfter continues an image on w whose page data up to dataEnd
// (page aligned) was written before, by runs the caller describes.
func NewWriterAfter(w io.WriterAt, dataEnd uint64) *Writer {
	return &Writer{w: w, data: w, off: max(dataEnd, DataStart)}
}

// NewSegmentWriter starts an image on w whose page data goes to data
// instead, at the offsets its runs will name from dataEnd on (DataStart,
// unless the caller wrote data before); data stores it in w its own way
// (compressed), and the caller describes how in the Segments of the Image
// passed to Finish.
func NewSegmentWriter(w, data io.WriterAt, dataEnd uint64) *Writer {
	return &Writer{w: w, data: data, off: max(dataEnd, DataStart)}
}

// WritePages appends whole pages of data and returns the Run describing
// them, with Page left for the caller to fill in.
func (w *Writer) WritePages(p []byte) (Run, error) {
	off, err := w.Append(p)
	if err != nil {
		return Run{}, err
	}
	return Run{Pages: uint64(len(p)) / PageSize, FileOff: off, CRC: Checksum(p)}, nil
}

// Append appends whole pages of data that hold one or more runs back to
// back, and returns the file offset of the first; the caller makes the
// runs (with Checksum of each one's pages).
func (w *Writer) Append(p []byte) (uint64, error) {
	if len(p) == 0 || len(p)%PageSize != 0 {
		return 0, fmt.Errorf("writing pages: length %d is not a positive multiple of %d", len(p), PageSize)
	}
	if _, err := w.data.WriteAt(p, int64(w.off)); err != nil {
		return 0, err
	}
	off := w.off
	w.off += uint64(len(p))
	return off, nil
}

// Finish writes the metadata of im and then the header.  It returns the
// image's total size.
func (w *Writer) Finish(im *Image) (uint64, error) {
	meta := EncodeMeta(im)
	if len(meta) > MaxMetaLen {
		return 0, fmt.Errorf("writing metadata: %d bytes is over the limit of %d", len(meta), MaxMetaLen)
	}
	metaOff := w.off
	if n := len(im.Segments); n > 0 {
		s := &im.Segments[n-1]
		metaOff = s.FileOff + s.StoredLen
	}
	if _, err := w.w.WriteAt(meta, int64(metaOff)); err != nil {
		return 0, err
	}
	h := Header{Version: FormatVersion, MetaOff: metaOff, MetaLen: uint64(len(meta)), MetaCRC: Checksum(meta)}
	h.FileSize = h.MetaOff + h.MetaLen
	if _, err := w.w.WriteAt(h.Encode(), 0); err != nil {
		return 0, err
	}
	return h.FileSize, nil
}

// Header is the decoded fixed header.
type Header struct {
	Version  uint32
	Flags    uint32
	MetaOff  uint64
	MetaLen  uint64
	FileSize uint64
	MetaCRC  uint32
}

// Encode renders the header as its HeaderSize bytes.
func (h *Header) Encode() []byte {
	b := make([]byte, HeaderSize)
	copy(b, Magic)
	le := binary.LittleEndian
	le.PutUint32(b[8:], h.Version)
	le.PutUint32(b[12:], h.Flags)
	le.PutUint64(b[16:], h.MetaOff)
	le.PutUint64(b[24:], h.MetaLen)
	le.PutUint64(b[32:], h.FileSize)
	le.PutUint32(b[40:], h.MetaCRC)
	le.PutUint32(b[60:], Checksum(b[:60]))
	return b
}

// encoder appends little-endian values.
type encoder struct {
	b       []byte
	version uint32 // the format version written
}

func (e *encoder) u8(v uint8)   { e.b = append(e.b, v) }
func (e *encoder) u32(v uint32) { e.b = binary.LittleEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64) { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *encoder) i32(v int32)  { e.u32(uint32(v)) }
func (e *encoder) str(s string) { e.u32(uint32(len(s))); e.b = append(e.b, s...) }

// EncodeMeta renders the metadata section.  Its layout, field by field, is
// the order of the calls below; decodeMeta reads it in the same order.
//
//	Process  arch u32, pageSize u32, pid i32, signal i32, created u64,
//	         kernel str, exe str, name str, brk u64, 10 x MMLayout u64,
//	         restoreInfo u64, 64 x Sigaction (4 x u64), cwd str,
//	         umask u32, 16 x Rlimit (cur, max u64), 3 x Itimer (4 x u64),
//	         timers count u32, then each: id, clock, signal, notify, tid i32,
//	         value u64, intervalSec, intervalNsec, valueSec, valueNsec i64
//	threads  count u32, then each Thread: tid i32, 8 registers u64,
//	         fsBase, robustHead, robustLen, clearChildTID, rseqAddr u64,
//	         rseqLen u32, rseqSig u32, altstackSP u64, altstackSize u64,
//	         altstackFlags i32, name str, flags u32
//	areas    count u32, then each Area: start, end u64, prot u32, flags u32,
//	         kind u8, offset u64, major u32, minor u32, inode u64, name str,
//	         runs count u32, then each Run: page, pages, fileOff u64, crc u32,
//	         source u32 (format 3 on), mask u64 (format 5 on)
//	files    count u32, then each File: fd i32, fdFlags u32, flags u32,
//	         kind u8, state u8 (1 deleted, 2 contents saved), offset u64,
//	         size u64, mode u32, dev u64,
//	         ino u64, path str, runs (as for areas), epoll count u32,
//	         then each: fd i32, events u32, data u64; eventfdCount u64
//	segments count u32, then each Segment: off, rawLen, fileOff,
//	         storedLen u64, codec u8, crc u32 (format 2 on)
//	id       16 bytes (format 3 on)
//	parents  count u32, then each Parent: id 16 bytes, name str (format 3 on)
//
// A str is a u32 length and that many bytes.
func EncodeMeta(im *Image) []byte { return encodeMeta(im, FormatVersion) }

// encodeMeta renders the metadata as format version wrote it (for tests
// of older images; what a version lacks is left out).
func encodeMeta(im *Image, version uint32) []byte {
	e := &encoder{version: version, b: fresh.Slice[byte](metaRoom(im))[:0]}
	p := &im.Process
	e.u32(p.Arch)
	e.u32(p.PageSize)
	e.i32(p.PID)
	e.i32(p.Signal)
	e.u64(uint64(p.Created))
	e.str(p.Kernel)
	e.str(p.Exe)
	e.str(p.Name)
	e.u64(uint64(p.Brk))
	for _, v := range p.MM.fields() {
		e.u64(uint64(*v))
	}
	e.u64(uint64(p.RestoreInfo))
	for _, a := range p.Sigactions {
		e.u64(a.Handler)
		e.u64(a.Flags)
		e.u64(a.Restorer)
		e.u64(a.Mask)
	}
	e.str(p.Cwd)
	e.u32(p.Umask)
	for _, r := range p.Rlimits {
		e.u64(r.Cur)
		e.u64(r.Max)
	}
	for _, t := range p.Itimers {
		e.u64(uint64(t.IntervalSec))
		e.u64(uint64(t.IntervalUsec))
		e.u64(uint64(t.ValueSec))
		e.u64(uint64(t.ValueUsec))
	}
	e.u32(uint32(len(p.Timers)))
	for _, t := range p.Timers {
		for _, v := range []int32{t.ID, t.Clock, t.Signal, t.Notify, t.TID} {
			e.i32(v)
		}
		e.u64(t.Value)
		for _, v := range []int64{t.IntervalSec, t.IntervalNsec, t.ValueSec, t.ValueNsec} {
			e.u64(uint64(v))
		}
	}
	e.u32(uint32(len(im.Threads)))
	for i := range im.Threads {
		t := &im.Threads[i]
		e.i32(t.TID)
		for _, v := range t.regs() {
			e.u64(*v)
		}
		e.u64(uint64(t.FSBase))
		e.u64(uint64(t.RobustHead))
		e.u64(t.RobustLen)
		e.u64(uint64(t.ClearChildTID))
		e.u64(uint64(t.RseqAddr))
		e.u32(t.RseqLen)
		e.u32(t.RseqSig)
		e.u64(uint64(t.AltstackSP))
		e.u64(t.AltstackSize)
		e.i32(t.AltstackFlags)
		e.str(t.Name)
		e.u32(t.Flags)
	}
	e.u32(uint32(len(im.Areas)))
	for i := range im.Areas {
		a := &im.Areas[i]
		e.u64(uint64(a.Start))
		e.u64(uint64(a.End))
		e.u32(a.Prot)
		e.u32(a.Flags)
		e.u8(uint8(a.Kind))
		e.u64(a.Offset)
		e.u32(a.Major)
		e.u32(a.Minor)
		e.u64(a.Inode)
		e.str(a.Name)
		e.runs(a.Runs)
	}
	e.u32(uint32(len(im.Files)))
	for i := range im.Files {
		f := &im.Files[i]
		e.i32(f.FD)
		e.u32(f.FDFlags)
		e.u32(f.Flags)
		e.u8(uint8(f.Kind))
		var state uint8
		if f.Deleted {
			state |= fileDeleted
		}
		if f.Saved {
			state |= fileSaved
		}
		e.u8(state)
		e.u64(uint64(f.Offset))
		e.u64(f.Size)
		e.u32(f.Mode)
		e.u64(f.Dev)
		e.u64(f.Ino)
		e.str(f.Path)
		e.runs(f.Runs)
		e.u32(uint32(len(f.Epoll)))
		for _, t := range f.Epoll {
			e.i32(t.FD)
			e.u32(t.Events)
			e.u64(t.Data)
		}
		e.u64(f.EventfdCount)
	}
	if version < 2 {
		return e.b
	}
	e.u32(uint32(len(im.Segments)))
	for _, s := range im.Segments {
		e.u64(s.Off)
		e.u64(s.RawLen)
		e.u64(s.FileOff)
		e.u64(s.StoredLen)
		e.u8(uint8(s.Codec))
		e.u32(s.CRC)
	}
	if version < 3 {
		return e.b
	}
	e.b = append(e.b, im.ID[:]...)
	e.u32(uint32(len(im.Parents)))
	for _, p := range im.Parents {
		e.b = append(e.b, p.ID[:]...)
		e.str(p.Name)
	}
	return e.b
}

// metaRoom is about the size of im's metadata, so that encodeMeta fills
// one allocation instead of growing it: the 262,000 runs of a 2 GiB image
// of half zero pages take 8 MiB, and growing to that allocated 41 MB.
func metaRoom(im *Image) int {
	p := &im.Process
	n := 4<<10 + len(p.Kernel) + len(p.Exe) + len(p.Name) + len(p.Cwd) + 64*len(p.Timers) +
		256*len(im.Threads) + 64*len(im.Segments) + 64*len(im.Parents)
	for i := range im.Areas {
		n += 96 + len(im.Areas[i].Name) + runSize*len(im.Areas[i].Runs)
	}
	for i := range im.Files {
		f := &im.Files[i]
		n += 128 + len(f.Path) + runSize*len(f.Runs) + 16*len(f.Epoll)
	}
	return n
}

// runSize is the size of an encoded Run (format 5 on).
const runSize = 40

func (e *encoder) runs(rs []Run) {
	e.u32(uint32(len(rs)))
	for _, r := range rs {
		e.u64(r.Page)
		e.u64(r.Pages)
		e.u64(r.FileOff)
		e.u32(r.CRC)
		if e.version >= 3 {
			e.u32(r.Source)
		}
		if e.version >= 5 {
			e.u64(r.Mask)
		}
	}
}

// fields lists the layout's addresses in prctl_mm_map order (brk aside).
func (m *MMLayout) fields() []*Addr {
	return []*Addr{&m.StartCode, &m.EndCode, &m.StartData, &m.EndData, &m.StartBrk,
		&m.StartStack, &m.ArgStart, &m.ArgEnd, &m.EnvStart, &m.EnvEnd}
}

func (t *Thread) regs() []*uint64 {
	return []*uint64{&t.RBX, &t.RBP, &t.R12, &t.R13, &t.R14, &t.R15, &t.RSP, &t.RIP}
}
