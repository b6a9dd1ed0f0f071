// Package inspect renders a checkpoint image for people (Text, in the terms
// of /proc/PID/maps) and for programs (JSON, a stable schema documented in
// docs/ckpt-inspect.md).
package inspect

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/ckpt/ckpt/go/image"
)

// Text writes the header, threads, kernel state, descriptors and one line
// per memory area.
func Text(w io.Writer, path string, im *image.Image, h *image.Header) {
	p := &im.Process
	fmt.Fprintf(w, "image:    %s (format %d, %d bytes, metadata at %#x)\n", path, h.Version, h.FileSize, h.MetaOff)
	fmt.Fprintf(w, "program:  %s (%s), pid %d, signal %d\n", p.Name, p.Exe, p.PID, p.Signal)
	fmt.Fprintf(w, "taken:    %s on kernel %s\n", time.Unix(0, p.Created).UTC().Format(time.RFC3339), p.Kernel)
	fmt.Fprintf(w, "brk:      %#x (heap starts %#x)\n", p.Brk, p.MM.StartBrk)
	if im.ID != (image.ImageID{}) {
		fmt.Fprintf(w, "id:       %x\n", im.ID)
	}
	for i, pa := range im.Parents {
		fmt.Fprintf(w, "parent %d: %s (id %x), %d bytes of pages from it (not checked here: ckpt verify does)\n",
			i+1, pa.Name, pa.ID, im.SourceBytes(uint32(i+1)))
	}
	for _, t := range im.Threads {
		role := ""
		if t.Flags&image.ThreadCoordinator != 0 {
			role = " (checkpoint coordinator)"
		}
		fmt.Fprintf(w, "thread:   tid %d %q rip %#x rsp %#x fs %#x%s\n", t.TID, t.Name, t.RIP, t.RSP, t.FSBase, role)
	}
	fmt.Fprintf(w, "cwd:      %s (umask %04o)\n", p.Cwd, p.Umask)
	for i, t := range p.Itimers {
		if t.ValueSec != 0 || t.ValueUsec != 0 {
			fmt.Fprintf(w, "itimer:   %s %d.%06ds left, every %d.%06ds\n", itimerNames[i],
				t.ValueSec, t.ValueUsec, t.IntervalSec, t.IntervalUsec)
		}
	}
	for _, t := range p.Timers {
		fmt.Fprintf(w, "timer:    id %d clock %d signal %d, %d.%09ds left, every %d.%09ds\n", t.ID, t.Clock, t.Signal,
			t.ValueSec, t.ValueNsec, t.IntervalSec, t.IntervalNsec)
	}
	fmt.Fprintf(w, "files:    %d\n", len(im.Files))
	for i := range im.Files {
		f := &im.Files[i]
		note := ""
		if f.Deleted {
			note = fmt.Sprintf(" (deleted, %d bytes saved)", f.StoredBytes())
		}
		if len(f.Epoll) > 0 {
			note = fmt.Sprintf(" (watching %d)", len(f.Epoll))
		}
		fmt.Fprintf(w, "fd %-4d  %-9s flags %#o offset %d size %d %s%s\n", f.FD, f.Kind, f.Flags, f.Offset, f.Size, f.Path, note)
	}
	if n := len(im.Segments); n > 0 {
		fmt.Fprintf(w, "data:     %d bytes in %d segments hold %d bytes of pages (%s, %.1f%%)\n",
			im.FileBytes(), n, im.StoredBytes(), compression(im), 100*float64(im.FileBytes())/float64(im.StoredBytes()))
	}
	fmt.Fprintf(w, "areas:    %d, %d bytes of page data stored, all checksums verified\n", len(im.Areas), storedBytes(im))
	for i := range im.Areas {
		a := &im.Areas[i]
		fmt.Fprintf(w, "%08x-%08x %s %08x %02x:%02x %-8d %-40s stored %d\n",
			a.Start, a.End, a.PermString(), a.Offset, a.Major, a.Minor, a.Inode, a.Name, a.StoredBytes())
	}
}

var itimerNames = [...]string{"real", "virtual", "prof"}

// compression names the codecs the image's data is stored with.
func compression(im *image.Image) string {
	if len(im.Segments) == 0 {
		return "none"
	}
	var names []string
	seen := map[image.Codec]bool{}
	for _, s := range im.Segments {
		if !seen[s.Codec] {
			seen[s.Codec] = true
			names = append(names, s.Codec.String())
		}
	}
	sort.Strings(names)
	return strings.Join(names, "+")
}

func storedBytes(im *image.Image) uint64 {
	var n uint64
	for i := range im.Areas {
		n += im.Areas[i].StoredBytes()
	}
	return n
}

