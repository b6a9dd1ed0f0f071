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
	"time"

	"github.com/ckpt/ckpt/go/image"
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
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("not a regular file")
	}
	im, h, err := image.Read(f, fi.Size())
	if err != nil {
		return err
	}
	if err := image.VerifyData(f, im, nil); err != nil {
		return err
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	p := &im.Process
	fmt.Fprintf(w, "image:    %s (format %d, %d bytes, metadata at %#x)\n", path, h.Version, h.FileSize, h.MetaOff)
	fmt.Fprintf(w, "program:  %s (%s), pid %d, signal %d\n", p.Name, p.Exe, p.PID, p.Signal)
	fmt.Fprintf(w, "taken:    %s on kernel %s\n", time.Unix(0, p.Created).UTC().Format(time.RFC3339), p.Kernel)
	fmt.Fprintf(w, "brk:      %#x (heap starts %#x)\n", p.Brk, p.MM.StartBrk)
	for _, t := range im.Threads {
		fmt.Fprintf(w, "thread:   tid %d rip %#x rsp %#x fs %#x\n", t.TID, t.RIP, t.RSP, t.FSBase)
	}
	fmt.Fprintf(w, "cwd:      %s (umask %04o)\n", p.Cwd, p.Umask)
	for i, t := range p.Itimers {
		if t.ValueSec != 0 || t.ValueUsec != 0 {
			fmt.Fprintf(w, "itimer:   %s %d.%06ds left, every %d.%06ds\n", []string{"real", "virtual", "prof"}[i],
				t.ValueSec, t.ValueUsec, t.IntervalSec, t.IntervalUsec)
		}
	}
	fmt.Fprintf(w, "files:    %d\n", len(im.Files))
	for i := range im.Files {
		f := &im.Files[i]
		deleted := ""
		if f.Deleted {
			deleted = fmt.Sprintf(" (deleted, %d bytes saved)", f.StoredBytes())
		}
		if len(f.Epoll) > 0 {
			deleted = fmt.Sprintf(" (watching %d)", len(f.Epoll))
		}
		fmt.Fprintf(w, "fd %-4d  %-9s flags %#o offset %d size %d %s%s\n", f.FD, f.Kind, f.Flags, f.Offset, f.Size, f.Path, deleted)
	}
	var stored uint64
	for i := range im.Areas {
		stored += im.Areas[i].StoredBytes()
	}
	fmt.Fprintf(w, "areas:    %d, %d bytes of page data stored, all checksums verified\n", len(im.Areas), stored)
	for i := range im.Areas {
		a := &im.Areas[i]
		fmt.Fprintf(w, "%08x-%08x %s %08x %02x:%02x %-8d %-40s stored %d\n",
			a.Start, a.End, a.PermString(), a.Offset, a.Major, a.Minor, a.Inode, a.Name, a.StoredBytes())
	}
	return nil
}
