// Package image defines the ckpt checkpoint image format: its types, an
// encoder used by the checkpointing library and a hostile-input-safe decoder
// used by the restarter and the inspector.
//
// An image is one file, little-endian throughout:
//
//	offset 0      header (64 bytes, zero-padded to one page)
//	    0  magic      [8]byte  "\x89CKPT\r\n\x1a"
//	    8  version    uint32   FormatVersion
//	   12  flags      uint32   0 (reserved)
//	   16  metaOff    uint64   where the metadata starts (page aligned
//	                           unless the data is compressed)
//	   24  metaLen    uint64   its length, at most MaxMetaLen
//	   32  fileSize   uint64   metaOff+metaLen: a truncated file is refused
//	   40  metaCRC    uint32   CRC32C of the metadata
//	   44  reserved   [16]byte zero
//	   60  headerCRC  uint32   CRC32C of bytes 0..59
//	offset 4096   page data: each Run's pages, page aligned, not
//	              overlapping; usually in the metadata's order, but any
//	              order and unused bytes between are allowed (format 4)
//	offset metaOff metadata: Process, Threads, Areas, Files, Segments
//	              (see encode.go)
//
// The metadata comes last because its size is known only once every page has
// been written; the header is written last of all, so a file that was cut
// short never has a valid header.  Every byte is covered by a CRC32C: the
// header by its own, the metadata by metaCRC, and each Run's pages by
// Run.CRC (bytes no run refers to are never read).  docs/image-format.md walks through an example.
package image

import (
	"iter"
	"math/bits"
)

// Addr is an address in the checkpointed process.  It is never a Go pointer.
type Addr uint64

// Image is everything in an image but the page data.
type Image struct {
	Process Process
	Threads []Thread // Threads[0] is the thread that took the checkpoint
	Areas   []Area   // sorted by Start, not overlapping
	Files   []File   // sorted by FD
	// Segments say where page data is stored when it is compressed
	// (format 2); without them each run's data is at its FileOff.
	Segments []Segment
	// ID names this image for the incremental images that refer to it
	// (format 3; zero in older images).
	ID ImageID
	// Parents are the older images that hold the data of runs whose
	// Source is not 0 (an incremental checkpoint): run.Source k means
	// Parents[k-1], at the run's FileOff there.
	Parents []Parent
}

// ImageID is a random identifier chosen when an image is written.
type ImageID [16]byte

// Parent is an image an incremental image takes unchanged pages from.
type Parent struct {
	ID   ImageID
	Name string // its file name, in the same directory as this image
}

// Process is process-wide state.
type Process struct {
	Arch     uint32 // ELF machine, EMX8664
	PageSize uint32
	PID      int32
	Created  int64  // Unix nanoseconds when the checkpoint was taken
	Kernel   string // uname release of the checkpointing kernel
	Exe      string // /proc/PID/exe at checkpoint time
	Name     string // program name (used in image file names)
	Brk      Addr
	MM       MMLayout
	// RestoreInfo is the address of the library's struct ck_restore_info,
	// which the restore stub fills in.
	RestoreInfo Addr
	Signal      int32 // the trigger signal
	Sigactions  [NSig]Sigaction
	Cwd         string
	Umask       uint32
	Rlimits     [NRlimit]Rlimit // indexed by RLIMIT_* resource number
	Itimers     [3]Itimer       // ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF
	Timers      []PosixTimer    // timer_create timers
}

// PosixTimer is a timer_create timer with its ID, event and time left.
type PosixTimer struct {
	ID, Clock, Signal int32
	Notify            int32 // sigev_notify
	TID               int32 // with SIGEV_THREAD_ID
	Value             uint64
	IntervalSec       int64
	IntervalNsec      int64
	ValueSec          int64
	ValueNsec         int64
}

// NRlimit is the number of resource limits saved (RLIMIT_CPU..RLIMIT_RTTIME).
const NRlimit = 16

// Rlimit is one resource limit; ^uint64(0) is RLIM_INFINITY.
type Rlimit struct{ Cur, Max uint64 }

// Itimer is a struct itimerval: the time left and the reload interval.
type Itimer struct {
	IntervalSec, IntervalUsec int64
	ValueSec, ValueUsec       int64
}

// File is one open descriptor.
type File struct {
	FD      int32
	FDFlags uint32 // FD_CLOEXEC
	Flags   uint32 // file status flags and access mode (F_GETFL)
	Kind    FileKind
	Deleted bool   // a regular file unlinked while open; Runs hold its data
	Saved   bool   // a regular file whose contents Runs hold (CKPT_SAVE_FILES)
	Offset  int64  // the file position, or -errno where there is none
	Size    uint64 // st_size at checkpoint time
	Mode    uint32 // st_mode
	Dev     uint64
	Ino     uint64
	Path    string // as /proc/PID/fd/N names it, without " (deleted)"
	Runs    []Run  // a deleted file's contents; pages not covered are zero

	// For an epoll instance (Path "anon_inode:[eventpoll]"): what it
	// watches.  For an eventfd ("anon_inode:[eventfd]"): its counter.
	Epoll        []EpollTarget
	EventfdCount uint64
}

