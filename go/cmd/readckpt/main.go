// Command readckpt checks a checkpoint image and prints its header and one
// line per memory area, in the terms of /proc/PID/maps.
//
//	readckpt IMAGE
//
// Exit status: 0 ok, 2 usage error or bad image.
package main

import (
	"bufio"
	"fmt"
	"os"

	"github.com/ckpt/ckpt/go/inspect"
)

func main() {
	if len(os.Args) != 2 || os.Args[1] == "-h" || os.Args[1] == "--help" {
		fmt.Fprintln(os.Stderr, "usage: readckpt IMAGE")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintf(os.Stderr, "readckpt: %q: %v\n", os.Args[1], err)
		os.Exit(2)
	}
}

func run(path string) error {
	im, h, err := inspect.Open(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	inspect.Text(w, path, im, h)
	return nil
}
