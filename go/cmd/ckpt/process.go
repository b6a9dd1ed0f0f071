package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// target is a running process that uses libckpt.so.
type target struct {
	pid    int            // as this process sees it
	image  string         // where its library writes images
	signal syscall.Signal // its trigger
}

// findTarget checks that pid runs libckpt.so and works out, as the library
// does, where its images go and which signal triggers it.
func findTarget(pid int) (*target, error) {
	proc := fmt.Sprintf("/proc/%d", pid)
	env, err := os.ReadFile(proc + "/environ")
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no process %d", pid)
	}
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	vars := map[string]string{}
	for _, kv := range bytes.Split(env, []byte{0}) {
		if k, v, ok := strings.Cut(string(kv), "="); ok {
			vars[k] = v
		}
	}
	maps, _ := os.ReadFile(proc + "/maps")
	if !strings.Contains(vars["LD_PRELOAD"], "libckpt") && !bytes.Contains(maps, []byte("libckpt")) {
		return nil, fmt.Errorf("process %d does not run libckpt.so (start it with `ckpt run`)", pid)
	}
	t := &target{pid: pid, signal: syscall.SIGUSR2}
	if s := vars["CKPT_SIGNAL"]; s != "" {
		if t.signal, err = parseSignal(s); err != nil {
			return nil, err
		}
	}
	cmdline, err := os.ReadFile(proc + "/cmdline")
	if err != nil {
		return nil, err
	}
	argv0, _, _ := bytes.Cut(cmdline, []byte{0})
	dir := vars["CKPT_DIR"]
	if !filepath.IsAbs(dir) {
		// The library resolves it against the directory the program
		// started in; the current one is the best guess from outside.
		cwd, err := os.Readlink(proc + "/cwd")
		if err != nil {
			return nil, err
		}
		dir = filepath.Join(cwd, dir)
	}
	t.image = filepath.Join(dir, fmt.Sprintf("%s.%d.ckpt", filepath.Base(string(argv0)), innerPID(pid)))
	return t, nil
}

// innerPID is pid as the process itself sees it: restored processes run in
// a PID namespace of their own, with their original PID.
func innerPID(pid int) int {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return pid
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(rest)
			if n, err := strconv.Atoi(f[len(f)-1]); err == nil {
				return n
			}
		}
	}
	return pid
}

// parseSignal accepts "12", "USR2" or "SIGUSR2".
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	if sig := unix.SignalNum("SIG" + strings.TrimPrefix(strings.ToUpper(s), "SIG")); sig != 0 {
		return sig, nil
	}
	return 0, usageError{fmt.Sprintf("%q is not a signal", s)}
}

// identity tells one image file from the next: a checkpoint renames a new
// file over the old one.
func identity(path string) (ino uint64, ok bool) {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return 0, false
	}
	return st.Ino, true
}

// Options a checkpoint request carries as the queued signal's value:
// CK_REQ_* in cc_shim/shim.h.
const reqCompress = 2

// checkpoint triggers t, with options (req* bits) if any, and, if wait,
// waits until an image that serves the request is in place (one that was
// being written when the request came does not count).
func (t *target) checkpoint(options int32, wait bool, timeout time.Duration) error {
	before, had := identity(t.image)
	sent := time.Now().UnixNano()
	if err := sigqueue(t.pid, t.signal, options); err != nil {
		return fmt.Errorf("signalling process %d: %w", t.pid, err)
	}
	if !wait {
		return nil
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if now, ok := identity(t.image); ok && (!had || now != before) {
			if servedBy(t.image, sent, options) {
				return nil
			}
			before, had = now, true
		}
		if syscall.Kill(t.pid, 0) != nil {
			return fmt.Errorf("process %d ended before its image %q was written", t.pid, t.image)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no new image %q after %v (see the program's stderr)", t.image, timeout)
}

// sigqueue sends sig to pid with value, as sigqueue(3) does: the library's
// handler reads the value (si_code SI_QUEUE) as the checkpoint's options.
func sigqueue(pid int, sig syscall.Signal, value int32) error {
	var info [128]byte // siginfo_t for SI_QUEUE: signo, errno, code, pad, pid, uid, value
	le := binary.LittleEndian
	le.PutUint32(info[0:], uint32(sig))
	le.PutUint32(info[8:], uint32(0xffffffff)) // SI_QUEUE (-1)
	le.PutUint32(info[16:], uint32(os.Getpid()))
	le.PutUint32(info[20:], uint32(os.Getuid()))
	le.PutUint32(info[24:], uint32(value))
	_, _, errno := syscall.Syscall(unix.SYS_RT_SIGQUEUEINFO, uintptr(pid), uintptr(sig),
		uintptr(unsafe.Pointer(&info[0])))
	if errno != 0 {
		return errno
	}
	return nil
}

// servedBy reports whether the image at path serves a request sent at Unix
// time ns with options: taken at or after it, and compressed if asked.
func servedBy(path string, ns int64, options int32) bool {
	im, err := readMeta(path)
	return err == nil && im.Process.Created >= ns && (options&reqCompress == 0 || len(im.Segments) > 0)
}