// Document is the JSON form.  Field names are stable: add, never rename.
type Document struct {
	Path        string   `json:"path"`
	Format      uint32   `json:"format"`
	Size        uint64   `json:"size"`
	StoredBytes uint64   `json:"stored_bytes"`
	Program     string   `json:"program"`
	Exe         string   `json:"exe"`
	PID         int32    `json:"pid"`
	Signal      int32    `json:"signal"`
	Created     string   `json:"created"`
	Kernel      string   `json:"kernel"`
	Cwd         string   `json:"cwd"`
	Umask       uint32   `json:"umask"`
	Brk         string   `json:"brk"`
	Threads     []Thread `json:"threads"`
	Files       []File   `json:"files"`
	Areas       []Area   `json:"areas"`
	// Compression is "none", or the codecs of the segments ("none+zstd":
	// chunks that did not shrink are stored as they are).
	Compression string `json:"compression"`
	FileBytes   uint64 `json:"file_bytes"`
	// ID is the image's ID in hex ("" before format 3); Parents are the
	// images an incremental image takes unchanged pages from.
	ID      string   `json:"id"`
	Parents []Parent `json:"parents"`
}

// Parent is one image an incremental image builds on, in the JSON form.
type Parent struct {
	Name  string `json:"name"`
	ID    string `json:"id"`
	Bytes uint64 `json:"bytes"` // of pages taken from it
}

// Thread is one thread in the JSON form.
type Thread struct {
	TID         int32  `json:"tid"`
	Name        string `json:"name"`
	Coordinator bool   `json:"coordinator"`
}

// File is one descriptor in the JSON form.
type File struct {
	FD      int32  `json:"fd"`
	Kind    string `json:"kind"`
	Path    string `json:"path"`
	Flags   uint32 `json:"flags"`
	Offset  int64  `json:"offset"`
	Size    uint64 `json:"size"`
	Deleted bool   `json:"deleted"`
}

// Area is one memory area in the JSON form; Start and End are hex strings
// ("0x7f..."), Perms as in /proc/PID/maps.
type Area struct {
	Start  string `json:"start"`
	End    string `json:"end"`
	Perms  string `json:"perms"`
	Offset uint64 `json:"offset"`
	Dev    string `json:"dev"`
	Inode  uint64 `json:"inode"`
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Stored uint64 `json:"stored_bytes"`
	Runs   int    `json:"runs"` // image.Run records that hold them
}

// JSON writes the image as one JSON document.
func JSON(w io.Writer, path string, im *image.Image, h *image.Header) error {
	p := &im.Process
	d := Document{Path: path, Format: h.Version, Size: h.FileSize, StoredBytes: storedBytes(im),
		Program: p.Name, Exe: p.Exe, PID: p.PID, Signal: p.Signal,
		Created: time.Unix(0, p.Created).UTC().Format(time.RFC3339Nano), Kernel: p.Kernel,
		Cwd: p.Cwd, Umask: p.Umask, Brk: fmt.Sprintf("%#x", p.Brk),
		Threads: []Thread{}, Files: []File{}, Areas: []Area{},
		Compression: compression(im), FileBytes: im.FileBytes(), Parents: []Parent{}}
	if im.ID != (image.ImageID{}) {
		d.ID = fmt.Sprintf("%x", im.ID)
	}
	for i, pa := range im.Parents {
		d.Parents = append(d.Parents, Parent{Name: pa.Name, ID: fmt.Sprintf("%x", pa.ID), Bytes: im.SourceBytes(uint32(i + 1))})
	}
	for _, t := range im.Threads {
		d.Threads = append(d.Threads, Thread{TID: t.TID, Name: t.Name, Coordinator: t.Flags&image.ThreadCoordinator != 0})
	}
	for _, f := range im.Files {
		d.Files = append(d.Files, File{FD: f.FD, Kind: f.Kind.String(), Path: f.Path, Flags: f.Flags,
			Offset: f.Offset, Size: f.Size, Deleted: f.Deleted})
	}
	for i := range im.Areas {
		a := &im.Areas[i]
		d.Areas = append(d.Areas, Area{Start: fmt.Sprintf("%#x", a.Start), End: fmt.Sprintf("%#x", a.End),
			Perms: a.PermString(), Offset: a.Offset, Dev: fmt.Sprintf("%02x:%02x", a.Major, a.Minor),
			Inode: a.Inode, Name: a.Name, Kind: a.Kind.String(), Stored: a.StoredBytes(), Runs: len(a.Runs)})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(d)
}

// Open reads and fully checks the image at path: header, metadata and every
// checksum of page data.
func Open(path string) (*image.Image, *image.Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("not a regular file")
	}
	im, h, err := image.Read(f, fi.Size())
	if err != nil {
		return nil, nil, err
	}
	if err := image.VerifyData(f, im, nil); err != nil {
		return nil, nil, err
	}
	return im, h, nil
}
