package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/ckpt/ckpt/go/image"
	"github.com/ckpt/ckpt/go/restart"
)

func restartCmd(args []string) (int, error) {
	fs := newFlags("restart", "[--pid-file F] [--force] [--eager | --lazy] (IMAGE | --dir D)",
		`Restarts a process from IMAGE, or from the newest complete image in D, with
its original PID in new namespaces.  ckpt restart stays in the foreground,
passes signals on, and exits with the program's status.  The image is
checked, then the program runs while its pages are loaded (with
userfaultfd); --eager loads them all first (slow or network storage);
--lazy starts at once and checks each part as it is loaded.

Examples:
  ckpt restart hello.4242.ckpt
  ckpt restart --dir /scratch/ckpt    # the newest image there`)
	dir := fs.String("dir", "", "restart the newest complete image in this directory")
	pidFile := fs.String("pid-file", "", "write the restored program's PID to this file")
	force := fs.Bool("force", false, "restore an image owned by another user")
	quiet := fs.Bool("q", false, "no progress display")
	eager := fs.Bool("eager", false, "copy every page before the program runs")
	lazy := fs.Bool("lazy", false, "start at once; check each part of the image as it is loaded")
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	if *eager && *lazy {
		return 0, usageError{"--eager and --lazy do not go together"}
	}
	var path string
	switch {
	case *dir != "" && fs.NArg() == 0:
		p, err := newestImage(*dir)
		if err != nil {
			return 0, err
		}
		path = p
	case *dir == "" && fs.NArg() == 1:
		path = fs.Arg(0)
	default:
		fs.Usage()
		return 0, usageError{"give one IMAGE or --dir"}
	}
	if wd := os.Getenv("BUILD_WORKING_DIRECTORY"); wd != "" && !filepath.IsAbs(path) {
		path = filepath.Join(wd, path)
	}
	o := options(*force, *quiet, "checking "+filepath.Base(path))
	o.Eager, o.Lazy = *eager, *lazy
	if *pidFile != "" {
		abs, err := filepath.Abs(*pidFile)
		if err != nil {
			return 0, err
		}
		o.Started = func(pid int) { os.WriteFile(abs, []byte(strconv.Itoa(pid)+"\n"), 0o644) }
	}
	status, err := restart.Run(path, o)
	if errors.Is(err, restart.ErrBadImage) {
		return 0, badImageError{fmt.Errorf("%q: %w", path, err)}
	}
	if err != nil {
		return 0, fmt.Errorf("%q: %w", path, err)
	}
	return status, nil
}

// newestImage picks the most recently written image in dir whose header and
// metadata are intact (restart checks the rest).  Temporary files start
// with a dot and are never picked.
func newestImage(dir string) (string, error) {
	var found []string
	for _, pattern := range []string{"*.ckpt", "*.ckpt.[0-9]*"} {
		m, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			return "", err
		}
		found = append(found, m...)
	}
	mtime := map[string]int64{}
	for _, p := range found {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			mtime[p] = fi.ModTime().UnixNano()
		}
	}
	sort.Slice(found, func(i, j int) bool { return mtime[found[i]] > mtime[found[j]] })
	for _, p := range found {
		if intact(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("no complete image in %q", dir)
}

func intact(path string) bool {
	_, err := readMeta(path)
	return err == nil
}

// readMeta reads and checks the header and metadata of the image at path
// (not its data).
func readMeta(path string) (*image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	im, _, err := image.Read(f, fi.Size())
	return im, err
}