// EpollTarget is one registration of an epoll instance (/proc/PID/fdinfo).
type EpollTarget struct {
	FD     int32
	Events uint32
	Data   uint64
}

// FileKind says what a descriptor refers to.
type FileKind uint8

const (
	FileRegular FileKind = iota
	FileDirectory
	FileCharDevice
	FilePipe
	FileSocket
	FileOther // anon_inode (eventfd, epoll, ...), block devices
	fileKindCount
)

var fileKindNames = [...]string{"regular", "directory", "chardev", "pipe", "socket", "other"}

func (k FileKind) String() string {
	if k < fileKindCount {
		return fileKindNames[k]
	}
	return "unknown"
}

// NSig is the number of signals whose disposition is saved (1..64).
const NSig = 64

// MMLayout is the part of the kernel's mm_struct that PR_SET_MM_MAP restores
// (field names follow struct prctl_mm_map in linux/prctl.h).
type MMLayout struct {
	StartCode, EndCode Addr
	StartData, EndData Addr
	StartBrk           Addr
	StartStack         Addr
	ArgStart, ArgEnd   Addr
	EnvStart, EnvEnd   Addr
}

// Sigaction is the kernel's struct sigaction for one signal.
type Sigaction struct {
	Handler, Flags, Restorer, Mask uint64
}

// Thread is one thread's state outside its signal frame.
type Thread struct {
	TID int32
	// The resume point: callee-saved registers, stack pointer and
	// return address inside the library's signal handler.
	RBX, RBP, R12, R13, R14, R15, RSP, RIP uint64
	FSBase                                 Addr
	RobustHead                             Addr
	RobustLen                              uint64
	ClearChildTID                          Addr
	RseqAddr                               Addr
	RseqLen, RseqSig                       uint32
	AltstackSP                             Addr
	AltstackSize                           uint64
	AltstackFlags                          int32
	Name                                   string // PR_GET_NAME, at most 15 bytes
	Flags                                  uint32 // ThreadCoordinator
}

// Thread flags.
const (
	// ThreadCoordinator marks the thread that took the snapshot (the
	// library's Go coordinator); the others were stopped by it.
	ThreadCoordinator uint32 = 1 << iota
)

// Area is one mapping of /proc/PID/maps.
type Area struct {
	Start, End Addr
	Prot       uint32 // PROT_READ|PROT_WRITE|PROT_EXEC
	Flags      uint32 // AreaShared, ...
	Kind       Kind
	Offset     uint64 // file offset of the mapping
	Major      uint32
	Minor      uint32
	Inode      uint64
	Name       string // path or [heap], [stack], ...
	Runs       []Run  // stored pages; pages not covered read as zero
}

// Area flags.
const (
	AreaShared uint32 = 1 << iota // MAP_SHARED ("s" in maps)
)

// Kind says how an area is restored.
type Kind uint8

const (
	KindMemory     Kind = iota // anonymous memory filled from Runs
	KindStack                  // the main stack: like memory, but grows down
	KindHeap                   // the brk heap
	KindVDSO                   // [vdso]: the running kernel's is moved here
	KindVVAR                   // [vvar]
	KindVVARVclock             // [vvar_vclock]
	kindCount
)

var kindNames = [...]string{"memory", "stack", "heap", "vdso", "vvar", "vvar_vclock"}

func (k Kind) String() string {
	if k < kindCount {
		return kindNames[k]
	}
	return "unknown"
}

// Special reports whether the kernel provides the area's contents (vDSO and
// its data pages), so that a restore moves the running kernel's copy there.
func (k Kind) Special() bool { return k == KindVDSO || k == KindVVAR || k == KindVVARVclock }

// Run is a stretch of stored pages of one area, or of a saved file.  Its
// pages' data lies back to back at FileOff, in page order.  With Mask 0
// every page of the stretch is stored; otherwise (format 5) the stretch is
// at most MaxMaskPages long, bit i of Mask says whether page Page+i is
// stored, and the first and last pages are.  Pages a run skips read as
// zero.  Masks let memory where stored and zero pages alternate (every
// other page zero: 262,144 one-page runs for 2 GiB) take one run per 64
// pages: decoding, checking and loading runs cost per run.
type Run struct {
	Page    uint64 // first page, counted from Area.Start
	Pages   uint64 // pages the stretch spans
	FileOff uint64 // where the pages are in the image file (or its segments)
	CRC     uint32 // CRC32C of the stored pages' data
	Source  uint32 // 0: this image; k: Parents[k-1] holds them at FileOff
	Mask    uint64 // the stored pages, or 0: all of them
}

