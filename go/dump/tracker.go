package dump

import (
	"cmp"
	"hash/maphash"
	"slices"

	"github.com/ckpt/ckpt/go/image"
)

// Tracker remembers, page by page, what the images of a process hold, so
// that an incremental checkpoint refers to the pages that did not change
// since the last image instead of storing them again.  A page counts as
// unchanged when the kernel saw no write to it since the last checkpoint
// (Request.Unwritten: then it is not even read) or else when its address,
// its 64-bit seeded hash and its CRC32C are all the same as then.
//
// Write fills in Result.Tracker; the caller passes it back as
// Request.Prev for the next checkpoint.
type Tracker struct {
	// Images are the images that hold the tracked pages, the newest last;
	// the caller names the newest (Images[len-1].Name) once it has a name
	// that stays.
	Images []image.Parent
	pages  []trackedPage // by address
	// scratch is the scratch memory pages started in (scratch.go), if
	// any, unmapped by Release even if pages outgrew it.
	scratch []trackedPage
}

// Release frees the tracker's memory once it is no longer needed: the next
// tracker replaced it, or this process was restored from an image, which
// kept the memory's addresses but not its contents.
func (t *Tracker) Release() {
	freeScratch(t.scratch)
	t.pages, t.scratch = nil, nil
}

// pageSeed seeds the pages' hashes: one for the life of the process (a
// restored one too, which starts a new chain), so that the precopy
// (precopy.go) hashes pages before the checkpoint's tracker exists.
var pageSeed = maphash.MakeSeed()

// pageHash is a page's 64-bit seeded hash.
func pageHash(p []byte) uint64 { return maphash.Bytes(pageSeed, p) }

// pagesIn returns the tracked pages in [start, end).
func (t *Tracker) pagesIn(start, end uint64) []trackedPage {
	i, _ := slices.BinarySearchFunc(t.pages, start, func(p trackedPage, a uint64) int { return cmp.Compare(p.addr, a) })
	j, _ := slices.BinarySearchFunc(t.pages[i:], end, func(p trackedPage, a uint64) int { return cmp.Compare(p.addr, a) })
	return t.pages[i : i+j]
}

type trackedPage struct {
	addr, hash, off uint64 // off: where Images[img] holds it
	crc, img        uint32
}

// tracking is one checkpoint's use of trackers: the last one (nil for a
// full checkpoint) and the one being built.
type tracking struct {
	prev   *Tracker
	cursor int // in prev.pages: the first page not below the last lookup
	next   *Tracker
}

// newTracking starts the tracker of image id, which holds at most pages
// pages, after prev (nil for a full image).
func newTracking(prev *Tracker, id image.ImageID, pages int) *tracking {
	t := &tracking{prev: prev, next: &Tracker{}}
	// Room for every page at once: no series of doublings of fresh
	// memory, and the memory is left out of images.
	t.next.scratch = newScratch[trackedPage](pages)
	t.next.pages = t.next.scratch
	if prev != nil {
		t.next.Images = append(t.next.Images, prev.Images...)
	}
	t.next.Images = append(t.next.Images, image.Parent{ID: id})
	return t
}

// self is the index in next.Images of the image being written.
func (t *tracking) self() uint32 { return uint32(len(t.next.Images) - 1) }

// lookup returns where the last images hold page p at addr, if they do.
// Calls come in increasing address order.
func (t *tracking) lookup(addr uint64, p []byte) (hash uint64, crc uint32, old trackedPage, ok bool) {
	hash, crc = pageHash(p), image.Checksum(p)
	if t.prev == nil {
		return hash, crc, old, false
	}
	old, ok = t.peek(addr)
	return hash, crc, old, ok && old.hash == hash && old.crc == crc
}

// unchanged records the page at addr as the last images hold it, if they
// do, without reading it.  Calls come in increasing address order, mixed
// with lookup's.
func (t *tracking) unchanged(addr uint64) (trackedPage, bool) {
	old, ok := t.peek(addr)
	if ok {
		t.record(old)
	}
	return old, ok
}

// peek returns where the last images hold the page at addr, if they do.
func (t *tracking) peek(addr uint64) (trackedPage, bool) {
	pages := t.prev.pages
	for t.cursor < len(pages) && pages[t.cursor].addr < addr {
		t.cursor++
	}
	if t.cursor < len(pages) && pages[t.cursor].addr == addr {
		return pages[t.cursor], true
	}
	return trackedPage{}, false
}

func (t *tracking) record(p trackedPage) { t.next.pages = append(t.next.pages, p) }

// finish drops the parents no run refers to and numbers the rest from 1 in
// runs' Source, and returns them.
func (t *tracking) finish(im *image.Image) []image.Parent {
	n := len(t.next.Images)
	used := make([]bool, n)
	used[n-1] = true
	for _, p := range t.next.pages {
		used[p.img] = true
	}
	renumber := make([]uint32, n)
	var images []image.Parent
	for i, u := range used {
		if u {
			renumber[i] = uint32(len(images))
			images = append(images, t.next.Images[i])
		}
	}
	for i := range t.next.pages {
		t.next.pages[i].img = renumber[t.next.pages[i].img]
	}
	for i := range im.Areas {
		for j := range im.Areas[i].Runs {
			if r := &im.Areas[i].Runs[j]; r.Source != 0 {
				r.Source = renumber[r.Source-1] + 1
			}
		}
	}
	t.next.Images = images
	return append([]image.Parent(nil), images[:len(images)-1]...)
}
