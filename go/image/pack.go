package image

import "slices"

// PackRuns merges runs whose data follows each other in the file into runs
// with a Mask (format 5), so that memory where stored and zero pages
// alternate is described by one run per MaxMaskPages pages instead of one
// per stretch.  Writers make a run per stretch of stored pages and call it
// once every run is known: its offsets final, its Source numbered.  No run
// of the image's own is made to cross the start of a segment: each must
// lie inside one (checkRunsInSegments).
func (im *Image) PackRuns() {
	starts := make([]uint64, len(im.Segments))
	for i, s := range im.Segments {
		starts[i] = s.Off
	}
	for i := range im.Areas {
		im.Areas[i].Runs = packRuns(im.Areas[i].Runs, starts)
	}
	for i := range im.Files {
		im.Files[i].Runs = packRuns(im.Files[i].Runs, starts)
	}
}

// packRuns merges rs in place and returns the merged list, a prefix of rs.
// starts are the offsets where segments start, sorted.
func packRuns(rs []Run, starts []uint64) []Run {
	if len(rs) == 0 {
		return rs
	}
	out := rs[:1]
	for _, r := range rs[1:] {
		cur := &out[len(out)-1]
		if !mergeable(cur, &r, starts) {
			out = append(out, r)
			continue
		}
		mask := cur.fullMask() | r.fullMask()<<(r.Page-cur.Page)
		cur.CRC = ChecksumAppend(cur.CRC, r.CRC, r.StoredPages())
		cur.Pages = r.Page + r.Pages - cur.Page
		cur.Mask = mask
		if mask == maskOf(cur.Pages) {
			cur.Mask = 0 // no page skipped
		}
	}
	return out
}

// mergeable reports whether r can join cur: the same source, data right
// after cur's, both within MaxMaskPages pages, and no segment starting
// between them.
func mergeable(cur, r *Run, starts []uint64) bool {
	if r.Source != cur.Source || r.FileOff != cur.FileOff+cur.DataLen() ||
		r.Page < cur.Page+cur.Pages || r.Page+r.Pages-cur.Page > MaxMaskPages {
		return false
	}
	_, cut := slices.BinarySearch(starts, r.FileOff)
	return r.Source != 0 || !cut
}

// fullMask is the run's Mask with every page spelled out (Pages at most
// MaxMaskPages).
func (r *Run) fullMask() uint64 {
	if r.Mask != 0 {
		return r.Mask
	}
	return maskOf(r.Pages)
}

// maskOf is the mask of n pages, all stored (n at most 64).
func maskOf(n uint64) uint64 { return ^uint64(0) >> (64 - n) }

// ChecksumAppend returns the Checksum of the bytes crc is the Checksum of
// followed by n pages whose Checksum is next.
func ChecksumAppend(crc, next uint32, n uint64) uint32 {
	if n == 0 {
		return crc
	}
	for ; n > 1; n-- {
		crc = ChecksumAppendPage(crc, 0) // x^(8*PageSize): one page of shift
	}
	return ChecksumAppendPage(crc, next)
}
