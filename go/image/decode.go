package image

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ckpt/ckpt/go/fresh"
)

// Errors a reader returns, wrapped with details; test with errors.Is.
var (
	ErrBadMagic  = errors.New("bad magic (not a ckpt image)")
	ErrVersion   = errors.New("unsupported image format version")
	ErrTruncated = errors.New("truncated image")
	ErrChecksum  = errors.New("checksum mismatch")
	ErrCorrupt   = errors.New("corrupt image")
)

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// DecodeHeader checks and decodes the header at the start of b.
func DecodeHeader(b []byte) (*Header, error) {
	if len(b) < len(Magic) || string(b[:len(Magic)]) != Magic {
		return nil, ErrBadMagic
	}
	if len(b) < HeaderSize {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the header", ErrTruncated, len(b))
	}
	le := binary.LittleEndian
	if got, want := le.Uint32(b[60:]), Checksum(b[:60]); got != want {
		return nil, fmt.Errorf("%w in the header", ErrChecksum)
	}
	h := &Header{
		Version:  le.Uint32(b[8:]),
		Flags:    le.Uint32(b[12:]),
		MetaOff:  le.Uint64(b[16:]),
		MetaLen:  le.Uint64(b[24:]),
		FileSize: le.Uint64(b[32:]),
		MetaCRC:  le.Uint32(b[40:]),
	}
	if h.Version < OldestVersion || h.Version > FormatVersion {
		return nil, fmt.Errorf("%w %d (this build reads %d to %d)", ErrVersion, h.Version, OldestVersion, FormatVersion)
	}
	if h.Flags != 0 {
		return nil, corrupt("unknown header flags %#x", h.Flags)
	}
	// Compressed data (format 2) ends anywhere; the metadata follows it
	// directly, so that no byte of the file goes unchecked.
	if h.MetaOff < DataStart || (h.MetaOff%PageSize != 0 && h.Version < 2) || h.MetaLen > MaxMetaLen ||
		h.FileSize != h.MetaOff+h.MetaLen {
		return nil, corrupt("bad metadata bounds (offset %#x, length %d, size %d)", h.MetaOff, h.MetaLen, h.FileSize)
	}
	return h, nil
}

// Read decodes and validates the header and metadata of the image in r,
// which is size bytes long.  Page data is checked by VerifyData.
func Read(r io.ReaderAt, size int64) (*Image, *Header, error) { return read(r, size, false) }

// ReadOutline is Read without the runs: every Runs is nil, and what they
// say is not checked.  It is what an incremental image needs of an
// uncompressed parent (its ID and where its data ends, DataEnd): a parent
// can have hundreds of thousands of runs.
func ReadOutline(r io.ReaderAt, size int64) (*Image, *Header, error) { return read(r, size, true) }

