package procfs

import (
	"bytes"
	"fmt"
)

// Mapping is one line of /proc/PID/maps.
type Mapping struct {
	Start, End   uint64
	Read, Write  bool
	Exec, Shared bool
	Offset       uint64
	Major, Minor uint32
	Inode        uint64
	Name         string // path, "[heap]", "[stack]", "[vdso]", ... or ""
}

// ParseMaps parses the contents of /proc/PID/maps.  Each line is
//
//	start-end perms offset major:minor inode [name]
//
// with hexadecimal numbers except the decimal inode; the name may contain
// spaces and ends with " (deleted)" for unlinked files.
func ParseMaps(b []byte) ([]Mapping, error) {
	var ms []Mapping
	for lineNo := 1; len(b) > 0; lineNo++ {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		m, err := parseMapsLine(line)
		if err != nil {
			return nil, fmt.Errorf("parsing maps line %d: %w", lineNo, err)
		}
		ms = append(ms, m)
	}
	return ms, nil
}

func parseMapsLine(line []byte) (Mapping, error) {
	var m Mapping
	field := func() []byte {
		i := bytes.IndexByte(line, ' ')
		if i < 0 {
			f := line
			line = nil
			return f
		}
		f := line[:i]
		line = line[i+1:]
		return f
	}
	rng, perms, off, dev, inode := field(), field(), field(), field(), field()
	dash := bytes.IndexByte(rng, '-')
	colon := bytes.IndexByte(dev, ':')
	if dash < 0 || colon < 0 || len(perms) != 4 {
		return m, fmt.Errorf("malformed %q", line)
	}
	var err error
	if m.Start, err = parseUint(rng[:dash], 16); err != nil {
		return m, err
	}
	if m.End, err = parseUint(rng[dash+1:], 16); err != nil {
		return m, err
	}
	if m.Start >= m.End {
		return m, fmt.Errorf("empty range %#x-%#x", m.Start, m.End)
	}
	m.Read, m.Write, m.Exec = perms[0] == 'r', perms[1] == 'w', perms[2] == 'x'
	m.Shared = perms[3] == 's'
	if m.Offset, err = parseUint(off, 16); err != nil {
		return m, err
	}
	major, err := parseUint(dev[:colon], 16)
	if err != nil || major > 1<<32-1 {
		return m, fmt.Errorf("bad device %q", dev)
	}
	minor, err := parseUint(dev[colon+1:], 16)
	if err != nil || minor > 1<<32-1 {
		return m, fmt.Errorf("bad device %q", dev)
	}
	m.Major, m.Minor = uint32(major), uint32(minor)
	if m.Inode, err = parseUint(inode, 10); err != nil {
		return m, err
	}
	m.Name = string(bytes.TrimLeft(line, " "))
	return m, nil
}
