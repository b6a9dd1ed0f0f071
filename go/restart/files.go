package restart

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/ckpt/ckpt/go/image"
	"golang.org/x/sys/unix"
)

// epollReg is an epoll registration the stub makes again, by the numbers
// the descriptors have in the program.
type epollReg struct {
	epfd, tfd int
	events    uint32
	data      uint64
}

// epollRegs lists the registrations of the image's epoll instances.
func epollRegs(files []image.File) []epollReg {
	var regs []epollReg
	for _, f := range files {
		for _, t := range f.Epoll {
			regs = append(regs, epollReg{epfd: int(f.FD), tfd: int(t.FD), events: t.Events, data: t.Data})
		}
	}
	return regs
}

// passedFD is a descriptor opened here that the stub moves to its number.
type passedFD struct {
	from, to int
	cloexec  bool
}

// openFlags keeps the status flags open(2) can set again.
const openFlags = unix.O_ACCMODE | unix.O_APPEND | unix.O_NONBLOCK | unix.O_DSYNC | unix.O_SYNC |
	unix.O_DIRECT | unix.O_NOATIME | unix.O_LARGEFILE

// safeDevices are character devices that mean the same on every machine.
var safeDevices = map[string]bool{"/dev/null": true, "/dev/zero": true, "/dev/full": true,
	"/dev/random": true, "/dev/urandom": true}

// reopenFiles brings back the image's descriptors, other than 0, 1 and 2,
// which are restart's own.  The policy (README, "Open files"):
//   - a regular file is reopened by path at its offset.  It must still
//     exist and be at least as long as at the checkpoint; bytes written
//     after the checkpoint to a file open for writing are cut off, since
//     the run that wrote them is the one being undone;
//   - a file deleted while open is recreated, unlinked, from the image;
//   - directories and harmless devices (/dev/null, ...) are reopened;
//   - a pipe whose both ends the program holds becomes a new pipe (its
//     unread bytes are lost); the library's own wake-up pipe is one;
//   - an eventfd is made again with its counter, an epoll instance with
//     its registrations (the Go runtime's netpoller has both);
//   - other pipes, sockets, terminals and other kernel objects are replaced
//     by /dev/null, with a warning.
//
// Cutting off what was written to a file after the checkpoint is left to
// the caller (cuts): it waits until the image is checked.
func reopenFiles(im *image.Image, img io.ReaderAt, warn func(string)) (_ []passedFD, cuts []cut, _ error) {
	var out []passedFD
	pipes, err := newPipes(im.Files)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		for _, p := range pipes {
			unix.Close(p[0])
			unix.Close(p[1])
		}
	}()
	for i := range im.Files {
		f := &im.Files[i]
		if f.FD <= 2 {
			continue
		}
		var fd int
		var err error
		if p, ok := pipes[f.Path]; ok && f.Kind == image.FilePipe {
			fd, err = pipeEnd(p, f)
		} else {
			fd, err = reopen(f, img, warn)
		}
		if err == nil && f.Kind == image.FileRegular && !f.Deleted {
			cuts, err = cutLater(cuts, fd, f)
			if err != nil {
				unix.Close(fd)
			}
		}
		if err != nil {
			for _, p := range out {
				unix.Close(p.from)
			}
			closeCuts(cuts)
			return nil, nil, fmt.Errorf("descriptor %d (%q): %w", f.FD, f.Path, err)
		}
		out = append(out, passedFD{from: fd, to: int(f.FD), cloexec: f.FDFlags&unix.FD_CLOEXEC != 0})
	}
	return out, cuts, nil
}

// savesFiles reports whether restart puts a file's saved contents back
// (CKPT_SAVE_FILES=1), which changes the file at its path.
func savesFiles(im *image.Image) bool {
	for i := range im.Files {
		if f := &im.Files[i]; f.Kind == image.FileRegular && f.Saved && !f.Deleted {
			return true
		}
	}
	return false
}

// cut is a file to cut back to the size it had at the checkpoint: the
// bytes written after it belong to the run being undone, and a log then
// holds each line once.
type cut struct {
	fd   int // a descriptor of its own on the file
	file *image.File
	size uint64 // the file's size now
}

