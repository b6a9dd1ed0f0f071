package restart

import (
	"errors"
	"strconv"
	"strings"

	"github.com/ckpt/ckpt/go/image"
	"github.com/ckpt/ckpt/go/procfs"
)

// Loading says how the image's pages get into the restored process.
type Loading int

const (
	// Mapped (the default) checks every checksum first, then maps the
	// image's runs privately: pages are read from the page cache when
	// the program first touches them, and copied only when it writes.
	Mapped Loading = iota
	// Lazy maps like Mapped but checks only the header and metadata
	// checksums: the time to running no longer grows with the image.
	// Damaged page data is not detected.
	Lazy
	// Eager copies every page into fresh memory, for images on slow or
	// network storage, or that may change under the running program.
	Eager
)

// LoadingFor turns the --lazy and --eager flags into a Loading.
func LoadingFor(lazy, eager bool) (Loading, error) {
	switch {
	case lazy && eager:
		return Mapped, errors.New("--lazy and --eager exclude each other")
	case lazy:
		return Lazy, nil
	case eager:
		return Eager, nil
	}
	return Mapped, nil
}

// minMapPages is the smallest run worth a mapping of its own: smaller ones
// cost a mapping each (the kernel's map count is limited) for a copy that
// takes microseconds.
const minMapPages = 16

// mappable says which runs of im the stub maps from the image rather than
// copies, area by area.  Only private, readable, non-executable memory is
// mapped (an executable file mapping fails on a noexec mount, and the main
// stack must stay one growable area); each new stretch of mapped runs costs
// up to two kernel map entries, and at most budget are spent.
func mappable(im *image.Image, how Loading, budget int) [][]bool {
	out := make([][]bool, len(im.Areas))
	for i := range im.Areas {
		a := &im.Areas[i]
		out[i] = make([]bool, len(a.Runs))
		if how == Eager || a.Flags&image.AreaShared != 0 || a.Prot&image.ProtRead == 0 ||
			a.Prot&image.ProtExec != 0 || (a.Kind != image.KindMemory && a.Kind != image.KindHeap) {
			continue
		}
		var prev *image.Run
		for j := range a.Runs {
			r := &a.Runs[j]
			if r.Pages < minMapPages {
				prev = nil
				continue
			}
			// A run that continues the previous one in memory and in
			// the file joins its mapping.
			joins := prev != nil && prev.Page+prev.Pages == r.Page && prev.FileOff+prev.Len() == r.FileOff
			if !joins {
				if budget < 2 {
					return out
				}
				budget -= 2
			}
			out[i][j] = true
			prev = r
		}
	}
	return out
}

// mapBudget is how many map entries restores may spend on mapped runs: a
// quarter of the kernel's limit, leaving the rest to the program.
func mapBudget() int {
	limit := 65530 // the kernel's default vm.max_map_count
	if b, err := procfs.ReadFile("/proc/sys/vm/max_map_count"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
			limit = n
		}
	}
	return limit / 4
}
