// Command bench measures checkpoint and restart of tests/progs/bigheap
// against this machine's own baselines, and prints one table.
//
//	bazel run //tools/bench -- [--sizes 64,512,2048] [--modes full,halfzero,sparse] [--dir DIR]
//
// For each size (MiB of heap) and mode it reports the pause and the whole
// checkpoint time (from the library's own report), the image size, the time
// from starting restart to the program's first tick (which includes one
// checksum pass over the heap), and the baselines measured in the same run
// in DIR: writing the image's bytes with fsync ("dd"), and one read of the
// image from the page cache.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	sizes := flag.String("sizes", "64,512,2048", "heap sizes in MiB")
	modes := flag.String("modes", "full,halfzero,sparse", "full: all pages random; halfzero: half zero; sparse: half never touched")
	dir := flag.String("dir", os.TempDir(), "where images and baseline files go")
	flag.Parse()
	root, err := runfiles()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	fmt.Printf("%-6s %-8s %8s %9s %9s %9s %8s %9s %9s\n",
		"MiB", "mode", "pause ms", "ckpt s", "image MiB", "restart s", "dd s", "ckpt/dd", "read s")
	for _, s := range strings.Split(*sizes, ",") {
		for _, m := range strings.Split(*modes, ",") {
			if err := one(root, *dir, s, m); err != nil {
				fmt.Fprintf(os.Stderr, "bench: %s MiB %s: %v\n", s, m, err)
				os.Exit(1)
			}
		}
	}
}

func runfiles() (string, error) {
	if d := os.Getenv("RUNFILES_DIR"); d != "" {
		return filepath.Join(d, "ckpt"), nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	return exe + ".runfiles/ckpt", nil
}

var report = regexp.MustCompile(`ckpt: wrote (\S+) \(.*paused ([0-9.]+) ms, ([0-9.]+) ms in all\)`)

func one(root, dir, size, mode string) error {
	work, err := os.MkdirTemp(dir, "bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	prog := exec.Command(filepath.Join(root, "tests/progs/bigheap"), "1000", size, mode)
	prog.Env = append(os.Environ(), "LD_PRELOAD="+filepath.Join(root, "libckpt.so"), "CKPT_DIR="+work)
	out, _ := prog.StdoutPipe()
	errs, _ := prog.StderrPipe()
	if err := prog.Start(); err != nil {
		return err
	}
	defer prog.Process.Kill()
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		return fmt.Errorf("the program did not start: %w", err)
	}
	prog.Process.Signal(syscall.SIGUSR2)
	line, err := bufio.NewReader(errs).ReadString('\n')
	if err != nil {
		return err
	}
	m := report.FindStringSubmatch(line)
	if m == nil {
		return fmt.Errorf("unexpected report %q", line)
	}
	prog.Process.Kill()
	prog.Wait()
	image := m[1]
	pause, _ := strconv.ParseFloat(m[2], 64)
	total, _ := strconv.ParseFloat(m[3], 64)
	fi, err := os.Stat(image)
	if err != nil {
		return err
	}

	start := time.Now()
	rs := exec.Command(filepath.Join(root, "restart"), "-q", image)
	rout, _ := rs.StdoutPipe()
	if err := rs.Start(); err != nil {
		return err
	}
	if _, err := bufio.NewReader(rout).ReadString('\n'); err != nil {
		return fmt.Errorf("the restored program did not tick: %w", err)
	}
	restart := time.Since(start)
	rs.Process.Signal(syscall.SIGKILL)
	rs.Wait()

	dd, err := writeBaseline(filepath.Join(work, "dd"), fi.Size())
	if err != nil {
		return err
	}
	read, err := readBaseline(image)
	if err != nil {
		return err
	}
	fmt.Printf("%-6s %-8s %8.1f %9.2f %9.1f %9.2f %8.2f %9.2f %9.2f\n", size, mode, pause, total/1000,
		float64(fi.Size())/(1<<20), restart.Seconds(), dd.Seconds(), total/1000/dd.Seconds(), read.Seconds())
	return nil
}

// writeBaseline writes n bytes in 1 MiB writes and fsyncs, as dd conv=fdatasync.
func writeBaseline(path string, n int64) (time.Duration, error) {
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	start := time.Now()
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	for done := int64(0); done < n; done += int64(len(buf)) {
		if _, err := f.Write(buf[:min(int64(len(buf)), n-done)]); err != nil {
			return 0, err
		}
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	f.Close()
	return time.Since(start), nil
}

// readBaseline reads the whole file once (after restart, it is in the page cache).
func readBaseline(path string) (time.Duration, error) {
	start := time.Now()
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 4<<20)
	for {
		n, err := f.Read(buf)
		if n == 0 || err != nil {
			break
		}
	}
	return time.Since(start), nil
}