// cutLater adds the file f reopened as fd to cuts if it is open for
// writing and longer than at the checkpoint.
func cutLater(cuts []cut, fd int, f *image.File) ([]cut, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return cuts, err
	}
	if uint64(st.Size) <= f.Size || f.Flags&unix.O_ACCMODE == unix.O_RDONLY {
		return cuts, nil
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return cuts, err
	}
	return append(cuts, cut{fd: dup, file: f, size: uint64(st.Size)}), nil
}

// applyCuts cuts every file in cuts and closes their descriptors.
func applyCuts(cuts []cut, warn func(string)) error {
	defer closeCuts(cuts)
	for _, c := range cuts {
		f := c.file
		if err := unix.Ftruncate(c.fd, int64(f.Size)); err != nil {
			return fmt.Errorf("descriptor %d (%q): cutting off data written after the checkpoint: %w", f.FD, f.Path, err)
		}
		warn(fmt.Sprintf("descriptor %d: %q: removed %d bytes written after the checkpoint", f.FD, f.Path, c.size-f.Size))
	}
	return nil
}

func closeCuts(cuts []cut) {
	for _, c := range cuts {
		unix.Close(c.fd)
	}
}

// newPipes makes a new pipe for every pipe the program holds both ends of,
// keyed by its /proc name ("pipe:[inode]").
func newPipes(files []image.File) (map[string][2]int, error) {
	ends := map[string]int{} // bit 0: a read end, bit 1: a write end
	for _, f := range files {
		if f.Kind != image.FilePipe {
			continue
		}
		if f.Flags&unix.O_ACCMODE == unix.O_RDONLY {
			ends[f.Path] |= 1
		} else {
			ends[f.Path] |= 2
		}
	}
	pipes := map[string][2]int{}
	for name, e := range ends {
		if e != 3 {
			continue
		}
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return nil, fmt.Errorf("creating a pipe for %s: %w", name, err)
		}
		pipes[name] = p
	}
	return pipes, nil
}

// pipeEnd duplicates the end of p that f is, with f's flags.
func pipeEnd(p [2]int, f *image.File) (int, error) {
	end := p[1]
	if f.Flags&unix.O_ACCMODE == unix.O_RDONLY {
		end = p[0]
	}
	fd, err := unix.FcntlInt(uintptr(end), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if f.Flags&unix.O_NONBLOCK != 0 {
		unix.SetNonblock(fd, true)
	}
	return fd, nil
}

func reopen(f *image.File, img io.ReaderAt, warn func(string)) (int, error) {
	flags := int(f.Flags)&openFlags | unix.O_CLOEXEC
	switch {
	case f.Kind == image.FileRegular && f.Deleted:
		return recreateDeleted(f, img, flags)
	case f.Kind == image.FileRegular && f.Saved:
		if err := writeSaved(f, img); err != nil {
			return -1, err
		}
		warn(fmt.Sprintf("descriptor %d: %q: contents put back as they were at the checkpoint", f.FD, f.Path))
		return reopenRegular(f, flags, warn)
	case f.Kind == image.FileRegular:
		return reopenRegular(f, flags, warn)
	case f.Kind == image.FileDirectory:
		fd, err := unix.Open(f.Path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, err
		}
		seek(fd, f)
		return fd, nil
	case f.Kind == image.FileCharDevice && safeDevices[f.Path]:
		return unix.Open(f.Path, flags, 0)
	case f.Kind == image.FileOther && f.Path == "anon_inode:[eventfd]":
		// The Go runtime's netpoller has one; so do many event loops.
		efd := unix.EFD_CLOEXEC
		if f.Flags&unix.O_NONBLOCK != 0 {
			efd |= unix.EFD_NONBLOCK
		}
		return unix.Eventfd(uint(f.EventfdCount), efd)
	case f.Kind == image.FileOther && f.Path == "anon_inode:[eventpoll]":
		// Registered again by the stub, once every descriptor has
		// its number (epollRegs).
		return unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	}
	warn(fmt.Sprintf("descriptor %d (%s %s) cannot be restored; it is /dev/null now", f.FD, f.Kind, f.Path))
	return unix.Open("/dev/null", flags&unix.O_ACCMODE|unix.O_CLOEXEC, 0)
}

func reopenRegular(f *image.File, flags int, warn func(string)) (int, error) {
	fd, err := unix.Open(f.Path, flags, 0)
	if errors.Is(err, unix.EPERM) && flags&unix.O_NOATIME != 0 {
		fd, err = unix.Open(f.Path, flags&^unix.O_NOATIME, 0)
	}
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, err
	}
	size := uint64(st.Size)
	if st.Ino != f.Ino || st.Dev != f.Dev {
		warn(fmt.Sprintf("descriptor %d: %q is not the file it was at the checkpoint (it was replaced)", f.FD, f.Path))
	}
	if size < f.Size {
		unix.Close(fd)
		return -1, fmt.Errorf("the file is %d bytes, shorter than the %d it had at the checkpoint", size, f.Size)
	}
	seek(fd, f)
	return fd, nil
}

