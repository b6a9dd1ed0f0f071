package main

import (
	"bytes"
	"slices"
	"strconv"

	"github.com/ckpt/ckpt/go/procfs"
)

// smapsArea is a mapping of /proc/self/smaps, its resident memory and its
// VmFlags ("dc": MADV_DONTFORK, "um": userfaultfd missing-page mode).
type smapsArea struct {
	procfs.Mapping
	rss   uint64
	flags []string
}

func (s *smapsArea) has(flag string) bool { return slices.Contains(s.flags, flag) }

// smapsAreas parses /proc/self/smaps: each mapping's maps line, then lines
// of counts, the last of them VmFlags.
func smapsAreas(text []byte) []smapsArea {
	var areas []smapsArea
	var cur []procfs.Mapping
	var rss uint64
	for len(text) > 0 {
		line := text
		if i := bytes.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			text = nil
		}
		if flags, ok := bytes.CutPrefix(line, []byte("VmFlags:")); ok {
			if len(cur) == 1 {
				s := smapsArea{Mapping: cur[0], rss: rss}
				for _, f := range bytes.Fields(flags) {
					s.flags = append(s.flags, string(f))
				}
				areas = append(areas, s)
			}
			cur, rss = nil, 0
			continue
		}
		if kb, ok := bytes.CutPrefix(line, []byte("Rss:")); ok {
			kb = bytes.TrimSpace(bytes.TrimSuffix(kb, []byte("kB")))
			if n, err := strconv.ParseUint(string(kb), 10, 64); err == nil {
				rss = n << 10
			}
			continue
		}
		if sp := bytes.IndexByte(line, ' '); sp < 0 || bytes.IndexByte(line[:sp], '-') < 0 || line[sp-1] == ':' {
			continue // one of the area's counts
		}
		if ms, err := procfs.ParseMaps(line); err == nil {
			cur = ms
		}
	}
	return areas
}
