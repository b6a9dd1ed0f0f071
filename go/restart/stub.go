package restart

import (
	_ "embed"
	"encoding/binary"
	"fmt"
)

// stubELF is the restore stub built from linker/ (//linker:ckpt-restore).
//
//go:embed ckpt-restore
var stubELF []byte

// stubRange returns the page-rounded range the stub's loadable segments
// occupy at their link address.
//
// It reads the ELF program headers itself: debug/elf would bring
// debug/dwarf and four decompressors into restart, whose package
// initialisation and first touches every restart pays before it starts
// the program.
func stubRange() (start, end uint64, err error) {
	const (
		phoff, phentsize, phnum = 0x20, 0x36, 0x38 // in the ELF64 header
		ptLoad                  = 1
	)
	f := stubELF
	if len(f) < 0x40 || string(f[:4]) != "\x7fELF" || f[4] != 2 || f[5] != 1 {
		return 0, 0, fmt.Errorf("the embedded restore stub is not a little-endian ELF64 file")
	}
	le := binary.LittleEndian
	off, size, n := le.Uint64(f[phoff:]), uint64(le.Uint16(f[phentsize:])), uint64(le.Uint16(f[phnum:]))
	if size < 0x38 || off > uint64(len(f)) || n > (uint64(len(f))-off)/size {
		return 0, 0, fmt.Errorf("the embedded restore stub's program headers lie outside it")
	}
	start = ^uint64(0)
	for i := range n {
		ph := f[off+i*size:][:size]
		if le.Uint32(ph) != ptLoad {
			continue
		}
		vaddr, memsz := le.Uint64(ph[0x10:]), le.Uint64(ph[0x28:])
		start = min(start, vaddr&^(4096-1))
		end = max(end, pageRound(vaddr+memsz))
	}
	if end == 0 {
		return 0, 0, fmt.Errorf("the embedded restore stub has no loadable segment")
	}
	return start, end, nil
}
