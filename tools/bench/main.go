// Command bench measures checkpoint and restart of tests/progs/bigheap
// against this machine's own baselines, and prints a table.
//
//	bazel run //tools/bench -- [--sizes 64,512,2048] [--modes full,halfzero,sparse]
//	    [--zmodes full,text] [--incremental full] [--repeat 3] [--dir DIR]
//
// It first prints what the library costs a program that never checkpoints
// (--sizes "" prints only that).
//
// For each size (MiB of heap) and mode it reports the pause of the first
// checkpoint and of the next one ("next": after the library's pass that
// moves memory into huge pages, go/lib/hugepages.go), the whole first
// checkpoint time (from the library's own report) against writing as many
// bytes with fsync ("dd": the faster of through the page cache and past
// it), the image size, and the time from starting
// restart until the program runs its own code again: "run" by default
// (every checksum checked first, pages loaded as the program runs, with
// userfaultfd), "lazy" with --lazy (nothing checked first; the median of
// five starts) and "eager" with --eager (every page copied first); each
// restored program must then pass its own check of all its memory.  The baselines, measured in the same run
// in DIR: one read of the image from the page cache ("read") and a memory
// copy of the image's size into fresh memory ("copy", the floor of a
// restore that copies).  The pause, checkpoint, dd, run and read columns
// and their ratios are medians of --repeat checkpoints (the first one's
// restarts give the lazy and eager columns), each timed against dd right
// after it and each restart against a read right after it: the disk's
// speed here changes by more than the margins from one minute to the next.
//
// A third table times an incremental checkpoint (CKPT_INCREMENTAL) taken
// two ticks after a full one, for the modes in --incremental: the program
// changes one word in every 64th page per tick.  "hash" compares every
// page's hash with the last image's (CKPT_TRACK_WRITES=0), "kernel" asks
// the kernel which pages were written (go/lib/tracking.go); "run" and
// "lazy" restart the incremental image (its pages mostly in its parent).
//
// A second table does the same with compressed images (CKPT_COMPRESS=1) for
// the modes in --zmodes ("text": pages that compress about 2:1), against
// gzip -6 of the uncompressed image of the same size and mode (DMTCP
// compresses its images with gzip at its default level, in one stream).
package main

import (
	"bufio"
	"cmp"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	sizes := flag.String("sizes", "64,512,2048", "heap sizes in MiB")
	modes := flag.String("modes", "full,halfzero,sparse", "full: all pages random; halfzero: half zero; sparse: half never touched")
	zmodes := flag.String("zmodes", "full,text", "modes to measure compressed too (text: compresses 2:1)")
	imodes := flag.String("incremental", "full", "modes to measure incremental checkpoints of")
	repeat = flag.Int("repeat", 3, "checkpoints and restarts whose medians the first table shows")
	dir := flag.String("dir", os.TempDir(), "where images and baseline files go")
	flag.Parse()
	root, err := runfiles()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	if err := idle(root); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	fmt.Printf("%-6s %-8s %8s %7s %7s %6s %7s %9s %7s %6s %8s %7s %7s %6s %10s\n",
		"MiB", "mode", "pause ms", "next ms", "ckpt s", "dd s", "ckpt/dd", "image MiB",
		"run s", "read s", "run/read", "lazy s", "eager s", "copy s", "eager/copy")
	if *sizes == "" {
		return
	}
	var zrows []string
	for _, s := range strings.Split(*sizes, ",") {
		ms := strings.Split(*modes, ",")
		for _, m := range strings.Split(*zmodes, ",") {
			if m != "" && !slices.Contains(ms, m) {
				ms = append(ms, m)
			}
		}
		for _, m := range ms {
			if m == "" {
				continue
			}
			z := slices.Contains(strings.Split(*zmodes, ","), m)
			zrow, err := one(root, *dir, s, m, slices.Contains(strings.Split(*modes, ","), m), z)
			if err != nil {
				fmt.Fprintf(os.Stderr, "bench: %s MiB %s: %v\n", s, m, err)
				os.Exit(1)
			}
			if z {
				zrows = append(zrows, zrow)
			}
		}
	}
	if *imodes != "" {
		fmt.Printf("\nincremental checkpoint after 2 ticks (1/64 of the pages written each), hash compare against kernel tracking:\n")
		fmt.Printf("%-6s %-8s %9s %7s %9s %7s %9s %7s %7s %7s\n",
			"MiB", "mode", "image MiB", "hash ms", "pause ms", "kern ms", "pause ms", "hash/kern", "run s", "lazy s")
		for _, s := range strings.Split(*sizes, ",") {
			for _, m := range strings.Split(*imodes, ",") {
				if m == "" {
					continue
				}
				if err := incremental(root, *dir, s, m); err != nil {
					fmt.Fprintf(os.Stderr, "bench: incremental %s MiB %s: %v\n", s, m, err)
					os.Exit(1)
				}
			}
		}
	}
	if len(zrows) == 0 {
		return
	}
	fmt.Printf("\ncompressed (zstd, every CPU) against gzip -6 of the uncompressed image:\n")
	fmt.Printf("%-6s %-8s %8s %7s %9s %6s %9s %7s %7s %7s\n",
		"MiB", "mode", "pause ms", "ckpt s", "image MiB", "gzip s", "gzip MiB", "gzip/ck", "run s", "run/raw")
	for _, r := range zrows {
		fmt.Print(r)
	}
}

