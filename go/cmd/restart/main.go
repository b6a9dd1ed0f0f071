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

	"github.com/ckpt/ckpt/go/restart"
)

func main() {
	if len(os.Args) != 2 || os.Args[1] == "-h" || os.Args[1] == "--help" {
		fmt.Fprintln(os.Stderr, "usage: restart IMAGE")
		os.Exit(2)
	}
	err := restart.Exec(os.Args[1])
	fmt.Fprintf(os.Stderr, "restart: %q: %v\n", os.Args[1], err)
	if errors.Is(err, restart.ErrBadImage) {
		os.Exit(2)
	}
	os.Exit(1)
}
