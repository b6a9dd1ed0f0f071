// Command restart brings a checkpointed process back from its image.
//
//	restart IMAGE
//
// The restored program keeps this command's PID, standard input, output and
// error, so signals sent to restart reach it and its exit status is
// restart's.  Exit status when the restore itself fails: 2 for a bad or
// incompatible image (nothing was changed), 1 for any other failure.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ckpt/ckpt/go/restart"
)

func main() {
	if len(os.Args) != 2 || os.Args[1] == "-h" || os.Args[1] == "--help" {
		fmt.Fprintln(os.Stderr, "usage: restart IMAGE")
		os.Exit(2)
	}
	path := os.Args[1]
	// Under `bazel run`, the working directory is the runfiles tree; a
	// relative path means one in the user's directory.
	if wd := os.Getenv("BUILD_WORKING_DIRECTORY"); wd != "" && !filepath.IsAbs(path) {
		path = filepath.Join(wd, path)
	}
	err := restart.Exec(path, func(msg string) { fmt.Fprintf(os.Stderr, "restart: warning: %s\n", msg) })
	fmt.Fprintf(os.Stderr, "restart: %q: %v\n", os.Args[1], err)
	if errors.Is(err, restart.ErrBadImage) {
		os.Exit(2)
	}
	os.Exit(1)
}
