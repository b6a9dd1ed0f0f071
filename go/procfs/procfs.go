// Package procfs parses the /proc/PID files that a checkpoint reads.  The
// parsers take bytes and return typed values; they never act on a process.
// The readers use raw system calls (no os.File), because they run inside the
// checkpointed process, where the Go runtime's netpoller must stay unused.
package procfs

import (
	"bytes"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ReadFile reads a whole (small) proc file.
func ReadFile(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	defer unix.Close(fd)
	buf := make([]byte, 0, 64<<10)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

// MMLayout holds the address fields of /proc/PID/stat that PR_SET_MM_MAP
// takes.  The kernel shows them only to a reader allowed to ptrace the
// process; others see zeros.
type MMLayout struct {
	StartCode, EndCode, StartStack     uint64 // fields 26-28
	StartData, EndData, StartBrk       uint64 // fields 45-47
	ArgStart, ArgEnd, EnvStart, EnvEnd uint64 // fields 48-51
}

// ParseStatMM extracts MMLayout from the contents of /proc/PID/stat.
func ParseStatMM(b []byte) (MMLayout, error) {
	var m MMLayout
	// The command name is in parentheses and may itself hold spaces and
	// parentheses; the fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return m, errors.New("parsing stat: no command name")
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state).
	field := func(n int) (uint64, error) {
		if n-3 >= len(f) {
			return 0, fmt.Errorf("parsing stat: %d fields, need %d", len(f)+2, n)
		}
		return parseUint(f[n-3], 10)
	}
	dst := []struct {
		n int
		p *uint64
	}{
		{26, &m.StartCode}, {27, &m.EndCode}, {28, &m.StartStack},
		{45, &m.StartData}, {46, &m.EndData}, {47, &m.StartBrk},
		{48, &m.ArgStart}, {49, &m.ArgEnd}, {50, &m.EnvStart}, {51, &m.EnvEnd},
	}
	for _, d := range dst {
		v, err := field(d.n)
		if err != nil {
			return m, err
		}
		*d.p = v
	}
	return m, nil
}

func parseUint(b []byte, base uint64) (uint64, error) {
	if len(b) == 0 || len(b) > 20 {
		return 0, fmt.Errorf("bad number %q", b)
	}
	var v uint64
	for _, c := range b {
		var d uint64
		switch {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case base == 16 && c >= 'a' && c <= 'f':
			d = uint64(c-'a') + 10
		case base == 16 && c >= 'A' && c <= 'F':
			d = uint64(c-'A') + 10
		default:
			return 0, fmt.Errorf("bad number %q", b)
		}
		if v > (^uint64(0)-d)/base {
			return 0, fmt.Errorf("number %q overflows", b)
		}
		v = v*base + d
	}
	return v, nil
}
