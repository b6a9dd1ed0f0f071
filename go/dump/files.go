package dump

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/ckpt/ckpt/go/image"
	"github.com/ckpt/ckpt/go/procfs"
	"golang.org/x/sys/unix"
)

// processState fills in the kernel state that the snapshot child shares
// with the program and that does not change under it: the working
// directory, the umask and the resource limits.
func processState(child int, p *image.Process) error {
	proc := fmt.Sprintf("/proc/%d", child)
	cwd, err := readlink(proc + "/cwd")
	if err != nil {
		return fmt.Errorf("reading the working directory: %w", err)
	}
	p.Cwd = cwd
	status, err := procfs.ReadFile(proc + "/status")
	if err != nil {
		return err
	}
	p.Umask = 0o022
	for _, line := range bytes.Split(status, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("Umask:")); ok {
			var u uint32
			if _, err := fmt.Sscanf(strings.TrimSpace(string(v)), "%o", &u); err == nil {
				p.Umask = u
			}
		}
	}
	for res := range p.Rlimits {
		var lim unix.Rlimit
		if err := unix.Prlimit(child, res, nil, &lim); err != nil {
			return fmt.Errorf("reading resource limit %d: %w", res, err)
		}
		p.Rlimits[res] = image.Rlimit{Cur: lim.Cur, Max: lim.Max}
	}
	return nil
}

// describeFile fills in what descriptor f.FD of the child refers to (f's
// FD, flags, offset and size come from the signal handler), saves small
// files' contents if asked, and
// saves the contents of a regular file that was deleted while open: nothing
// else could bring it back.
func (s *source) describeFile(w *image.Writer, proc string, f *image.File, saveFiles bool) error {
	link := fmt.Sprintf("%s/fd/%d", proc, f.FD)
	target, err := rawReadlink(link)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Stat(link, &st); err != nil {
		return err
	}
	// f.Size was taken by the signal handler: the program has been
	// running since, and st.Size may already count later writes.
	f.Mode, f.Dev, f.Ino = st.Mode, st.Dev, st.Ino
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		f.Kind = image.FileRegular
	case unix.S_IFDIR:
		f.Kind = image.FileDirectory
	case unix.S_IFCHR:
		f.Kind = image.FileCharDevice
	case unix.S_IFIFO:
		f.Kind = image.FilePipe
	case unix.S_IFSOCK:
		f.Kind = image.FileSocket
	default:
		f.Kind = image.FileOther
	}
	// The kernel marks a path that no longer leads to the file.
	if f.Kind == image.FileRegular && strings.HasPrefix(target, "/") && strings.HasSuffix(target, " (deleted)") {
		f.Deleted = true
		target = strings.TrimSuffix(target, " (deleted)")
	}
	f.Path = target
	if target == "anon_inode:[eventpoll]" || target == "anon_inode:[eventfd]" {
		text, err := procfs.ReadFile(fmt.Sprintf("%s/fdinfo/%d", proc, f.FD))
		if err != nil {
			return err
		}
		info, err := procfs.ParseFDInfo(text)
		if err != nil {
			return err
		}
		for _, e := range info.Epoll {
			f.Epoll = append(f.Epoll, image.EpollTarget{FD: e.TFD, Events: e.Events, Data: e.Data})
		}
		f.EventfdCount = info.EventfdCount
	}
	f.Saved = saveFiles && f.Kind == image.FileRegular && !f.Deleted && f.Size <= image.MaxSavedFile
	if !(f.Deleted || f.Saved) || f.Size == 0 {
		return nil
	}
	fd, err := unix.Open(link, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %q to save it: %w", target, err)
	}
	defer unix.Close(fd)
	for page := uint64(0); page*image.PageSize < f.Size; page += chunkPages {
		// A buffer per chunk: the last one's may still be being written.
		buf := s.out.get()
		n := min(uint64(len(buf)), f.Size-page*image.PageSize)
		clear(buf[:pageRound(n)])
		err := preadFull(fd, buf[:n], int64(page*image.PageSize))
		if err == nil {
			f.Runs, err = appendRuns(w, f.Runs, buf[:pageRound(n)], page, s.zero, nil, 0)
		}
		s.out.put(buf)
		if err != nil {
			return fmt.Errorf("saving %q: %w", target, err)
		}
	}
	return nil
}

func pageRound(n uint64) uint64 { return (n + image.PageSize - 1) &^ (image.PageSize - 1) }

// rawReadlink returns a link's target as the kernel gives it.
func rawReadlink(path string) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlink(path, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}
