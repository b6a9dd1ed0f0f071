// Command ckpt is the user's tool: it runs programs under libckpt.so,
// checkpoints them, restarts and inspects their images.
//
//	ckpt run [--dir D] [--interval DUR] [--signal SIG] [--keep N] [--compress] [--incremental N] -- PROG ARGS...
//	ckpt checkpoint [--wait] [--kill] [--compress] PID
//	ckpt restart [--pid-file F] [--force] (IMAGE | --dir D)
//	ckpt inspect [--json] IMAGE
//	ckpt verify IMAGE
//
// Exit status: 0 ok, 1 a runtime failure, 2 a usage error or a bad image;
// `run` and `restart` exit with the program's status.
package main

import (
	"errors"
	"fmt"
	"os"
)

// usageError makes the command exit 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// badImageError makes the command exit 2.
type badImageError struct{ err error }

func (e badImageError) Error() string { return e.err.Error() }
func (e badImageError) Unwrap() error { return e.err }

type command struct {
	name, summary string
	run           func(args []string) (int, error)
}

var commands = []command{
	{"run", "run a program under libckpt.so", runCmd},
	{"checkpoint", "checkpoint a running process", checkpointCmd},
	{"restart", "restart a process from its image", restartCmd},
	{"inspect", "show what an image holds", inspectCmd},
	{"verify", "check an image without restoring it", verifyCmd},
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: ckpt COMMAND [flags] [args]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(os.Stderr, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(os.Stderr, "\n`ckpt COMMAND --help` describes each.")
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		os.Exit(2)
	}
	for _, c := range commands {
		if c.name != os.Args[1] {
			continue
		}
		status, err := c.run(os.Args[2:])
		if errors.Is(err, errHelpShown) {
			os.Exit(0)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "ckpt %s: %v\n", c.name, err)
			var u usageError
			var b badImageError
			if errors.As(err, &u) || errors.As(err, &b) {
				os.Exit(2)
			}
			os.Exit(1)
		}
		os.Exit(status)
	}
	fmt.Fprintf(os.Stderr, "ckpt: unknown command %q\n", os.Args[1])
	usage()
	os.Exit(2)
}
