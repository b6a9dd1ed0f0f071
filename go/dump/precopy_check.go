package dump

import (
	"bytes"

	"github.com/ckpt/ckpt/go/image"
)

// checkTaken reads, for CKPT_PRECOPY=check, the pages of an area the
// precopy took from the snapshot child, which kept it, and counts in
// Result.PrecopyMissed those the image does not hold as they are: a page
// whose copy (here or in a parent) has another CRC, or a page that is not
// all zeros where the image has nothing.  Pages of the library's scratch
// memory are not stored and not compared.
func (s *source) checkTaken(a *takenArea) error {
	const P = image.PageSize
	notes := a.pages
	buf := s.out.get()
	defer s.out.put(buf)
	for first := uint64(0); first < a.Pages(); first += chunkPages {
		n := min(chunkPages, a.Pages()-first)
		addr := uint64(a.Start) + first*P
		b := buf[:n*P]
		if err := s.mem.read(b, addr); err != nil {
			return err
		}
		for i := uint64(0); i < n; i++ {
			for len(notes) > 0 && uint64(notes[0].page) < first+i {
				notes = notes[1:]
			}
			if s.scratchAt(addr + i*P) {
				continue
			}
			p := b[i*P : (i+1)*P]
			if len(notes) > 0 && uint64(notes[0].page) == first+i && notes[0].off != 0 {
				if image.Checksum(p) != notes[0].crc {
					s.res.PrecopyMissed++
				}
			} else if !bytes.Equal(p, s.zero) {
				s.res.PrecopyMissed++
			}
		}
	}
	return nil
}