// MaxMaskPages is the longest stretch a Run with a Mask spans.
const MaxMaskPages = 64

// StoredPages is the number of pages whose data the run holds.
func (r Run) StoredPages() uint64 {
	if r.Mask == 0 {
		return r.Pages
	}
	return uint64(bits.OnesCount64(r.Mask))
}

// DataLen is the number of bytes of data the run holds.
func (r Run) DataLen() uint64 { return r.StoredPages() * PageSize }

// MemLen is the number of bytes of memory the run spans.
func (r Run) MemLen() uint64 { return r.Pages * PageSize }

// StretchCount is the number of stretches Stretches yields.
func (r Run) StretchCount() uint64 {
	if r.Mask == 0 {
		return 1
	}
	return uint64(bits.OnesCount64(r.Mask &^ (r.Mask << 1))) // first pages of stretches
}

// Stretch is pages stored back to back: Pages pages from Page on (counted
// as Run.Page is), whose data is at FileOff.
type Stretch struct{ Page, Pages, FileOff uint64 }

// Stretches yields the stretches of consecutive stored pages of the run, in
// order: the run itself without a Mask.
func (r Run) Stretches() iter.Seq[Stretch] {
	if r.Mask == 0 {
		return func(yield func(Stretch) bool) { yield(Stretch{r.Page, r.Pages, r.FileOff}) }
	}
	return maskStretches(r.Mask, r.Page, r.FileOff)
}

// MaskStretches yields the stretches of the pages a mask names (bit i: page
// i, as in Run.Mask), their data back to back from fileOff: for parts of
// runs kept without their Run.  A zero mask names no page.
func MaskStretches(mask, fileOff uint64) iter.Seq[Stretch] {
	return maskStretches(mask, 0, fileOff)
}

func maskStretches(mask, page, fileOff uint64) iter.Seq[Stretch] {
	return func(yield func(Stretch) bool) {
		off := fileOff
		for m, at := mask, page; m != 0; {
			skip := uint64(bits.TrailingZeros64(m))
			m >>= skip
			n := uint64(bits.TrailingZeros64(^m)) // 64 when every bit left is set
			if !yield(Stretch{at + skip, n, off}) {
				return
			}
			at, off, m = at+skip+n, off+n*PageSize, m>>n // m>>64 is 0
		}
	}
}

// Pages is the number of pages an area spans.
func (a *Area) Pages() uint64 { return uint64(a.End-a.Start) / PageSize }

// StoredBytes is the number of bytes of data the image's runs cover,
// parents' included.
func (im *Image) StoredBytes() uint64 {
	var n uint64
	for i := range im.Areas {
		n += im.Areas[i].StoredBytes()
	}
	for i := range im.Files {
		n += im.Files[i].StoredBytes()
	}
	return n
}

// SourceBytes is the number of bytes of data the runs with Source k cover:
// the image's own with k 0, else those parent k holds.
func (im *Image) SourceBytes(k uint32) uint64 {
	var n uint64
	for _, rs := range im.runLists() {
		for _, r := range rs {
			if r.Source == k {
				n += r.DataLen()
			}
		}
	}
	return n
}

// FileBytes is the number of bytes the page data takes in the file: less
// than StoredBytes when it is compressed or some is in parents.
func (im *Image) FileBytes() uint64 {
	if len(im.Segments) == 0 {
		return im.SourceBytes(0)
	}
	var n uint64
	for _, s := range im.Segments {
		n += s.StoredLen
	}
	return n
}

// StoredBytes is the number of page-data bytes in the image for this area.
func (a *Area) StoredBytes() uint64 { return runBytes(a.Runs) }

// StoredBytes is the number of bytes of a deleted file's data in the image.
func (f *File) StoredBytes() uint64 { return runBytes(f.Runs) }

func runBytes(runs []Run) uint64 {
	var n uint64
	for _, r := range runs {
		n += r.DataLen()
	}
	return n
}

// PermString renders Prot and Flags as /proc/PID/maps does ("r-xp").
func (a *Area) PermString() string {
	b := []byte("---p")
	if a.Prot&ProtRead != 0 {
		b[0] = 'r'
	}
	if a.Prot&ProtWrite != 0 {
		b[1] = 'w'
	}
	if a.Prot&ProtExec != 0 {
		b[2] = 'x'
	}
	if a.Flags&AreaShared != 0 {
		b[3] = 's'
	}
	return string(b)
}
