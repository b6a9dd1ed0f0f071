package procfs

import (
	"bytes"
	"fmt"
)

// EpollEntry is one "tfd:" line of an epoll descriptor's fdinfo.
type EpollEntry struct {
	TFD    int32
	Events uint32
	Data   uint64
}

// FDInfo is what /proc/PID/fdinfo/N tells beyond flags and position.
type FDInfo struct {
	Epoll        []EpollEntry // an epoll instance's registrations
	EventfdCount uint64       // an eventfd's counter
}

// ParseFDInfo parses /proc/PID/fdinfo/N.  Lines look like
//
//	tfd:        7 events:       19 data:     7f0a12345678  pos:0 ino:1234 sdev:f
//	eventfd-count:                0
//
// with decimal tfd and hexadecimal events, data and eventfd-count.
func ParseFDInfo(b []byte) (FDInfo, error) {
	var info FDInfo
	for lineNo, line := range bytes.Split(b, []byte("\n")) {
		f := bytes.Fields(line)
		switch {
		case len(f) >= 6 && string(f[0]) == "tfd:" && string(f[2]) == "events:" && string(f[4]) == "data:":
			tfd, err1 := parseUint(f[1], 10)
			events, err2 := parseUint(f[3], 16)
			data, err3 := parseUint(f[5], 16)
			if err1 != nil || err2 != nil || err3 != nil || tfd > 1<<31-1 || events > 1<<32-1 {
				return info, fmt.Errorf("parsing fdinfo line %d: %q", lineNo+1, line)
			}
			info.Epoll = append(info.Epoll, EpollEntry{TFD: int32(tfd), Events: uint32(events), Data: data})
		case len(f) == 2 && string(f[0]) == "eventfd-count:":
			n, err := parseUint(f[1], 16)
			if err != nil {
				return info, fmt.Errorf("parsing fdinfo line %d: %w", lineNo+1, err)
			}
			info.EventfdCount = n
		}
	}
	return info, nil
}
