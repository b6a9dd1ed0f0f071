package restart

import (
	"bytes"
	"debug/elf"
	_ "embed"
	"fmt"
)

// stubELF is the restore stub built from linker/ (//linker:ckpt-restore).
//
//go:embed ckpt-restore
var stubELF []byte

// stubRange returns the page-rounded range the stub's loadable segments
// occupy at their link address.
func stubRange() (start, end uint64, err error) {
	f, err := elf.NewFile(bytes.NewReader(stubELF))
	if err != nil {
		return 0, 0, fmt.Errorf("reading the embedded restore stub: %w", err)
	}
	start = ^uint64(0)
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD {
			continue
		}
		start = min(start, p.Vaddr&^(4096-1))
		end = max(end, pageRound(p.Vaddr+p.Memsz))
	}
	if end == 0 {
		return 0, 0, fmt.Errorf("the embedded restore stub has no loadable segment")
	}
	return start, end, nil
}