func read(r io.ReaderAt, size int64, outline bool) (*Image, *Header, error) {
	hb := make([]byte, HeaderSize)
	n, err := r.ReadAt(hb, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	h, err := DecodeHeader(hb[:n])
	if err != nil {
		return nil, nil, err
	}
	if size < 0 || uint64(size) != h.FileSize {
		if uint64(size) < h.FileSize {
			return nil, nil, fmt.Errorf("%w: %d bytes, the header says %d", ErrTruncated, size, h.FileSize)
		}
		return nil, nil, corrupt("%d bytes, the header says %d", size, h.FileSize)
	}
	d := &decoder{r: r, at: int64(h.MetaOff), total: int(h.MetaLen), version: h.Version, skipRuns: outline}
	im, err := d.meta()
	if d.finish() != h.MetaCRC {
		// Damage shows as a checksum mismatch, whatever else it broke.
		return nil, nil, fmt.Errorf("%w in the metadata", ErrChecksum)
	}
	if err != nil {
		return nil, nil, err
	}
	if err := im.validate(h.MetaOff, outline); err != nil {
		return nil, nil, err
	}
	return im, h, nil
}

// decoder reads little-endian values from untrusted bytes: the metadata,
// whole in b, or streamed from r through b, summing its CRC as it goes
// (hundreds of thousands of runs make megabytes of metadata, and fresh
// memory is slow to touch).  The first failure sticks; later reads return
// zero values.
type decoder struct {
	b       []byte // b[off:] is not decoded yet
	off     int
	base    int // metadata bytes before b[0]
	total   int // metadata bytes in all
	err     error
	version uint32 // the image format version
	// skipRuns reads past every array of runs (ReadOutline).
	skipRuns bool

	r   io.ReaderAt // nil: b holds all the metadata
	at  int64       // where the metadata starts in r
	crc uint32      // of the bytes read from r
}

// streamBuffer is the most a decoder reading from r buffers (a variable
// for tests).  Decoding 262,000 runs took as long through 256 KiB as
// through 2 MiB, and it is fresh memory (package fresh).
var streamBuffer = 256 << 10

func (d *decoder) pos() int  { return d.base + d.off }
func (d *decoder) left() int { return d.total - d.pos() }

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || d.left() < n {
		d.err = corrupt("metadata ends early at byte %d", d.pos())
		return nil
	}
	if len(d.b)-d.off < n && !d.fill(n) {
		return nil
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p
}

// fill reads from r until b holds at least n bytes not decoded yet; n is
// at most left().
func (d *decoder) fill(n int) bool {
	rest := d.b[d.off:]
	buf := d.b[:0]
	if cap(buf) < n {
		buf = make([]byte, 0, max(n, min(d.left(), streamBuffer)))
	}
	buf = append(buf, rest...) // moves them to the front
	d.base += d.off
	d.off = 0
	read := d.base + len(buf) // metadata bytes read so far
	more := buf[len(buf):min(cap(buf), len(buf)+d.total-read)]
	if _, err := d.r.ReadAt(more, d.at+int64(read)); err != nil {
		d.err = fmt.Errorf("reading metadata: %w", err)
		return false
	}
	d.crc = ChecksumUpdate(d.crc, more)
	d.b = buf[:len(buf)+len(more)]
	return true
}

// finish reads what the decoding left unread (after a failure) and
// returns the CRC of all the metadata read from r.
func (d *decoder) finish() uint32 {
	if d.r == nil {
		return Checksum(d.b)
	}
	buf := d.b[:cap(d.b)] // decoded, or never to be
	if len(buf) == 0 {
		buf = make([]byte, min(d.total, streamBuffer))
	}
	for read := d.base + len(d.b); read < d.total; {
		chunk := buf[:min(len(buf), d.total-read)]
		if _, err := d.r.ReadAt(chunk, d.at+int64(read)); err != nil {
			return ^d.crc // a mismatch: the metadata cannot be read whole
		}
		d.crc = ChecksumUpdate(d.crc, chunk)
		read += len(chunk)
	}
	return d.crc
}

func (d *decoder) u8() uint8 {
	if p := d.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if p := d.take(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if p := d.take(8); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

func (d *decoder) i32() int32 { return int32(d.u32()) }

func (d *decoder) str() string {
	n := d.u32()
	if n > MaxString {
		if d.err == nil {
			d.err = corrupt("string of %d bytes at byte %d", n, d.pos())
		}
		return ""
	}
	return string(d.take(int(n)))
}

// count reads a count and checks it against limit and against the bytes
// left, each element needing at least minSize bytes, so that no allocation
// is sized by an unchecked number.
func (d *decoder) count(what string, limit, minSize int) int {
	n := d.u32()
	if d.err != nil {
		return 0
	}
	if uint64(n) > uint64(limit) || uint64(n)*uint64(minSize) > uint64(d.left()) {
		d.err = corrupt("%d %s at byte %d", n, what, d.pos())
		return 0
	}
	return int(n)
}

func (d *decoder) runs() []Run {
	size := 8 + 8 + 8 + 4
	if d.version >= 3 {
		size += 4
	}
	if d.version >= 5 {
		size += 8
	}
	n := d.count("runs", MaxRunCount, size)
	if d.skipRuns {
		for left := n * size; left > 0 && d.err == nil; {
			k := min(left, streamBuffer)
			d.take(k)
			left -= k
		}
		return nil
	}
	rs := fresh.Slice[Run](n)
	le := binary.LittleEndian
	for j := 0; j < len(rs); {
		// As many as the buffer holds at a time: megabytes of them.
		batch := min(len(rs)-j, max(1, streamBuffer/size))
		b := d.take(batch * size)
		if b == nil {
			return rs
		}
		for k := range rs[j : j+batch] {
			r := &rs[j+k]
			r.Page, r.Pages, r.FileOff, r.CRC = le.Uint64(b), le.Uint64(b[8:]), le.Uint64(b[16:]), le.Uint32(b[24:])
			if d.version >= 3 {
				r.Source = le.Uint32(b[28:])
			}
			if d.version >= 5 {
				r.Mask = le.Uint64(b[32:])
			}
			b = b[size:]
		}
		j += batch
	}
	return rs
}

func (d *decoder) id() (id ImageID) {
	copy(id[:], d.take(len(id)))
	return id
}

// DecodeMeta decodes the metadata section written by EncodeMeta.  It checks
// only that the bytes parse; Validate checks what they say.
func DecodeMeta(b []byte) (*Image, error) { return decodeMeta(b, FormatVersion) }

// decodeMeta decodes the metadata of an image of the given format version.
func decodeMeta(b []byte, version uint32) (*Image, error) {
	d := &decoder{b: b, total: len(b), version: version}
	return d.meta()
}

// meta decodes the metadata.
func (d *decoder) meta() (*Image, error) {
	im := &Image{}
	p := &im.Process
	p.Arch = d.u32()
	p.PageSize = d.u32()
	p.PID = d.i32()
	p.Signal = d.i32()
	p.Created = int64(d.u64())
	p.Kernel = d.str()
	p.Exe = d.str()
	p.Name = d.str()
	p.Brk = Addr(d.u64())
	for _, v := range p.MM.fields() {
		*v = Addr(d.u64())
	}
	p.RestoreInfo = Addr(d.u64())
	for i := range p.Sigactions {
		a := &p.Sigactions[i]
		a.Handler, a.Flags, a.Restorer, a.Mask = d.u64(), d.u64(), d.u64(), d.u64()
	}
	p.Cwd = d.str()
	p.Umask = d.u32()
	for i := range p.Rlimits {
		p.Rlimits[i] = Rlimit{Cur: d.u64(), Max: d.u64()}
	}
	for i := range p.Itimers {
		t := &p.Itimers[i]
		t.IntervalSec, t.IntervalUsec = int64(d.u64()), int64(d.u64())
		t.ValueSec, t.ValueUsec = int64(d.u64()), int64(d.u64())
	}
	p.Timers = make([]PosixTimer, d.count("timers", MaxTimers, 5*4+8+4*8))
	for i := range p.Timers {
		t := &p.Timers[i]
		t.ID, t.Clock, t.Signal, t.Notify, t.TID = d.i32(), d.i32(), d.i32(), d.i32(), d.i32()
		t.Value = d.u64()
		t.IntervalSec, t.IntervalNsec = int64(d.u64()), int64(d.u64())
		t.ValueSec, t.ValueNsec = int64(d.u64()), int64(d.u64())
	}
	const threadSize = 4 + 8*8 + 5*8 + 4 + 4 + 8 + 8 + 4 + 4 + 4
	im.Threads = make([]Thread, d.count("threads", MaxThreads, threadSize))
	for i := range im.Threads {
		t := &im.Threads[i]
		t.TID = d.i32()
		for _, v := range t.regs() {
			*v = d.u64()
		}
		t.FSBase = Addr(d.u64())
		t.RobustHead = Addr(d.u64())
		t.RobustLen = d.u64()
		t.ClearChildTID = Addr(d.u64())
		t.RseqAddr = Addr(d.u64())
		t.RseqLen = d.u32()
		t.RseqSig = d.u32()
		t.AltstackSP = Addr(d.u64())
		t.AltstackSize = d.u64()
		t.AltstackFlags = d.i32()
		t.Name = d.str()
		t.Flags = d.u32()
	}
	const areaSize = 8 + 8 + 4 + 4 + 1 + 8 + 4 + 4 + 8 + 4 + 4
	im.Areas = make([]Area, d.count("areas", MaxAreas, areaSize))
	for i := range im.Areas {
		a := &im.Areas[i]
		a.Start = Addr(d.u64())
		a.End = Addr(d.u64())
		a.Prot = d.u32()
		a.Flags = d.u32()
		a.Kind = Kind(d.u8())
		a.Offset = d.u64()
		a.Major = d.u32()
		a.Minor = d.u32()
		a.Inode = d.u64()
		a.Name = d.str()
		a.Runs = d.runs()
	}
	const fileSize = 4 + 4 + 4 + 1 + 1 + 8 + 8 + 4 + 8 + 8 + 4 + 4 + 4 + 8
	im.Files = make([]File, d.count("files", MaxFiles, fileSize))
	for i := range im.Files {
		f := &im.Files[i]
		f.FD = d.i32()
		f.FDFlags = d.u32()
		f.Flags = d.u32()
		f.Kind = FileKind(d.u8())
		state := d.u8()
		if state&^(fileDeleted|fileSaved) != 0 && d.err == nil {
			d.err = corrupt("file %d has unknown state bits %#x", i, state)
		}
		f.Deleted, f.Saved = state&fileDeleted != 0, state&fileSaved != 0
		f.Offset = int64(d.u64())
		f.Size = d.u64()
		f.Mode = d.u32()
		f.Dev = d.u64()
		f.Ino = d.u64()
		f.Path = d.str()
		f.Runs = d.runs()
		f.Epoll = make([]EpollTarget, d.count("epoll targets", MaxFiles, 16))
		for j := range f.Epoll {
			t := &f.Epoll[j]
			t.FD, t.Events, t.Data = d.i32(), d.u32(), d.u64()
		}
		f.EventfdCount = d.u64()
	}
	if d.version >= 2 {
		const segmentSize = 4*8 + 1 + 4
		im.Segments = make([]Segment, d.count("segments", MaxSegments, segmentSize))
		for i := range im.Segments {
			s := &im.Segments[i]
			s.Off, s.RawLen, s.FileOff, s.StoredLen = d.u64(), d.u64(), d.u64(), d.u64()
			s.Codec = Codec(d.u8())
			s.CRC = d.u32()
		}
	}
	if d.version >= 3 {
		im.ID = d.id()
		im.Parents = make([]Parent, d.count("parents", MaxParents, 16+4))
		for i := range im.Parents {
			im.Parents[i].ID = d.id()
			im.Parents[i].Name = d.str()
		}
	}
	if d.err == nil && d.left() != 0 {
		d.err = corrupt("%d bytes after the metadata", d.left())
	}
	if d.err != nil {
		return nil, d.err
	}
	return im, nil
}

// Validate checks that the image describes something restorable: one
// architecture, sane areas that do not overlap, and runs that lie inside
// their area and, in file order and without overlapping, inside the data
// region [DataStart, metaOff) or the segments stored there.
func (im *Image) Validate(metaOff uint64) error { return im.validate(metaOff, false) }

// validate is Validate; of an outline (ReadOutline), whose runs were not
// decoded, it checks everything but the runs.
func (im *Image) validate(metaOff uint64, outline bool) error {
	dataEnd, err := checkSegments(im.Segments, metaOff)
	if err != nil {
		return err
	}
	if err := im.checkParents(); err != nil {
		return err
	}
	p := &im.Process
	if p.Arch != EMX8664 {
		return corrupt("machine %d, not x86-64 (%d)", p.Arch, EMX8664)
	}
	if p.PageSize != PageSize {
		return corrupt("page size %d, not %d", p.PageSize, PageSize)
	}
	if len(im.Threads) == 0 {
		return corrupt("no threads")
	}
	leader := false
	tids := make(map[int32]bool, len(im.Threads))
	for _, t := range im.Threads {
		if t.TID <= 0 || tids[t.TID] || t.Flags&^ThreadCoordinator != 0 || len(t.Name) > 15 {
			return corrupt("thread %d is malformed or repeated", t.TID)
		}
		tids[t.TID] = true
		leader = leader || t.TID == p.PID
	}
	if !leader {
		return corrupt("no thread has the process's PID %d", p.PID)
	}
	if p.Signal < 1 || p.Signal > NSig {
		return corrupt("trigger signal %d", p.Signal)
	}
	var prevEnd Addr
	for i := range im.Areas {
		a := &im.Areas[i]
		if a.Start%PageSize != 0 || a.End%PageSize != 0 || a.Start >= a.End || a.End > MaxUserAddr {
			return corrupt("area %d has bad bounds %#x-%#x", i, a.Start, a.End)
		}
		if a.Start < prevEnd {
			return corrupt("area %d (%#x) overlaps or precedes the one before", i, a.Start)
		}
		prevEnd = a.End
		if a.Kind >= kindCount {
			return corrupt("area %d has unknown kind %d", i, a.Kind)
		}
		if a.Prot&^(ProtRead|ProtWrite|ProtExec) != 0 || a.Flags&^AreaShared != 0 {
			return corrupt("area %d has unknown protection %#x or flags %#x", i, a.Prot, a.Flags)
		}
		if a.Kind.Special() && len(a.Runs) != 0 {
			return corrupt("area %d (%s) carries data", i, a.Kind)
		}
		if err := im.checkRuns(a.Runs, a.Pages(), dataEnd); err != nil {
			return corrupt("area %d: %v", i, err)
		}
	}
	prevFD := int32(-1)
	for i := range im.Files {
		f := &im.Files[i]
		if f.FD <= prevFD || f.FD > MaxFD {
			return corrupt("file %d has descriptor %d after %d", i, f.FD, prevFD)
		}
		prevFD = f.FD
		if f.Kind >= fileKindCount {
			return corrupt("descriptor %d has unknown kind %d", f.FD, f.Kind)
		}
		withData := f.Deleted || f.Saved
		if (withData && f.Kind != FileRegular) || (!withData && len(f.Runs) != 0) {
			return corrupt("descriptor %d carries data but is not a deleted or saved regular file", f.FD)
		}
		if len(f.Epoll) != 0 && f.Kind != FileOther {
			return corrupt("descriptor %d has epoll targets but is a %s", f.FD, f.Kind)
		}
		if f.Size > MaxUserAddr {
			return corrupt("descriptor %d has size %d", f.FD, f.Size)
		}
		if err := im.checkRuns(f.Runs, (f.Size+PageSize-1)/PageSize, dataEnd); err != nil {
			return corrupt("descriptor %d: %v", f.FD, err)
		}
	}
	if outline {
		return nil
	}
	if err := im.checkOverlap(dataEnd); err != nil {
		return err
	}
	return im.checkRunsInSegments()
}

// checkParents checks the parents' names (plain file names: parents sit in
// the image's directory) and IDs (set, and each image's own).
func (im *Image) checkParents() error {
	ids := map[ImageID]bool{im.ID: true}
	for i, p := range im.Parents {
		if p.Name == "" || p.Name == "." || p.Name == ".." || strings.ContainsAny(p.Name, "/\x00") ||
			p.ID == (ImageID{}) || ids[p.ID] {
			return corrupt("parent %d (%q) is malformed or repeated", i+1, p.Name)
		}
		ids[p.ID] = true
	}
	return nil
}

// checkSegments checks that segments store the data offsets from
// DataStart on back to back, in file order from DataStart up to metaOff,
// and returns where the runs' offsets end.
func checkSegments(segs []Segment, metaOff uint64) (uint64, error) {
	if len(segs) == 0 {
		return metaOff, nil
	}
	off, fileOff := uint64(DataStart), uint64(DataStart)
	for i, s := range segs {
		if s.Off != off || s.FileOff != fileOff || s.RawLen == 0 || s.RawLen > MaxSegmentLen ||
			s.RawLen%PageSize != 0 || s.StoredLen == 0 || s.StoredLen > s.RawLen ||
			(s.Codec == CodecNone && s.StoredLen != s.RawLen) || s.Codec >= codecCount {
			return 0, corrupt("segment %d (offset %#x, %d bytes stored at %#x as %d, codec %d) "+
				"does not follow the one before", i, s.Off, s.RawLen, s.FileOff, s.StoredLen, s.Codec)
		}
		off += s.RawLen
		fileOff += s.StoredLen
	}
	if fileOff != metaOff {
		return 0, corrupt("segments end at %#x, metadata starts at %#x", fileOff, metaOff)
	}
	return off, nil
}

// checkRunsInSegments checks that no run's data spans two segments, so
// that each segment can be checked on its own.
func (im *Image) checkRunsInSegments() error {
	if len(im.Segments) == 0 {
		return nil
	}
	j := 0
	for _, r := range im.ownRuns() {
		for j < len(im.Segments) && im.Segments[j].Off+im.Segments[j].RawLen <= r.run.FileOff {
			j++
		}
		if j == len(im.Segments) || r.run.FileOff+r.run.DataLen() > im.Segments[j].Off+im.Segments[j].RawLen {
			return corrupt("the data of %s at offset %#x spans two segments", r.what(im), r.run.FileOff)
		}
	}
	return nil
}

// namedRun is a run with what it belongs to, for messages: an index into
// im.Areas, or into im.Files if file is set.  (Not a closure: an image can
// have hundreds of thousands of runs.)
type namedRun struct {
	run   Run
	owner int32
	file  bool
}

func (r namedRun) what(im *Image) string {
	if r.file {
		return fmt.Sprintf("descriptor %d", im.Files[r.owner].FD)
	}
	a := &im.Areas[r.owner]
	return fmt.Sprintf("area %#x-%#x", a.Start, a.End)
}

// ownRuns lists the runs whose data this image holds, in file order.
func (im *Image) ownRuns() []namedRun {
	rs := im.runs()
	own := rs[:0]
	for _, r := range rs {
		if r.run.Source == 0 {
			own = append(own, r)
		}
	}
	return sortStretches(own)
}

// sortStretches sorts runs by file offset.  They come in a few stretches
// already in file order (a checkpoint that copied memory before its pause
// stores the pages it copies again after the rest): these are merged two
// by two, one pass over all the runs for each halving of their number,
// where sorting 262,000 runs took 12-20 ms.
func sortStretches(runs []namedRun) []namedRun {
	starts := []int{0}
	for i := 1; i < len(runs); i++ {
		if runs[i].run.FileOff < runs[i-1].run.FileOff {
			if starts = append(starts, i); len(starts) > 64 {
				slices.SortStableFunc(runs, byFileOff)
				return runs
			}
		}
	}
	if len(starts) == 1 {
		return runs
	}
	to := fresh.Slice[namedRun](len(runs))
	for from := runs; len(starts) > 1; from, to = to, from {
		var merged []int
		for k := 0; k < len(starts); k += 2 {
			merged = append(merged, starts[k])
			end := len(from)
			if k+2 < len(starts) {
				end = starts[k+2]
			}
			if k+1 == len(starts) {
				copy(to[starts[k]:end], from[starts[k]:end])
				continue
			}
			a, b := from[starts[k]:starts[k+1]], from[starts[k+1]:end]
			out := to[starts[k]:starts[k]]
			for len(a) > 0 && len(b) > 0 {
				if b[0].run.FileOff < a[0].run.FileOff {
					out, b = append(out, b[0]), b[1:]
				} else {
					out, a = append(out, a[0]), a[1:]
				}
			}
			out = append(append(out, a...), b...)
		}
		starts = merged
		runs = to
	}
	return runs
}

func byFileOff(a, b namedRun) int { return cmp.Compare(a.run.FileOff, b.run.FileOff) }

func (im *Image) runCount() int {
	n := 0
	for i := range im.Areas {
		n += len(im.Areas[i].Runs)
	}
	for i := range im.Files {
		n += len(im.Files[i].Runs)
	}
	return n
}

// runs lists every run in the metadata's order: areas' first, then files'.
func (im *Image) runs() []namedRun {
	rs := fresh.Slice[namedRun](im.runCount())[:0] // megabytes: see package fresh
	for i := range im.Areas {
		for _, run := range im.Areas[i].Runs {
			rs = append(rs, namedRun{run: run, owner: int32(i)})
		}
	}
	for i := range im.Files {
		for _, run := range im.Files[i].Runs {
			rs = append(rs, namedRun{run: run, owner: int32(i), file: true})
		}
	}
	return rs
}

// checkRuns checks that runs lie in order inside pages pages and that the
// data of those in this image lies page aligned between DataStart and
// dataEnd.  Where in there is up to the writer (format 4): a checkpoint
// that copies most pages before the program stops stores the few it copies
// again later after the rest (checkOverlap).  A parent's data is checked
// against the parent when it is read (Gather).
func (im *Image) checkRuns(runs []Run, pages uint64, dataEnd uint64) error {
	var nextPage uint64
	for j, r := range runs {
		if r.Pages == 0 || r.Page < nextPage || r.Pages > pages || r.Page > pages-r.Pages {
			return fmt.Errorf("run %d covers pages %d+%d of %d", j, r.Page, r.Pages, pages)
		}
		nextPage = r.Page + r.Pages
		if r.Mask != 0 && (r.Pages > MaxMaskPages || r.Mask&1 == 0 || r.Mask>>(r.Pages-1) != 1) {
			return fmt.Errorf("run %d of %d pages has mask %#x", j, r.Pages, r.Mask)
		}
		if r.Source != 0 {
			if r.Source > uint32(len(im.Parents)) || r.FileOff < DataStart || r.FileOff%PageSize != 0 ||
				r.FileOff > MaxUserAddr {
				return fmt.Errorf("run %d has data in parent %d at %#x (the image has %d parents)",
					j, r.Source, r.FileOff, len(im.Parents))
			}
			continue
		}
		if r.FileOff < DataStart || r.FileOff%PageSize != 0 || r.DataLen() > dataEnd || r.FileOff > dataEnd-r.DataLen() {
			return fmt.Errorf("run %d has data at %#x (data lies from %#x to %#x)", j, r.FileOff, DataStart, dataEnd)
		}
	}
	return nil
}

// checkOverlap checks that no two runs share data, with a bit for each
// page of data (32 KiB for a GiB).  Where the runs lie in the file is up to
// the writer (checkRuns): a checkpoint that copied memory before its pause
// stores the pages copied again after the rest, so a 2 GiB image of
// 262,000 runs can come in stretches that interleave, which sorting or
// merging took longer than everything else restart --lazy does before the
// program runs again.  checkRuns has put every run of this image's own
// between DataStart and dataEnd.
func (im *Image) checkOverlap(dataEnd uint64) error {
	used := make([]uint64, (dataEnd-DataStart)/PageSize/64+1)
	lists := im.runLists()
	for i, rs := range lists {
		for j, r := range rs {
			if r.Source == 0 && markPages(used, (r.FileOff-DataStart)/PageSize, r.StoredPages()) {
				return im.overlapError(lists, i, j)
			}
		}
	}
	return nil
}

// markPages sets the bits of pages first to first+n-1 in used and reports
// whether one was set already.
func markPages(used []uint64, first, n uint64) (clash bool) {
	for n > 0 {
		w, b := first/64, first%64
		k := min(n, 64-b)
		mask := ^uint64(0) >> (64 - k) << b
		clash = clash || used[w]&mask != 0
		used[w] |= mask
		first, n = first+k, n-k
	}
	return clash
}

// overlapError names run j of lists[i] (runLists) and the first run
// before it whose data it shares.
func (im *Image) overlapError(lists [][]Run, i, j int) error {
	r := lists[i][j]
	for k, rs := range lists[:i+1] {
		if k == i {
			rs = rs[:j]
		}
		for _, q := range rs {
			if q.Source == 0 && q.FileOff < r.FileOff+r.DataLen() && r.FileOff < q.FileOff+q.DataLen() {
				return corrupt("the data of %s at %#x overlaps that of %s at %#x",
					im.listOwner(i).what(im), r.FileOff, im.listOwner(k).what(im), q.FileOff)
			}
		}
	}
	return corrupt("the data of %s at %#x overlaps another run's", im.listOwner(i).what(im), r.FileOff) // not reached
}

// listOwner is what list i of runLists belongs to.
func (im *Image) listOwner(i int) namedRun {
	if i < len(im.Areas) {
		return namedRun{owner: int32(i)}
	}
	return namedRun{owner: int32(i - len(im.Areas)), file: true}
}

// VerifyData reads every run's pages from r and checks their CRCs (and
// those of compressed segments, which it decompresses), on as many
// goroutines as there are CPUs.  done, if not nil, is called with the
// number of bytes checked so far, from one goroutine at a time.  When
// several runs are damaged, the error names the first in file order.
func VerifyData(r io.ReaderAt, im *Image, done func(uint64)) error {
	return Unpack(r, im, nil, done)
}

// copyRuns checks the data of the image's own runs and, if out is not nil,
// copies it there at the same offsets (an image without segments).
func copyRuns(r io.ReaderAt, im *Image, out io.WriterAt, done func(uint64)) error {
	blocks := im.ownBlocks()
	return parallel(len(blocks), done, func(k int, buf *[]byte) (uint64, error) {
		bl := &blocks[k]
		runs := bl.runs
		start := runs[0].FileOff
		total := runs[len(runs)-1].FileOff + runs[len(runs)-1].DataLen() - start
		b := grow(buf, min(total, blockLen))
		i, crc, at := 0, uint32(0), start // the run being checked, its CRC so far, where it is up to
		for off := uint64(0); off < total; {
			n := min(uint64(len(b)), total-off)
			if _, err := r.ReadAt(b[:n], int64(start+off)); err != nil {
				return 0, fmt.Errorf("reading the data of %s: %w", bl.owner.what(im), err)
			}
			if out != nil {
				if _, err := out.WriteAt(b[:n], int64(start+off)); err != nil {
					return 0, fmt.Errorf("copying the data of %s: %w", bl.owner.what(im), err)
				}
			}
			for p := b[:n]; len(p) > 0; {
				run := &runs[i]
				m := min(uint64(len(p)), run.FileOff+run.DataLen()-at)
				crc = ChecksumUpdate(crc, p[:m])
				p, at = p[m:], at+m
				if at == run.FileOff+run.DataLen() {
					if crc != run.CRC {
						return 0, fmt.Errorf("%w in the data of %s at file offset %#x",
							ErrChecksum, bl.owner.what(im), run.FileOff)
					}
					i, crc = i+1, 0
				}
			}
			off += n
		}
		return total, nil
	})
}

// blockLen bounds what copyRuns and Gather read at once: each worker's
// buffer is one huge page (package fresh).  Checking a 1 GiB image took
// 80-89 ms with 1 MiB, 87-91 with 4 MiB, 88 with 256 KiB.
const blockLen = 1 << 20

// block is runs of one area or file (owner; its run is not set) that lie
// back to back in the file, up to blockLen bytes of them unless it is one
// longer run: one read for thousands of one-page runs.
type block struct {
	runs  []Run
	owner namedRun
}

// ownBlocks groups the runs whose data this image holds into blocks, in
// file order.  An area's runs lie in a few stretches in file order (see
// sortStretches), so there are few blocks to sort, and no list of all the
// runs is made (megabytes for a heap of one-page runs, as ownRuns makes).
func (im *Image) ownBlocks() []block {
	var blocks []block
	for i, rs := range im.runLists() {
		owner := im.listOwner(i)
		for j := 0; j < len(rs); {
			if rs[j].Source != 0 {
				j++
				continue
			}
			k, n := j+1, rs[j].DataLen()
			for k < len(rs) && rs[k].Source == 0 && n+rs[k].DataLen() <= blockLen &&
				rs[k].FileOff == rs[k-1].FileOff+rs[k-1].DataLen() {
				n += rs[k].DataLen()
				k++
			}
			blocks = append(blocks, block{runs: rs[j:k], owner: owner})
			j = k
		}
	}
	slices.SortFunc(blocks, func(a, b block) int { return cmp.Compare(a.runs[0].FileOff, b.runs[0].FileOff) })
	return blocks
}

// Unpack checks the page data the image holds itself as VerifyData does
// and, if out is not nil, writes it there, decompressed, each run's pages
// at the run's FileOff.
func Unpack(r io.ReaderAt, im *Image, out io.WriterAt, done func(uint64)) error {
	if len(im.Segments) == 0 {
		return copyRuns(r, im, out, done)
	}
	runs := im.ownRuns()
	return parallel(len(im.Segments), done, func(i int, buf *[]byte) (uint64, error) {
		s := &im.Segments[i]
		// The stored bytes first: the decoder may write a little past
		// the raw ones (decompress).
		b := grow(buf, s.StoredLen+s.RawLen+decodeSlack)
		stored := b[:s.StoredLen]
		if _, err := r.ReadAt(stored, int64(s.FileOff)); err != nil {
			return 0, fmt.Errorf("reading the segment at file offset %#x: %w", s.FileOff, err)
		}
		if Checksum(stored) != s.CRC {
			return 0, fmt.Errorf("%w in the segment at file offset %#x", ErrChecksum, s.FileOff)
		}
		raw := stored
		if s.Codec != CodecNone {
			raw = b[s.StoredLen : s.StoredLen+s.RawLen]
			if err := s.decompress(raw, stored); err != nil {
				return 0, err
			}
		}
		// The runs inside: Validate made sure none spans two segments.
		k := sort.Search(len(runs), func(k int) bool { return runs[k].run.FileOff >= s.Off })
		for ; k < len(runs) && runs[k].run.FileOff < s.Off+s.RawLen; k++ {
			run := runs[k].run
			if Checksum(raw[run.FileOff-s.Off:][:run.DataLen()]) != run.CRC {
				return 0, fmt.Errorf("%w in the data of %s at offset %#x (segment at file offset %#x)",
					ErrChecksum, runs[k].what(im), run.FileOff, s.FileOff)
			}
		}
		if out != nil {
			if _, err := out.WriteAt(raw, int64(s.Off)); err != nil {
				return 0, fmt.Errorf("unpacking the segment at file offset %#x: %w", s.FileOff, err)
			}
		}
		return s.RawLen, nil
	})
}

// DataEnd is where the offsets of the image's own data end: the metadata,
// or with segments the end of the data they hold.
func (im *Image) DataEnd(h *Header) uint64 {
	if n := len(im.Segments); n > 0 {
		return im.Segments[n-1].Off + im.Segments[n-1].RawLen
	}
	return h.MetaOff
}

// Gather copies the data of the runs that im's parents hold to out, from
// offset end on, and points those runs there.  parents[k-1] reads parent
// k's own data at its offsets, which end at ends[k-1]; each run's CRC is
// checked.  With out nil, it only checks.  Afterwards (out not nil) every
// run of im has Source 0 and im has no Parents: im describes out, where the
// caller has put im's own data (Unpack).
func (im *Image) Gather(parents []io.ReaderAt, ends []uint64, out io.WriterAt, end uint64, done func(uint64)) error {
	type job struct {
		r  *Run
		to uint64
	}
	var jobs []job
	for _, list := range im.runLists() {
		for j := range list {
			if r := &list[j]; r.Source != 0 {
				jobs = append(jobs, job{r, end})
				end += r.DataLen()
			}
		}
	}
	err := parallel(len(jobs), done, func(i int, buf *[]byte) (uint64, error) {
		r := jobs[i].r
		k := r.Source - 1
		if int(k) >= len(parents) || r.FileOff+r.DataLen() > ends[k] {
			return 0, corrupt("pages at %#x of parent %d (%q) lie beyond its data", r.FileOff, k+1, im.Parents[k].Name)
		}
		b, crc := grow(buf, min(r.DataLen(), blockLen)), uint32(0)
		for off := uint64(0); off < r.DataLen(); {
			n := min(uint64(len(b)), r.DataLen()-off)
			if _, err := parents[k].ReadAt(b[:n], int64(r.FileOff+off)); err != nil {
				return 0, fmt.Errorf("reading parent %q: %w", im.Parents[k].Name, err)
			}
			crc = ChecksumUpdate(crc, b[:n])
			if out != nil {
				if _, err := out.WriteAt(b[:n], int64(jobs[i].to+off)); err != nil {
					return 0, err
				}
			}
			off += n
		}
		if crc != r.CRC {
			return 0, fmt.Errorf("%w in the pages at %#x of parent %q", ErrChecksum, r.FileOff, im.Parents[k].Name)
		}
		return r.DataLen(), nil
	})
	if err != nil || out == nil {
		return err
	}
	for _, j := range jobs {
		j.r.FileOff, j.r.Source = j.to, 0
	}
	im.Parents, im.Segments = nil, nil
	return nil
}

// runLists returns the run lists of every area and file, in file order.
func (im *Image) runLists() [][]Run {
	var l [][]Run
	for i := range im.Areas {
		l = append(l, im.Areas[i].Runs)
	}
	for i := range im.Files {
		l = append(l, im.Files[i].Runs)
	}
	return l
}

// parallel runs work(0..n-1) on as many goroutines as there are CPUs, each
// with a buffer of its own for work to grow, and returns the error of the
// lowest i that failed; after a failure, the work not yet started is
// skipped.
// done, if not nil, gets the running total of what work returned.
func parallel(n int, done func(uint64), work func(i int, buf *[]byte) (uint64, error)) error {
	errs := make([]error, n)
	var (
		next  atomic.Int64
		mu    sync.Mutex
		total uint64
		wg    sync.WaitGroup
	)
	worker := func() {
		defer wg.Done()
		var buf []byte
		for {
			i := int(next.Add(1) - 1)
			if i >= n {
				return
			}
			bytes, err := work(i, &buf)
			if err != nil {
				errs[i] = err
				next.Store(int64(n)) // stop every worker soon
				continue
			}
			if done != nil {
				mu.Lock()
				total += bytes
				done(total)
				mu.Unlock()
			}
		}
	}
	workers := min(runtime.GOMAXPROCS(0), n)
	wg.Add(workers)
	for w := 0; w < workers; w++ {
		go worker()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// grow returns (*buf)[:n], reallocating *buf if it is shorter: at least
// blockLen, on huge pages (package fresh).
func grow(buf *[]byte, n uint64) []byte {
	if uint64(cap(*buf)) < n {
		*buf = fresh.Slice[byte](int(max(n, blockLen)))
	}
	return (*buf)[:n]
}
