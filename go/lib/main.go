// Command lib is the Go side of libckpt.so, built with -buildmode=c-shared
// and linked with the C shim in cc_shim/.
//
// The shim's signal handler writes a byte into a pipe; a goroutine locked to
// its own thread waits on that pipe, has the shim freeze the threads and fork
// a snapshot child (ckpt_snapshot), writes the image from the child while
// the program runs on, and tells the shim it is done.  No Go code runs in
// the signal handler (the first Go callback on a C thread mallocs, which
// deadlocks if the signal interrupted malloc).
package main

/*
#include "cc_shim/shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/ckpt/ckpt/go/dump"
	"github.com/ckpt/ckpt/go/image"
	"github.com/ckpt/ckpt/go/procfs"
	"github.com/ckpt/ckpt/go/span"
	"golang.org/x/sys/unix"
)

func main() {}

// config is read once at load time.
type config struct {
	dir   string     // CKPT_DIR, default the starting directory; absolute
	quiet bool       // CKPT_QUIET=1
	save  bool       // CKPT_SAVE_FILES=1: store small open files' contents
	zstd  bool       // CKPT_COMPRESS=1: compress every image
	chain int        // CKPT_INCREMENTAL=N: after each full image, N-1 incremental ones
	huge  hugePolicy // CKPT_HUGEPAGES: when to collapse memory into huge pages
	name  string     // program name for image file names
	// With chain: the kernel tracks writes (tracking.go) unless
	// CKPT_TRACK_WRITES=0; CKPT_TRACK_WRITES=check also reads the pages
	// it says are unwritten and reports the ones that changed.
	track, trackCheck bool
	// precopy copies big areas before the pause (precopy.go) unless
	// CKPT_PRECOPY=0.  CKPT_PRECOPY=all copies every area, however
	// small; CKPT_PRECOPY=check (or all,check) forks the areas anyway
	// and compares the copies with the snapshot's pages.
	precopy, precopyAll, precopyCheck bool
	// buffered (CKPT_DIRECT=0) writes page data through the page cache
	// even where it could go to the disk directly (go/dump/direct.go).
	buffered bool
}

// init runs on the runtime's own thread while the program's main() may
// already run (see cc_shim/ctor.c), and tells the shim when it is done.
func init() {
	defer C.ck_go_ready()
	// Go's syscall package raised the soft RLIMIT_NOFILE to the hard
	// limit, which the program never asked for: put back what it had.
	lim := unix.Rlimit{Cur: uint64(C.ckpt_nofile.rlim_cur), Max: uint64(C.ckpt_nofile.rlim_max)}
	unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)

	fd := int(C.ckpt_wake_fd[0])
	if fd < 0 {
		return
	}
	cfg := config{dir: os.Getenv("CKPT_DIR"), quiet: os.Getenv("CKPT_QUIET") == "1",
		save: os.Getenv("CKPT_SAVE_FILES") == "1", zstd: os.Getenv("CKPT_COMPRESS") == "1",
		name: programName(), huge: parseHugePolicy(os.Getenv("CKPT_HUGEPAGES")),
		buffered: os.Getenv("CKPT_DIRECT") == "0"}
	if n, err := strconv.Atoi(os.Getenv("CKPT_INCREMENTAL")); err == nil && n > 1 {
		cfg.chain = n
		tw := os.Getenv("CKPT_TRACK_WRITES")
		cfg.track, cfg.trackCheck = tw != "0", tw == "check"
		if n, err := strconv.ParseUint(os.Getenv("CKPT_TRACK_REGIONS"), 10, 32); err == nil && n > 0 {
			regionsAtFirst = n
		}
	}
	if cfg.track {
		C.ckpt_track.scan = 1
	}
	cfg.precopy = os.Getenv("CKPT_PRECOPY") != "0"
	for _, o := range strings.Split(os.Getenv("CKPT_PRECOPY"), ",") {
		cfg.precopyAll = cfg.precopyAll || o == "all"
		cfg.precopyCheck = cfg.precopyCheck || o == "check"
	}
	// Relative to the directory the program started in (the shim noted
	// it), not to wherever it is by now or when a checkpoint comes.
	if wd := C.GoString(&C.ckpt_start_cwd[0]); wd != "" && !filepath.IsAbs(cfg.dir) {
		cfg.dir = filepath.Join(wd, cfg.dir)
	}
	go coordinate(fd, &cfg)
}

// programName is the base name of argv[0].
func programName() string {
	b, err := procfs.ReadFile("/proc/self/cmdline")
	if err == nil {
		if i := strings.IndexByte(string(b), 0); i > 0 {
			b = b[:i]
		}
		if n := filepath.Base(string(b)); n != "." && n != "/" && n != "" {
			return n
		}
	}
	return "prog"
}

// coordinate serves checkpoint requests, one at a time, for the life of the
// process.  It keeps its thread: ckpt_snapshot stops every other thread, and
// must find this one running C, not Go.
func coordinate(fd int, cfg *config) {
	runtime.LockOSThread()
	// The runtime maps getrandom's state on a thread's first call: now,
	// not while the program runs, which may map over a range it just
	// unmapped (see go/dump/scratch.go).
	var id image.ImageID
	unix.Getrandom(id[:], 0)
	var b [1]byte
	restored := false // since the last checkpoint: restart may still load pages
	for {
		n, err := unix.Read(fd, b[:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n != len(b) {
			logf(cfg, "ckpt: wake pipe failed (%v); checkpoints are disabled\n", err)
			return
		}
		if restored {
			waitLoaded(cfg)
			restored = false
		}
		var woke unix.Timespec // the report's total counts from here
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &woke)
		if cfg.track {
			if err := writes.start(); err != nil {
				logf(cfg, "ckpt: incremental checkpoints compare page hashes: no write tracking: %v\n", err)
				cfg.track = false
			} else {
				writes.prepare()
			}
		}
		compress := cfg.zstd || b[0]&C.CK_REQ_COMPRESS != 0
		path := imagePath(cfg, unix.Getpid())
		prev := parent(cfg, path)
		var pre *precopyRun
		if cfg.precopy {
			pre = startPrecopy(cfg, path, prev, compress)
		}
		child := int(C.ckpt_snapshot())
		switch {
		case child < 0:
			writes.wrote(image.ImageID{})
			if pre != nil {
				pre.abort()
			}
			logf(cfg, "ckpt: checkpoint failed, previous image kept: stopping the threads: %v\n", unix.Errno(-child))
		case child == 0:
			// This process was just restored from an image.
			chain.forget()
			writes.forget()
			if pre != nil {
				pre.forget()
			}
			restored = true
		default:
			checkpoint(child, cfg, compress, prev, pre, woke.Nano())
		}
		C.ckpt_finish()
		if child > 0 {
			// What writing the image allocated (buffers, the last
			// tracker) goes back to the kernel: the program's
			// resident memory shrinks back, and the next image does
			// not store these pages.
			debug.FreeOSMemory()
			if cfg.huge.after(time.Duration(C.ckpt_pause_ns)) {
				collapseHuge(fd, int(C.ckpt_track.uffd))
			}
		}
	}
}

// imagePath is where the image of process pid goes.
func imagePath(cfg *config, pid int) string {
	return filepath.Join(cfg.dir, fmt.Sprintf("%s.%d.ckpt", cfg.name, pid))
}

// parent returns the tracker of the image the next one at path is to be
// incremental on, or nil for a full image.
func parent(cfg *config, path string) *dump.Tracker {
	if cfg.chain < 2 || chain.tracker == nil || chain.length >= cfg.chain {
		return nil
	}
	if err := chain.keepParent(path); err != nil {
		logf(cfg, "ckpt: writing a full image instead of an incremental one: %v\n", err)
		return nil
	}
	return chain.tracker
}

// checkpoint writes the image of the snapshot child, incremental on prev if
// not nil; the request came at start (CLOCK_MONOTONIC ns).
func checkpoint(child int, cfg *config, compress bool, prev *dump.Tracker, pre *precopyRun, start int64) {
	defer reap(child)
	var precopied *dump.Precopy
	var how string
	if pre != nil {
		var err error
		precopied, how, err = pre.tookOver()
		if err != nil {
			pre.abort()
			logf(cfg, "ckpt: checkpoint failed, previous image kept: %v\n", err)
			return
		}
		if precopied != nil {
			defer precopied.Free()
		}
	}
	st, err := readState(child)
	if err != nil {
		if precopied != nil {
			precopied.Abort()
		}
		logf(cfg, "ckpt: checkpoint failed: reading the captured state: %v\n", err)
		return
	}
	if st.dropped > 0 {
		logf(cfg, "ckpt: %d descriptors or timers beyond the first %d and %d are not saved\n",
			st.dropped, C.CK_MAX_FDS, C.CK_MAX_TIMERS)
	}
	req := &dump.Request{Child: child, Process: st.process, Threads: st.threads, Files: st.files,
		SaveFiles: cfg.save, Compress: compress, Buffered: cfg.buffered, Track: cfg.chain > 1, Prev: prev,
		CheckPrecopy: cfg.precopyCheck}
	req.Process.Name = cfg.name
	req.Process.Created = time.Now().UnixNano()
	req.Path = imagePath(cfg, int(req.Process.PID))
	if precopied != nil {
		req.Precopy = precopied
		req.Scratch = span.Insert(req.Scratch, writes.scratch())
		for _, sp := range precopied.Scratch() {
			req.Scratch = span.Insert(req.Scratch, sp)
		}
	}
	if _, err := unix.Getrandom(req.ID[:], 0); err != nil {
		logf(cfg, "ckpt: checkpoint failed, previous image kept: choosing an image ID: %v\n", err)
		return
	}
	if cfg.track {
		var prev image.ImageID
		if req.Prev != nil {
			prev = req.Prev.Images[len(req.Prev.Images)-1].ID
		}
		req.Unwritten, err = writes.unwritten(prev)
		if err != nil {
			logf(cfg, "ckpt: comparing page hashes: %v\n", err)
		}
		req.CheckUnwritten = cfg.trackCheck
		req.Scratch = append(req.Scratch, writes.scratch())
	}
	if chain.tracker != nil {
		if sp, ok := chain.tracker.Scratch(); ok {
			req.Scratch = span.Insert(req.Scratch, sp)
		}
	}
	res, err := dump.Write(req)
	if err != nil {
		// The message names the temporary file; the previous image,
		// if any, is untouched.
		logf(cfg, "ckpt: checkpoint failed, previous image kept: %v\n", err)
		return
	}
	if req.Track {
		chain.wrote(req, res.Tracker)
		writes.wrote(req.ID)
	}
	if res.Distrusted != "" {
		logf(cfg, "ckpt: the program has %s, which can write its memory unseen by the kernel's "+
			"write tracking: incremental checkpoints compare page hashes from now on\n", res.Distrusted)
		writes.stop()
		cfg.track = false
	}
	if res.PrecopyMissed > 0 {
		logf(cfg, "ckpt: the copy before the pause missed %d changed pages\n", res.PrecopyMissed)
	}
	if res.Missed > 0 {
		logf(cfg, "ckpt: write tracking missed %d changed pages among %d it said were unwritten\n", res.Missed, res.Unread)
	}
	var now unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &now)
	ms := float64(now.Nano()-start) / 1e6
	pause := float64(st.pauseNS) / 1e6
	what := sizeString(res.Size)
	if compress {
		what += " zstd"
	}
	if req.Prev != nil {
		what += fmt.Sprintf(", incremental, %s new, %s from %d older images",
			sizeString(res.Stored), sizeString(res.Reused), len(res.Tracker.Images)-1)
		if res.Unread > 0 {
			what += fmt.Sprintf(", %s unwritten not read", sizeString(res.Unread*image.PageSize))
		}
	}
	if how != "" {
		what += ", " + how
	}
	logf(cfg, "ckpt: wrote %s (%s, %d threads, paused %.1f ms, %.1f ms in all)\n",
		req.Path, what, len(st.threads), pause, ms)
}

// reap kills and collects the snapshot child.  Its exit signal is 0, so only
// __WALL finds it; the program's own wait() never does.
func reap(child int) {
	unix.Kill(child, unix.SIGKILL)
	for {
		_, err := unix.Wait4(child, nil, unix.WALL, nil)
		if !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

func logf(cfg *config, format string, args ...any) {
	if cfg.quiet {
		return
	}
	unix.Write(2, []byte(fmt.Sprintf(format, args...)))
}

func sizeString(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
}