// writeSaved puts a saved file's contents back at its path, creating it
// if it is gone.
func writeSaved(f *image.File, img io.ReaderAt) error {
	fd, err := unix.Open(f.Path, unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, f.Mode&0o7777)
	if err != nil {
		return fmt.Errorf("putting back the saved contents: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Ftruncate(fd, 0); err != nil {
		return err
	}
	if err := copyRuns(fd, f, img); err != nil {
		return err
	}
	return unix.Ftruncate(fd, int64(f.Size))
}

// copyRuns writes f's saved pages from the image into fd.
func copyRuns(fd int, f *image.File, img io.ReaderAt) error {
	buf := make([]byte, 1<<20)
	for _, r := range f.Runs {
		for s := range r.Stretches() {
			if err := copyStretch(fd, s, img, buf); err != nil {
				return err
			}
		}
	}
	return nil
}

// copyStretch writes one stretch of a file's saved pages from the image
// into fd, through buf.
func copyStretch(fd int, s image.Stretch, img io.ReaderAt, buf []byte) error {
	size := s.Pages * image.PageSize
	for off := uint64(0); off < size; {
		n := min(uint64(len(buf)), size-off)
		if _, err := img.ReadAt(buf[:n], int64(s.FileOff+off)); err != nil {
			return err
		}
		if _, err := unix.Pwrite(fd, buf[:n], int64(s.Page*image.PageSize+off)); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// recreateDeleted makes an unlinked file with the saved contents, in the
// directory the file was in when possible.
func recreateDeleted(f *image.File, img io.ReaderAt, flags int) (int, error) {
	dir := filepath.Dir(f.Path)
	tmp, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, f.Mode&0o777)
	if err != nil {
		tmp, err = unix.Open(os.TempDir(), unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, f.Mode&0o777)
	}
	if err != nil {
		return -1, fmt.Errorf("recreating the deleted file: %w", err)
	}
	defer unix.Close(tmp)
	if err := copyRuns(tmp, f, img); err != nil {
		return -1, err
	}
	if err := unix.Ftruncate(tmp, int64(f.Size)); err != nil {
		return -1, err
	}
	// Reopen through /proc for the original access mode and flags.
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(tmp), flags, 0)
	if err != nil {
		return -1, err
	}
	seek(fd, f)
	return fd, nil
}

func seek(fd int, f *image.File) {
	if f.Offset > 0 {
		unix.Seek(fd, f.Offset, io.SeekStart)
	}
}

// applyProcessState sets what survives exec: working directory, umask and
// resource limits.
func applyProcessState(p *image.Process, warn func(string)) {
	if p.Cwd != "" {
		if err := unix.Chdir(p.Cwd); err != nil {
			warn(fmt.Sprintf("cannot return to the working directory %q (%v); staying in the current one", p.Cwd, err))
		}
	}
	unix.Umask(int(p.Umask))
	for res, r := range p.Rlimits {
		lim := unix.Rlimit{Cur: r.Cur, Max: r.Max}
		if err := unix.Setrlimit(res, &lim); err != nil {
			var cur unix.Rlimit
			if unix.Getrlimit(res, &cur) == nil && lim.Max > cur.Max {
				// Raising a hard limit needs privilege: keep ours.
				lim.Max = cur.Max
				lim.Cur = min(lim.Cur, cur.Max)
				if unix.Setrlimit(res, &lim) == nil {
					warn(fmt.Sprintf("resource limit %d: hard limit %d kept (the image had %d)", res, cur.Max, r.Max))
					continue
				}
			}
			warn(fmt.Sprintf("resource limit %d cannot be restored: %v", res, err))
		}
	}
}
