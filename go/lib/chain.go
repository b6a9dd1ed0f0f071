package main

import (
	"fmt"
	"path/filepath"

	"github.com/ckpt/ckpt/go/dump"
	"golang.org/x/sys/unix"
)

// chainState is what incremental checkpoints (CKPT_INCREMENTAL=N) carry
// from one checkpoint to the next; only the coordinator goroutine uses it.
//
// Every image is written to the usual name, PROG.PID.ckpt.  Before an
// incremental image replaces it there, the image it builds on is linked to
// PROG.PID.<ID>.ckpt, the name the new image refers to it by; when a full
// image starts a new chain, those links of the old chain are removed.
type chainState struct {
	tracker *dump.Tracker // the pages of the last image and where they are
	length  int           // images in the chain so far
	links   []string      // the chain's PROG.PID.<ID>.ckpt files
}

var chain chainState

// keepParent links the last image, which path holds, to the name of its ID
// (unless an earlier checkpoint did) and checks that it is still that image.
func (c *chainState) keepParent(path string) error {
	last := &c.tracker.Images[len(c.tracker.Images)-1]
	if last.Name != "" {
		return nil
	}
	base := filepath.Base(path)
	name := fmt.Sprintf("%s.%x.ckpt", base[:len(base)-len(".ckpt")], last.ID[:8])
	link := filepath.Join(filepath.Dir(path), name)
	if err := unix.Link(path, link); err != nil && err != unix.EEXIST {
		return fmt.Errorf("linking %q to %q: %w", path, link, err)
	}
	id, err := dump.ImageID(link)
	if err != nil || id != last.ID {
		unix.Unlink(link)
		return fmt.Errorf("%q is no longer the last image (moved or replaced): %v", path, err)
	}
	last.Name = name
	c.links = append(c.links, link)
	return nil
}

// forget drops the chain in a process just restored from an image: the
// snapshot predates the image, so what the chain remembers is older than
// it.  The chain's files stay: the image may take pages from them.
func (c *chainState) forget() {
	if c.tracker != nil {
		c.tracker.Release()
	}
	*c = chainState{}
}

// wrote records the image req just wrote, with the tracker of its pages.
func (c *chainState) wrote(req *dump.Request, t *dump.Tracker) {
	if req.Prev == nil {
		for _, l := range c.links {
			unix.Unlink(l)
		}
		c.links, c.length = nil, 0
	}
	if c.tracker != nil {
		c.tracker.Release()
	}
	c.tracker = t
	c.length++
}
