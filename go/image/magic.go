package image

// The image's constants, in one place.  linker/ck_restore.h carries copies of
// the ones the restore stub needs; go/restart's tests compare them.

// Magic starts every image.  Like PNG's, it has a high bit and CR-LF so that
// text-mode transfers and 7-bit channels corrupt it visibly.
const Magic = "\x89CKPT\r\n\x1a"

// FormatVersion is the image format version this code writes; it reads
// every version from OldestVersion on.
// History: 1 (2026-11): first format.  2 (2026-11): segments (compressed
// page data) after the files in the metadata.  3 (2026-11): an image ID and
// parent images (incremental checkpoints); each run names its source.
// 4 (2026-11): an image's own page data may lie in any order, with bytes
// no run refers to in between (pages copied before the program stopped and
// again after; version 3 readers would reject such an image).  5 (2026-12):
// a run may skip pages (Run.Mask), so that memory where stored and zero
// pages alternate takes one run per 64 pages, not one per page.
const (
	FormatVersion = 5
	OldestVersion = 1
)

const (
	// HeaderSize is the encoded header; DataStart is where page data begins.
	HeaderSize = 64
	DataStart  = 4096

	// PageSize is the only page size supported (x86-64).
	PageSize = 4096

	// EMX8664 is ELF's EM_X86_64, the only architecture supported.
	EMX8664 = 62

	// MaxUserAddr bounds every area: the x86-64 4-level-paging user space.
	MaxUserAddr = 0x7ffffffff000

	// Limits on untrusted counts and lengths in the metadata.
	MaxMetaLen  = 1 << 30
	MaxThreads  = 1 << 16
	MaxAreas    = 1 << 20
	MaxString   = 4096
	MaxRunCount = 1 << 26
	MaxFiles    = 1 << 20
	MaxTimers   = 1 << 16
	MaxFD       = 1<<30 - 1
	MaxSegments = 1 << 26
	MaxParents  = 1 << 12

	// MaxSegmentLen bounds a segment's page data: what a reader
	// decompresses into memory at once, per CPU.
	MaxSegmentLen = 16 << 20
)

// File state bits in the metadata.
const (
	fileDeleted = 1 << iota
	fileSaved
)

// MaxSavedFile is the largest file whose contents CKPT_SAVE_FILES saves.
const MaxSavedFile = 64 << 20

// Protection bits, as mmap's PROT_*.
const (
	ProtRead  = 0x1
	ProtWrite = 0x2
	ProtExec  = 0x4
)