var repeat *int

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

// one measures one size and mode: a table row if plain, and the row of the
// compressed table it returns if zstd.
func one(root, dir, size, mode string, plain, zstd bool) (string, error) {
	work, err := os.MkdirTemp(dir, "bench")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	then := noSecond
	if plain {
		then = afterHuge
	}
	ck, err := checkpoint(root, work, size, mode, then)
	if err != nil {
		return "", err
	}
	var raw float64 // s: restarting the uncompressed image
	if plain {
		// The disk's speed and this machine's load change from one
		// minute to the next: each ratio compares measurements taken
		// right after each other, and the row shows the medians of
		// *repeat of them.
		var m medians
		for i := 0; i < *repeat; i++ {
			c := ck
			if i > 0 {
				if c, err = checkpoint(root, work, size, mode, noSecond); err != nil {
					return "", err
				}
			}
			if err := m.add(root, work, c); err != nil {
				return "", err
			}
			if i > 0 {
				os.Remove(c.image)
			}
		}
		lazy, err := lazyTime(root, ck.image)
		if err != nil {
			return "", err
		}
		eager, err := restartTime(root, ck.image, "--eager")
		if err != nil {
			return "", err
		}
		raw = median(m.run)
		cp := copyBaseline(ck.size)
		fmt.Printf("%-6s %-8s %8.1f %7.1f %7.2f %6.2f %7.2f %9.1f %7.3f %6.3f %8.2f %7.3f %7.3f %6.3f %10.2f\n",
			size, mode, median(m.pause), ck.next, median(m.total), median(m.dd), median(m.ckptDD), mib(ck.size),
			median(m.run), median(m.read), median(m.runRead), lazy.Seconds(), eager.Seconds(),
			cp.Seconds(), eager.Seconds()/cp.Seconds())
	}
	if !zstd {
		return "", nil
	}
	plainImage := filepath.Join(work, "plain.ckpt")
	if err := os.Rename(ck.image, plainImage); err != nil {
		return "", err
	}
	zk, err := checkpoint(root, work, size, mode, noSecond, "CKPT_COMPRESS=1")
	if err != nil {
		return "", err
	}
	zrun, err := restartTime(root, zk.image)
	if err != nil {
		return "", err
	}
	if !plain {
		run, err := restartTime(root, plainImage)
		if err != nil {
			return "", err
		}
		raw = run.Seconds()
	}
	gz, gzSize, err := gzipBaseline(plainImage, filepath.Join(work, "gz"))
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%-6s %-8s %8.1f %7.2f %9.1f %6.2f %9.1f %7.1f %7.3f %7.2f\n",
		size, mode, zk.pause, zk.total, mib(zk.size), gz.Seconds(), mib(gzSize), gz.Seconds()/zk.total,
		zrun.Seconds(), zrun.Seconds()/raw), nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// medians collects a row's measurements, one of each per checkpoint.
type medians struct {
	pause, total, dd, ckptDD, run, read, runRead []float64
}

// add measures checkpoint c against writing as many bytes right after it,
// and restarting from it against one read of its image.
func (m *medians) add(root, work string, c checkpointed) error {
	dd, err := ddBaseline(filepath.Join(work, "dd"), c.size)
	if err != nil {
		return err
	}
	run, err := restartTime(root, c.image)
	if err != nil {
		return err
	}
	read, err := readBaseline(c.image)
	if err != nil {
		return err
	}
	m.pause, m.total, m.dd = append(m.pause, c.pause), append(m.total, c.total), append(m.dd, dd.Seconds())
	m.ckptDD = append(m.ckptDD, c.total/dd.Seconds())
	m.run, m.read = append(m.run, run.Seconds()), append(m.read, read.Seconds())
	m.runRead = append(m.runRead, run.Seconds()/read.Seconds())
	return nil
}

