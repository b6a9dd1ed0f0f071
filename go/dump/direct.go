package dump

import (
	"errors"
	"strconv"
	"unsafe"

	"github.com/ckpt/ckpt/go/image"
	"golang.org/x/sys/unix"
)

// Page data goes to the disk past the page cache (O_DIRECT), where the
// image's file system is a local one that does that well.
//
// Speed: written through the page cache, every page of the image first
// needs a page of the cache, and on this machine getting those is what
// bounds the write: 1 GiB took 0.2 to 2.9 s through the cache (the VM's
// balloon hands memory left free for a few seconds back to the host, and
// touching it again faults in the host), 0.35 to 0.47 s direct, every
// time.  Memory: an image is as large as the program's memory; through
// the cache, a program that fills the machine would see its own pages (or
// other jobs') pushed out for image pages that nobody reads until a
// restart, usually on another machine.  The cost: a restart on the same
// machine right after reads the image from the disk, not from memory.
//
// Only whole pages, from page-aligned memory to page-aligned offsets, go
// direct: the header, the metadata and compressed segments go through the
// cache.  So do writes smaller than minDirect.  Request.Buffered
// (CKPT_DIRECT=0) sends everything through it.

// File systems written directly (statfs f_type).  Not network file systems
// (a direct write waits for the server: one at a time, they are slow),
// tmpfs (which refuses), FUSE, or anything else unknown.
const (
	ext4Magic = 0xEF53
	xfsMagic  = 0x58465342
)

// minDirect is the least a direct write holds.  A direct write waits for
// the disk, 0.1 ms and more here however little it holds; through the
// cache, a few pages take microseconds.  The precopy's later passes write
// pages the program wrote again over their older copies, scattered all
// over the file: page by page, direct, a program writing as fast as
// tests/progs/scribble outran them, and the pause found its area too
// written to take.
const minDirect = 128 << 10

// openDirect opens the file open at fd again for direct writes, or
// returns -1 where they are not to be used.
func openDirect(fd int) int {
	var st unix.Statfs_t
	if unix.Fstatfs(fd, &st) != nil || st.Type != ext4Magic && st.Type != xfsMagic {
		return -1
	}
	d, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_WRONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return d
}

// directOK reports whether p can be written at off directly.
func directOK(p []byte, off int64) bool {
	return len(p) > 0 && len(p)%image.PageSize == 0 && off%image.PageSize == 0 &&
		uintptr(unsafe.Pointer(&p[0]))%image.PageSize == 0
}

// directOK reports whether f writes directly and p can be written at off
// so, leaving minDirect aside.
func (f *asyncFile) directOK(p []byte, off int64) bool {
	return f.direct >= 0 && directOK(p, off)
}

// pwrite writes p at off, directly where it can.  A file system that
// refuses a direct write after all (EINVAL) is written through the cache
// from then on.
func (f *asyncFile) pwrite(p []byte, off int64) error {
	if len(p) >= minDirect && f.directOK(p, off) {
		err := pwriteFull(f.direct, p, off)
		if !errors.Is(err, unix.EINVAL) {
			return err
		}
		unix.Close(f.direct)
		f.direct = -1
	}
	if err := pwriteFull(f.fd, p, off); err != nil {
		return err
	}
	f.wrote(off + int64(len(p)))
	return nil
}

// pwritev writes ps one after the other from off, directly where all of
// them can go so (gather only puts together writes that all can, or all
// cannot) and they hold minDirect together.
func (f *asyncFile) pwritev(ps [][]byte, off int64) error {
	if len(ps) == 1 {
		return f.pwrite(ps[0], off)
	}
	var size int
	for _, p := range ps {
		size += len(p)
	}
	fd, direct := f.fd, size >= minDirect && f.directOK(ps[0], off)
	if direct {
		fd = f.direct
	}
	if n, err := unix.Pwritev(fd, ps, off); err == nil && n == size {
		if !direct {
			f.wrote(off + int64(size))
		}
		return nil
	}
	// Short, refused or interrupted: one by one, each as pwrite does it.
	for _, p := range ps {
		if err := f.pwrite(p, off); err != nil {
			return err
		}
		off += int64(len(p))
	}
	return nil
}
