// Package restart is the restarter's front end.  It reads and checks a whole
// image before it touches its own address space, works out every address the
// restore stub will use, and then executes the stub (linker/), which turns
// this process into the checkpointed one.
package restart

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/ckpt/ckpt/go/image"
	"github.com/ckpt/ckpt/go/procfs"
	"golang.org/x/sys/unix"
)

// ErrBadImage marks failures caused by the image itself (as opposed to this
// machine or this process); the command exits with status 2 for them.
var ErrBadImage = errors.New("bad image")

// badImage wraps err so that errors.Is(err, ErrBadImage) holds while the
// message stays err's.
type badImage struct{ err error }

func (e badImage) Error() string        { return e.err.Error() }
func (e badImage) Unwrap() []error      { return []error{e.err, ErrBadImage} }
func bad(format string, a ...any) error { return badImage{fmt.Errorf(format, a...)} }

// fdReader is an io.ReaderAt on a raw descriptor.
type fdReader int

func (r fdReader) ReadAt(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Pread(int(r), p[done:], off+int64(done))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return done, err
		}
		if n == 0 {
			return done, fmt.Errorf("%w at offset %d", image.ErrTruncated, off+int64(done))
		}
		done += n
	}
	return done, nil
}

// Load opens, decodes and fully verifies the image at path.  The returned
// descriptor is open on the image.
func Load(path string) (*image.Image, int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, -1, bad("%w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, -1, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, -1, bad("not a regular file")
	}
	im, _, err := image.Read(fdReader(fd), st.Size)
	if err == nil {
		err = image.VerifyData(fdReader(fd), im, nil)
	}
	if err != nil {
		unix.Close(fd)
		return nil, -1, bad("%w", err)
	}
	return im, fd, nil
}

// checkHost refuses images this machine cannot restore.
func checkHost(im *image.Image) error {
	if len(im.Threads) != 1 {
		return bad("the image has %d threads; this version restores single-threaded images only", len(im.Threads))
	}
	text, err := procfs.ReadFile("/proc/self/maps")
	if err != nil {
		return err
	}
	maps, err := procfs.ParseMaps(text)
	if err != nil {
		return err
	}
	here := map[string]uint64{}
	for _, m := range maps {
		switch m.Name {
		case "[vdso]", "[vvar]", "[vvar_vclock]":
			here[m.Name] = m.End - m.Start
		}
	}
	there := map[string]uint64{}
	for i := range im.Areas {
		if a := &im.Areas[i]; a.Kind.Special() {
			there[a.Name] = uint64(a.End - a.Start)
		}
	}
	for name, n := range here {
		if there[name] != n {
			return bad("the image's %s is %d bytes, this kernel's is %d (image taken on kernel %s)",
				name, there[name], n, im.Process.Kernel)
		}
	}
	for name := range there {
		if _, ok := here[name]; !ok {
			return bad("the image has %s, this kernel has none (image taken on kernel %s)", name, im.Process.Kernel)
		}
	}
	return nil
}

// Exec restores the image at path by executing the restore stub in this
// process.  It returns only on failure.  warn reports what is restored
// differently from how it was (one line each).
func Exec(path string, warn func(string)) error {
	if err := closeOnExecAll(); err != nil {
		return err
	}
	im, fd, err := Load(path)
	if err != nil {
		return err
	}
	if err := checkHost(im); err != nil {
		return err
	}
	start, end, err := stubRange()
	if err != nil {
		return err
	}
	p, err := choosePlan(im.Areas, start, end, argsBlobSize(im))
	if err != nil {
		return bad("%w", err)
	}
	files, err := reopenFiles(im, fdReader(fd), warn)
	if err != nil {
		return err
	}
	// Every descriptor the stub gets sits above every number it must
	// fill, so that moving one into place never clobbers another.
	base := 3
	for _, f := range files {
		base = max(base, f.to+1)
	}
	for i := range files {
		if files[i].from, err = moveAbove(files[i].from, base); err != nil {
			return err
		}
	}
	if fd, err = moveAbove(fd, base); err != nil {
		return err
	}
	argsFD, err := memfd("ckpt-restore-args", unix.MFD_CLOEXEC, encodeArgs(im, &p, fd, files))
	if err != nil {
		return err
	}
	if argsFD, err = moveAbove(argsFD, base); err != nil {
		return err
	}
	stubFD, err := memfd("ckpt-restore", unix.MFD_CLOEXEC, stubELF)
	if err != nil {
		return err
	}
	applyProcessState(&im.Process, warn)
	argv := []string{"ckpt-restore", strconv.Itoa(argsFD)}
	err = unix.Exec("/proc/self/fd/"+strconv.Itoa(stubFD), argv, nil)
	return fmt.Errorf("executing the restore stub: %w", err)
}

// memfd returns a memory file holding data.
func memfd(name string, flags int, data []byte) (int, error) {
	// MFD_EXEC says the file may be executed, where the kernel asks
	// (vm.memfd_noexec); older kernels reject the flag.
	fd, err := unix.MemfdCreate(name, flags|unix.MFD_EXEC)
	if errors.Is(err, unix.EINVAL) {
		fd, err = unix.MemfdCreate(name, flags)
	}
	if err != nil {
		return -1, fmt.Errorf("creating a memory file: %w", err)
	}
	for off := 0; off < len(data); {
		n, err := unix.Write(fd, data[off:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return -1, fmt.Errorf("writing a memory file: %w", err)
		}
		off += n
	}
	return fd, nil
}
