// Package uapi holds the Linux interfaces ckpt uses that golang.org/x/sys
// does not have yet, amd64: userfaultfd (include/uapi/linux/userfaultfd.h)
// and PAGEMAP_SCAN (include/uapi/linux/fs.h, Linux 6.7).
package uapi

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// userfaultfd(2) and its ioctls.
const (
	UffdAPI                  = 0xaa
	UffdUserModeOnly         = 1      // userfaultfd(2) flag: only faults from user mode
	UserfaultfdIOCNew        = 0xaa00 // on /dev/userfaultfd: a new userfaultfd
	UffdioAPI                = 0xc018aa3f
	UffdioRegister           = 0xc020aa00
	UffdioWake               = 0x8010aa02
	UffdioCopy               = 0xc028aa03
	UffdioZeropage           = 0xc020aa04
	UffdioWriteprotect       = 0xc018aa06
	UffdRegisterModeWP       = 2
	UffdFeatureFork          = 1 << 1
	UffdFeatureRemap         = 1 << 2
	UffdFeatureRemove        = 1 << 3
	UffdFeatureUnmap         = 1 << 6
	UffdFeatureWPUnpopulated = 1 << 13
	UffdFeatureWPAsync       = 1 << 15
	UffdEventPagefault       = 0x12
	UffdEventFork            = 0x13
	UffdEventRemap           = 0x14
	UffdEventRemove          = 0x15
	UffdEventUnmap           = 0x16
	UffdMsgSize              = 32
)

// UffdioAPIArg is struct uffdio_api.
type UffdioAPIArg struct{ API, Features, Ioctls uint64 }

// UffdioRange is struct uffdio_writeprotect (Mode 0 unprotects) and, with
// Ioctls after it, struct uffdio_register.
type UffdioRange struct{ Start, Len, Mode uint64 }

// PAGEMAP_SCAN on /proc/PID/pagemap.
const (
	PagemapScan      = 0xc0606610 // _IOWR('f', 16, struct pm_scan_arg)
	PMScanWPMatching = 1          // write-protect the pages that match
	PageIsWPAllowed  = 1 << 0     // in a range registered for async write-protection
	PageIsWritten    = 1 << 1     // written since it was last protected
	PageIsFile       = 1 << 2
	PageIsPresent    = 1 << 3
	PageIsSwapped    = 1 << 4
	PageIsPFNZero    = 1 << 5 // the shared zero page
	PageIsHuge       = 1 << 6
)

// PMScanArg is struct pm_scan_arg.
type PMScanArg struct {
	Size, Flags, Start, End, WalkEnd, Vec, VecLen, MaxPages uint64
	CategoryInverted, CategoryMask, CategoryAnyofMask       uint64
	ReturnMask                                              uint64
}

// PageRegion is struct page_region.
type PageRegion struct{ Start, End, Categories uint64 }

// Ioctl runs ioctl(2), again after EINTR.
func Ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
		if e != unix.EINTR {
			if e != 0 {
				return e
			}
			return nil
		}
	}
}
