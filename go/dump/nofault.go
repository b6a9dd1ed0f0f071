package dump

import (
	"fmt"
	"strings"

	"github.com/ckpt/ckpt/go/image"
	"github.com/ckpt/ckpt/go/procfs"
	"golang.org/x/sys/unix"
)

// The kernel's write tracking (Request.Unwritten) sees writes that go
// through the page tables.  Some write into memory without a fault: a
// device's DMA or asynchronous I/O into buffers pinned earlier.  A process
// that could be doing so is not trusted: noFaultWriter names what it has,
// and the image compares page hashes instead.

// quietDevices are character devices that never write into memory.
var quietDevices = map[string]bool{"/dev/null": true, "/dev/zero": true, "/dev/full": true,
	"/dev/random": true, "/dev/urandom": true, "/dev/tty": true, "/dev/ptmx": true, "/dev/console": true}

// noFaultWriter returns what in the process proc (its maps and
// descriptors) may write its memory without a fault, or "".
func noFaultWriter(proc string, maps []procfs.Mapping, files []image.File) string {
	for _, m := range maps {
		name := strings.TrimSuffix(m.Name, " (deleted)")
		switch {
		case name == "/[aio]":
			return "an asynchronous I/O context (io_setup)"
		case strings.HasPrefix(name, "anon_inode:[io_uring]"):
			return "an io_uring instance"
		case strings.HasPrefix(name, "/dev/") && !quietDevices[name] && !strings.HasPrefix(name, "/dev/shm/") &&
			!strings.HasPrefix(name, "/dev/hugepages/"):
			return "a mapping of " + name
		}
	}
	for _, f := range files {
		link := fmt.Sprintf("%s/fd/%d", proc, f.FD)
		target, err := rawReadlink(link)
		if err != nil {
			continue // closed since the snapshot
		}
		if target == "anon_inode:[io_uring]" {
			return "an io_uring instance"
		}
		var st unix.Stat_t
		if unix.Stat(link, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFCHR &&
			!quietDevices[target] && !strings.HasPrefix(target, "/dev/pts/") && !strings.HasPrefix(target, "/dev/tty") {
			return "descriptor " + fmt.Sprint(f.FD) + " on " + target
		}
	}
	return ""
}
