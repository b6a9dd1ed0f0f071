package restart

import (
	"fmt"

	"github.com/ckpt/ckpt/go/image"
)

const (
	// The window for the stub's helpers is searched for from here to
	// windowTop, in steps of windowStep.  The kernel places a new
	// program's stack and vDSO above windowTop, so the stub's own
	// mappings never land in it.
	windowBase = 0x200000000
	windowTop  = 0x7f0000000000
	windowStep = 1 << 30

	// parkLen holds the kernel's vDSO pieces, one slot per kind.
	parkLen = 4 << 20

	// scratchLen is the window of the image the stub maps to copy small
	// runs from.
	scratchLen = 64 << 20
)

func pageRound(n uint64) uint64 { return (n + image.PageSize - 1) &^ (image.PageSize - 1) }

func overlaps(s1, e1, s2, e2 uint64) bool { return s1 < e2 && s2 < e1 }

// choosePlan finds room for the stub's argument blob, the vDSO park, the
// stacks of the threads it recreates and, if
// the image needs the stub's own addresses, the stub's new home.  Nothing it
// picks overlaps the image.
func choosePlan(areas []image.Area, stubStart, stubEnd, blobLen uint64, threads int) (plan, error) {
	p := plan{stubStart: stubStart, stubEnd: stubEnd, argsLen: pageRound(blobLen), parkLen: parkLen,
		uffdDev: -1, uffdSock: -1, fillSock: -1, stacksLen: uint64(threads) * threadStack, scratchLen: scratchLen}
	collides := false
	for i := range areas {
		if overlaps(uint64(areas[i].Start), uint64(areas[i].End), stubStart, stubEnd) {
			collides = true
		}
	}
	stubLen := uint64(0)
	if collides {
		stubLen = pageRound(stubEnd - stubStart)
	}
	need := stubLen + p.argsLen + p.parkLen + p.stacksLen + p.scratchLen
	for w := uint64(windowBase); w+need <= windowTop; w += windowStep {
		free := !overlaps(w, w+need, stubStart, stubEnd)
		for i := 0; free && i < len(areas); i++ {
			if overlaps(w, w+need, uint64(areas[i].Start), uint64(areas[i].End)) {
				free = false
			}
		}
		if !free {
			continue
		}
		if collides {
			p.relocAddr = w
		}
		p.argsAddr = w + stubLen
		p.parkAddr = p.argsAddr + p.argsLen
		p.stacksAddr = p.parkAddr + p.parkLen
		p.scratchAddr = p.stacksAddr + p.stacksLen
		return p, nil
	}
	return p, fmt.Errorf("no free %d-byte window for the restore stub below %#x", need, windowTop)
}