func median[T cmp.Ordered](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// incremental prints a row of the incremental table.
func incremental(root, dir, size, mode string) error {
	var cks [2]checkpointed
	for i, track := range []string{"0", "1"} {
		work, err := os.MkdirTemp(dir, "bench")
		if err != nil {
			return err
		}
		defer os.RemoveAll(work)
		cks[i], err = checkpoint(root, work, size, mode, afterTicks,
			"CKPT_INCREMENTAL=100", "CKPT_HUGEPAGES=0", "CKPT_TRACK_WRITES="+track)
		if err != nil {
			return err
		}
	}
	hash, kern := cks[0], cks[1]
	run, err := restartTime(root, kern.image)
	if err != nil {
		return err
	}
	lazy, err := lazyTime(root, kern.image)
	if err != nil {
		return err
	}
	fmt.Printf("%-6s %-8s %9.1f %7.1f %9.1f %7.1f %9.1f %7.2f %7.3f %7.3f\n", size, mode, mib(kern.nextSize),
		hash.nextTotal*1000, hash.next, kern.nextTotal*1000, kern.next, hash.nextTotal/kern.nextTotal,
		run.Seconds(), lazy.Seconds())
	return nil
}

// checkpointed is what one checkpoint of bigheap gave, and a second one.
type checkpointed struct {
	image        string
	size         int64
	pause, total float64 // ms, s
	next         float64 // ms: the second checkpoint's pause
	nextTotal    float64 // s
	nextSize     int64
}

// When a second checkpoint is taken.
type second int

const (
	noSecond   second = iota
	afterHuge         // once the library moved memory into huge pages
	afterTicks        // two ticks after the first
)

// checkpoint runs bigheap with env added, checkpoints it, and kills it.
// With afterHuge it waits for the library to have moved memory into huge
// pages after the first checkpoint (go/lib/hugepages.go) and checkpoints
// again: the pause users see from the second checkpoint on.
func checkpoint(root, work, size, mode string, then second, env ...string) (checkpointed, error) {
	var ck checkpointed
	prog := exec.Command(filepath.Join(root, "tests/progs/bigheap"), tickMS(size), size, mode, "mark")
	prog.Env = append(append(os.Environ(), "LD_PRELOAD="+filepath.Join(root, "libckpt.so"), "CKPT_DIR="+work), env...)
	out, _ := prog.StdoutPipe()
	errs, _ := prog.StderrPipe()
	if err := prog.Start(); err != nil {
		return ck, err
	}
	defer func() {
		prog.Process.Kill()
		prog.Wait()
	}()
	lines := bufio.NewReader(out)
	if err := ticked(lines); err != nil {
		return ck, fmt.Errorf("the program did not start: %w", err)
	}
	ticks := make(chan string, 1000)
	go func() {
		defer close(ticks)
		for {
			line, err := lines.ReadString('\n')
			if err != nil {
				return
			}
			ticks <- line
		}
	}()
	reports := bufio.NewReader(errs)
	if err := asleepWarm(size); err != nil {
		return ck, err
	}
	prog.Process.Signal(syscall.SIGUSR2)
	m, err := nextReport(reports)
	if err != nil {
		return ck, err
	}
	ck.image = m[1]
	ck.pause, _ = strconv.ParseFloat(m[2], 64)
	ms, _ := strconv.ParseFloat(m[3], 64)
	ck.total = ms / 1000
	fi, err := os.Stat(ck.image)
	if err != nil {
		return ck, err
	}
	ck.size = fi.Size()
	switch then {
	case noSecond:
		return ck, nil
	case afterHuge:
		if err := hugeSettled(prog.Process.Pid); err != nil {
			return ck, err
		}
	case afterTicks:
		if err := nextTick(ticks); err != nil {
			return ck, err
		}
	}
	// Right after a tick, as the first time.
	if err := nextTick(ticks); err != nil {
		return ck, err
	}
	if err := asleepWarm(size); err != nil {
		return ck, err
	}
	prog.Process.Signal(syscall.SIGUSR2)
	m, err = nextReport(reports)
	if err != nil {
		return ck, err
	}
	ck.next, _ = strconv.ParseFloat(m[2], 64)
	ms, _ = strconv.ParseFloat(m[3], 64)
	ck.nextTotal = ms / 1000
	if fi, err = os.Stat(m[1]); err != nil {
		return ck, err
	}
	ck.nextSize = fi.Size()
	return ck, nil
}

// nextTick drops the lines the program printed so far and waits for its
// next tick.
func nextTick(lines <-chan string) error {
	for len(lines) > 0 {
		<-lines
	}
	for line := range lines {
		if _, err := strconv.Atoi(strings.TrimSpace(line)); err == nil {
			return nil
		}
	}
	return fmt.Errorf("the program stopped")
}

// nextReport reads the library's next report of an image.
func nextReport(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	m := report.FindStringSubmatch(line)
	if m == nil {
		return nil, fmt.Errorf("unexpected report %q", line)
	}
	return m, nil
}

var anonHuge = regexp.MustCompile(`AnonHugePages:\s+\d+`)

// hugeSettled waits until pid's memory in huge pages has not changed for a
// second: the library's pass is over (2 MiB take it milliseconds).
func hugeSettled(pid int) error {
	last, same := "", 0
	for same < 10 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		if err != nil {
			return err
		}
		cur := anonHuge.FindString(string(b))
		if cur == last {
			same++
		} else {
			last, same = cur, 0
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// restartTime restarts image and returns the time until the program runs
// its own code again (its first "wake" line: the restored thread left the
// library's signal handler), after making sure that the program's next
// check of all its memory passes.
func restartTime(root, image string, flags ...string) (time.Duration, error) {
	// Checkpoints write past the page cache (go/dump/direct.go): the
	// images are read into it first, as readBaseline finds them.
	images, _ := filepath.Glob(filepath.Join(filepath.Dir(image), "*.ckpt"))
	for _, f := range images {
		if _, err := readBaseline(f); err != nil {
			return 0, err
		}
	}
	pidFile := image + ".pid"
	defer os.Remove(pidFile)
	start := time.Now()
	rs := exec.Command(filepath.Join(root, "restart"),
		append(append([]string{"-q", "--pid-file", pidFile}, flags...), image)...)
	rout, _ := rs.StdoutPipe()
	if err := rs.Start(); err != nil {
		return 0, err
	}
	defer func() {
		rs.Process.Signal(syscall.SIGKILL)
		rs.Wait()
		// The program dies with restart; freeing its memory takes the
		// kernel a while, which the next measurement must not share.
		if b, err := os.ReadFile(pidFile); err == nil {
			for i := 0; i < 1000 && exists("/proc/"+strings.TrimSpace(string(b))); i++ {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}()
	r := bufio.NewReader(rout)
	line, err := r.ReadString('\n')
	took := time.Since(start)
	if err != nil || line != "wake\n" {
		return 0, fmt.Errorf("restart: the restored program did not run (%q, %v)", line, err)
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil || strings.HasPrefix(line, "FAIL") || strings.Contains(line, "mismatch") {
			return 0, fmt.Errorf("restart: the restored program's memory check failed: %q %v", line, err)
		}
		if _, err := strconv.Atoi(strings.TrimSpace(line)); err == nil {
			break // a tick: the check passed
		}
	}
	return took, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// lazyTime is the median of five restartTime with --lazy: a few tens of
// milliseconds, which a busy moment of this machine would double.
func lazyTime(root, image string) (time.Duration, error) {
	var ts []time.Duration
	for range 5 {
		t, err := restartTime(root, image, "--lazy")
		if err != nil {
			return 0, err
		}
		ts = append(ts, t)
	}
	return median(ts), nil
}

// asleepWarm waits, after the program printed a tick, until it surely
// sleeps (see tickMS): checkpointed there, a restored program's first line
// is "wake".  Checkpointed between its tick and its sleep, it would sleep a
// whole tick first (restartTime refuses that).  Then it frees as much
// memory as the image can need (warm.go).
func asleepWarm(size string) error {
	time.Sleep(50 * time.Millisecond)
	mib, _ := strconv.Atoi(size)
	return warm(int64(mib) << 20)
}

// tickMS is bigheap's tick for size MiB: long enough for the library to
// copy the memory before the pause (go/lib/precopy.go), which writes it
// to the image as it goes (up to 6.5 s for 2 GiB on this disk's slow
// days), after the bench's warm (up to 2.5 s), while the program sleeps
// after its tick, so that the snapshot finds it asleep, not in the next
// tick's pass over all of its memory.
func tickMS(size string) string {
	mib, _ := strconv.Atoi(size)
	return strconv.Itoa(max(1000, 5*mib+3000))
}

// ticked reads the program's first tick.
func ticked(r *bufio.Reader) error {
	line, err := r.ReadString('\n')
	if err == nil && line != "1\n" {
		err = fmt.Errorf("got %q, wanted the first tick", line)
	}
	return err
}

// copyBaseline copies n bytes into fresh memory: what restoring by copying
// costs at least.
func copyBaseline(n int64) time.Duration {
	src := make([]byte, 4<<20)
	for i := range src {
		src[i] = byte(i * 13)
	}
	start := time.Now()
	dst := make([]byte, n)
	for off := int64(0); off < n; off += int64(len(src)) {
		copy(dst[off:], src)
	}
	return time.Since(start)
}

// idle prints what the library costs a trivial C program that never
// checkpoints: start-up to exit time (mean of many runs) and resident
// memory once the library's runtime is up, without and with it.
func idle(root string) error {
	prog := filepath.Join(root, "tests/progs/trivial")
	lib := "LD_PRELOAD=" + filepath.Join(root, "libckpt.so")
	run := func(env []string, args ...string) (time.Duration, string, error) {
		cmd := exec.Command(prog, args...)
		cmd.Env = env
		start := time.Now()
		out, err := cmd.Output()
		return time.Since(start), strings.TrimSpace(string(out)), err
	}
	const runs = 300
	var took [2]time.Duration
	var rss [2]int
	for i, env := range [][]string{{}, {lib}} {
		run(env) // warm the page cache
		for k := 0; k < runs; k++ {
			d, _, err := run(env)
			if err != nil {
				return fmt.Errorf("running %s: %w", prog, err)
			}
			took[i] += d
		}
		_, out, err := run(env, "rss")
		if err != nil {
			return fmt.Errorf("running %s rss: %w", prog, err)
		}
		if _, err := fmt.Sscanf(out, "%d kB", &rss[i]); err != nil {
			return fmt.Errorf("%s rss printed %q", prog, out)
		}
	}
	without, with := took[0].Seconds()*1000/runs, took[1].Seconds()*1000/runs
	fmt.Printf("idle cost on a trivial C program (%d runs each):\n", runs)
	fmt.Printf("  start to exit: %.2f ms without the library, %.2f ms with it: +%.2f ms\n", without, with, with-without)
	fmt.Printf("  resident:      %d KiB without, %d KiB with: +%d KiB\n\n", rss[0], rss[1], rss[1]-rss[0])
	return nil
}

// writeBaseline writes n bytes in 1 MiB writes and fsyncs, as dd
// conv=fdatasync, or with direct as dd oflag=direct conv=fdatasync (n
// rounded up to whole pages), and returns the time.
func writeBaseline(path string, n int64, direct bool) (time.Duration, error) {
	// Page-aligned, as O_DIRECT wants it.
	buf, err := syscall.Mmap(-1, 0, 1<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS)
	if err != nil {
		return 0, err
	}
	defer syscall.Munmap(buf)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if direct {
		flags |= syscall.O_DIRECT
		n = (n + 4095) &^ 4095
	}
	start := time.Now()
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	for done := int64(0); done < n; done += int64(len(buf)) {
		if _, err := f.Write(buf[:min(int64(len(buf)), n-done)]); err != nil {
			return 0, err
		}
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// ddBaseline writes n bytes at path through the page cache and past it,
// each right after freeing that much memory (warm.go), and returns the
// faster: what the disk allows.
func ddBaseline(path string, n int64) (time.Duration, error) {
	defer os.Remove(path)
	var best time.Duration
	for _, direct := range []bool{false, true} {
		if err := warm(n); err != nil {
			return 0, err
		}
		t, err := writeBaseline(path, n, direct)
		if err != nil {
			return 0, err
		}
		if best == 0 || t < best {
			best = t
		}
	}
	return best, nil
}

// gzipBaseline compresses the file at path with gzip -6 into out, and
// returns the time and the compressed size.
func gzipBaseline(path, out string) (time.Duration, int64, error) {
	f, err := os.Create(out)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	cmd := exec.Command("gzip", "-6", "-c", path)
	cmd.Stdout = f
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, 0, fmt.Errorf("gzip: %w", err)
	}
	took := time.Since(start)
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	return took, fi.Size(), nil
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
