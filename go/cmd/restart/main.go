// Command restart brings a checkpointed process back from its image.
//
//	restart [--pid-file FILE] [--verify-only] [--force] [--eager | --lazy] [-q] IMAGE
//
// The restored program runs with its original PID and thread IDs in new
// user, PID and mount namespaces, with this command's standard input,
// output and error.  restart stays in the foreground: signals sent to it
// reach the program, and its exit status is the program's (128+N if signal
// N killed it).  When the restore itself fails: 2 for a bad or incompatible
// image (nothing was started), 1 for any other failure.
//
// The whole image is checked before the program starts.  Where
// userfaultfd allows, the program then runs while its pages are loaded
// (those it touches first); --eager copies them all before it runs, for
// images on slow or network storage; --lazy starts it without checking
// first and checks each part of the image as it is loaded, killing the
// program (exit 2) if one is damaged.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/ckpt/ckpt/go/restart"
	"golang.org/x/sys/unix"
)

func main() {
	pidFile := flag.String("pid-file", "", "write the restored program's PID (as seen here) to `FILE`")
	verifyOnly := flag.Bool("verify-only", false, "check the whole image and this machine, start nothing")
	force := flag.Bool("force", false, "restore an image owned by another user")
	quiet := flag.Bool("q", false, "no progress display")
	eager := flag.Bool("eager", false, "copy every page before the program runs")
	lazy := flag.Bool("lazy", false, "start at once; check each part of the image as it is loaded")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: restart [--pid-file FILE] [--verify-only] [--force] [--eager | --lazy] [-q] IMAGE")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	path := flag.Arg(0)
	// Under `bazel run`, the working directory is the runfiles tree; a
	// relative path means one in the user's directory.
	if wd := os.Getenv("BUILD_WORKING_DIRECTORY"); wd != "" && !filepath.IsAbs(path) {
		path = filepath.Join(wd, path)
	}
	if *eager && *lazy {
		fmt.Fprintln(os.Stderr, "restart: --eager and --lazy do not go together")
		os.Exit(2)
	}
	o := &restart.Options{Force: *force, Eager: *eager, Lazy: *lazy,
		Warn: func(msg string) { fmt.Fprintf(os.Stderr, "restart: warning: %s\n", msg) }}
	if !*quiet && isTerminal(os.Stderr) {
		o.Progress = restart.TerminalProgress(os.Stderr, "checking "+filepath.Base(path))
	}
	if *verifyOnly {
		if err := restart.Verify(path, o); err != nil {
			fmt.Fprintf(os.Stderr, "restart: %q: %v\n", path, err)
			os.Exit(2)
		}
		fmt.Printf("%s: ok\n", path)
		return
	}
	if *pidFile != "" {
		// restart moves into the program's working directory.
		if abs, err := filepath.Abs(*pidFile); err == nil {
			*pidFile = abs
		}
		o.Started = func(pid int) {
			if err := os.WriteFile(*pidFile, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
				fmt.Fprintf(os.Stderr, "restart: writing %q: %v\n", *pidFile, err)
			}
		}
	}
	status, err := restart.Run(path, o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "restart: %q: %v\n", path, err)
		if errors.Is(err, restart.ErrBadImage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
	os.Exit(status)
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
