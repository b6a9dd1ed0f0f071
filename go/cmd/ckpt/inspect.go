package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ckpt/ckpt/go/inspect"
	"github.com/ckpt/ckpt/go/restart"
	"golang.org/x/sys/unix"
)

func inspectCmd(args []string) (int, error) {
	fs := newFlags("inspect", "[--json] IMAGE", `Checks IMAGE and shows its header, threads, descriptors and memory areas
(in /proc/PID/maps terms), or with --json one JSON document (docs/ckpt-inspect.md).

Example:
  ckpt inspect --json hello.4242.ckpt | python3 -m json.tool`)
	asJSON := fs.Bool("json", false, "print JSON")
	path, err := oneArg(fs, args, "IMAGE")
	if err != nil {
		return 0, err
	}
	im, h, err := inspect.Open(path)
	if err != nil {
		return 0, badImageError{fmt.Errorf("%q: %w", path, err)}
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	if *asJSON {
		return 0, inspect.JSON(w, path, im, h)
	}
	inspect.Text(w, path, im, h)
	return 0, nil
}

func verifyCmd(args []string) (int, error) {
	fs := newFlags("verify", "IMAGE", `Checks every checksum of IMAGE and that this machine can restore it
(architecture, vDSO layout, owner), without restoring anything.

Example:
  ckpt verify job.4242.ckpt && ckpt restart job.4242.ckpt`)
	force := fs.Bool("force", false, "accept an image owned by another user")
	quiet := fs.Bool("q", false, "no progress display")
	path, err := oneArg(fs, args, "IMAGE")
	if err != nil {
		return 0, err
	}
	if err := restart.Verify(path, options(*force, *quiet, "checking "+filepath.Base(path))); err != nil {
		return 0, badImageError{fmt.Errorf("%q: %w", path, err)}
	}
	fmt.Printf("%s: ok\n", path)
	return 0, nil
}

// options are the restart options every command uses: progress on a
// terminal unless quiet, warnings on stderr.
func options(force, quiet bool, what string) *restart.Options {
	o := &restart.Options{Force: force,
		Warn: func(msg string) { fmt.Fprintf(os.Stderr, "ckpt: warning: %s\n", msg) }}
	if _, err := unix.IoctlGetTermios(2, unix.TCGETS); err == nil && !quiet {
		o.Progress = restart.TerminalProgress(os.Stderr, what)
	}
	return o
}

// newFlags makes a flag set whose --help prints usage, a description and
// the flags.
func newFlags(name, synopsis, help string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: ckpt %s %s\n\n%s\n\nflags:\n", name, synopsis, help)
		fs.PrintDefaults()
	}
	return fs
}

// errHelpShown ends a command that printed its --help: exit 0.
var errHelpShown = errors.New("help shown")

// parse parses flags; --help ends the command with status 0.
func parse(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return errHelpShown
	}
	if err != nil {
		return usageError{err.Error()}
	}
	return nil
}

// oneArg parses flags and returns the single positional argument.
func oneArg(fs *flag.FlagSet, args []string, what string) (string, error) {
	if err := parse(fs, args); err != nil {
		return "", err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return "", usageError{"expected one " + what}
	}
	return fs.Arg(0), nil
}
