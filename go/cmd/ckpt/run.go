package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

func runCmd(args []string) (int, error) {
	fs := newFlags("run", "[--dir D] [--interval DUR] [--signal SIG] [--keep N] [--compress] [--incremental N] -- PROG ARGS...",
		`Runs PROG with libckpt.so preloaded (found in $CKPT_LIB, next to this
binary, or in its Bazel runfiles).  Images go to D as PROG.PID.ckpt.  With
--interval, checkpoints every DUR (like dmtcp_launch -i); with --keep N, the
N-1 images before the newest stay as PROG.PID.ckpt.1 (newest) and up.
With --compress, every image is zstd-compressed (CKPT_COMPRESS=1).  With
--incremental N, each full image is followed by up to N-1 incremental ones
that store only the pages changed since the image before and refer to that
image, kept as PROG.PID.<ID>.ckpt, for the rest (CKPT_INCREMENTAL=N).
Signals sent to ckpt run reach PROG; the exit status is PROG's.

Examples:
  ckpt run -- ./simulate --steps 1000000
  ckpt run --dir /scratch/ckpt --interval 30m --keep 3 -- ./simulate`)
	dir := fs.String("dir", ".", "directory for images")
	interval := fs.Duration("interval", 0, "checkpoint every DUR (0: only on request)")
	sigName := fs.String("signal", "USR2", "the trigger signal")
	keep := fs.Int("keep", 1, "images to keep: the newest and N-1 older ones")
	compress := fs.Bool("compress", false, "compress every image (zstd)")
	incremental := fs.Int("incremental", 0, "chains of a full image and up to N-1 incremental ones (0: off)")
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 0, usageError{"no program to run"}
	}
	if *keep < 1 {
		return 0, usageError{"--keep must be at least 1"}
	}
	if *incremental == 1 || *incremental < 0 || (*incremental > 1 && *keep > 1) {
		// Older images kept by --keep would lose the parents that a new
		// full image's chain no longer needs.
		return 0, usageError{"--incremental takes N >= 2 and does not go with --keep"}
	}
	sig, err := parseSignal(*sigName)
	if err != nil {
		return 0, err
	}
	lib, err := findLib()
	if err != nil {
		return 0, err
	}
	absDir, err := filepath.Abs(*dir)
	if err != nil {
		return 0, err
	}
	if fi, err := os.Stat(absDir); err != nil || !fi.IsDir() {
		return 0, fmt.Errorf("image directory %q: not a directory", absDir)
	}
	prog := fs.Args()
	cmd := exec.Command(prog[0], prog[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	preload := lib
	if old := os.Getenv("LD_PRELOAD"); old != "" {
		preload += ":" + old
	}
	cmd.Env = append(os.Environ(), "LD_PRELOAD="+preload, "CKPT_DIR="+absDir,
		"CKPT_SIGNAL="+strconv.Itoa(int(sig)))
	if *compress {
		cmd.Env = append(cmd.Env, "CKPT_COMPRESS=1")
	}
	if *incremental > 1 {
		cmd.Env = append(cmd.Env, "CKPT_INCREMENTAL="+strconv.Itoa(*incremental))
	}
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs)
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting %q: %w", prog[0], err)
	}
	t := &target{pid: cmd.Process.Pid, signal: sig,
		image: filepath.Join(absDir, fmt.Sprintf("%s.%d.ckpt", filepath.Base(prog[0]), cmd.Process.Pid))}
	go forward(sigs, cmd.Process)
	if *interval > 0 {
		go periodic(t, *interval, *keep)
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return exit.ExitCode(), nil
	}
	return 0, err
}

// forward passes every signal but the ones about ourselves on to p.
func forward(sigs chan os.Signal, p *os.Process) {
	for sig := range sigs {
		if sig == syscall.SIGCHLD || sig == syscall.SIGURG {
			continue
		}
		p.Signal(sig)
	}
}

// periodic checkpoints t every interval, keeping keep images.
func periodic(t *target, interval time.Duration, keep int) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for range tick.C {
		if err := rotate(t.image, keep); err != nil {
			fmt.Fprintf(os.Stderr, "ckpt run: keeping older images: %v\n", err)
		}
		if err := t.checkpoint(0, true, max(10*interval, time.Minute)); err != nil {
			if syscall.Kill(t.pid, 0) != nil {
				return
			}
			fmt.Fprintf(os.Stderr, "ckpt run: periodic checkpoint: %v\n", err)
		}
	}
}

// rotate shifts IMAGE.1 .. IMAGE.(keep-2) up by one and links IMAGE as
// IMAGE.1, so that the next checkpoint, which replaces IMAGE, leaves keep
// images in all.
func rotate(image string, keep int) error {
	if keep < 2 {
		return nil
	}
	if _, ok := identity(image); !ok {
		return nil
	}
	for k := keep - 1; k >= 2; k-- {
		if err := os.Rename(fmt.Sprintf("%s.%d", image, k-1), fmt.Sprintf("%s.%d", image, k)); err != nil &&
			!errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	// Link under a hidden name, then rename over IMAGE.1: at no moment
	// is there one image fewer than kept (with --keep 2, removing
	// IMAGE.1 before the link left IMAGE alone for a moment).
	tmp := filepath.Join(filepath.Dir(image), "."+filepath.Base(image)+".link") // matches no image pattern
	os.Remove(tmp)
	if err := os.Link(image, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, image+".1")
}

// findLib finds libckpt.so: $CKPT_LIB, next to this binary, or in its Bazel
// runfiles.
func findLib() (string, error) {
	if p := os.Getenv("CKPT_LIB"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("CKPT_LIB: %w", err)
		}
		return filepath.Abs(p)
	}
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	candidates := []string{filepath.Join(filepath.Dir(exe), "libckpt.so"), exe + ".runfiles/ckpt/libckpt.so"}
	if rf := os.Getenv("RUNFILES_DIR"); rf != "" {
		candidates = append(candidates, filepath.Join(rf, "ckpt/libckpt.so"))
	}
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			return filepath.Abs(c)
		}
	}
	return "", fmt.Errorf("cannot find libckpt.so next to %q or in its runfiles; set CKPT_LIB", exe)
}
