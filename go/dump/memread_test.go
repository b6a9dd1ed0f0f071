package dump

import (
	"bytes"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestMemReader reads this process's memory: readable pages, pages made
// unreadable since they were written (which /proc/PID/mem still reads, and
// an image must hold), and an unmapped page, which fails.
func TestMemReader(t *testing.T) {
	const P = 4096
	mem, err := unix.Mmap(-1, 0, 4*P, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	for i := range mem {
		mem[i] = byte(i/P + 1)
	}
	want := bytes.Clone(mem[:3*P])
	if err := unix.Mprotect(mem[P:2*P], unix.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	if err := unix.MunmapPtr(unsafe.Pointer(&mem[3*P]), P); err != nil {
		t.Fatal(err)
	}
	m, err := openMem("/proc/self", unix.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	addr := uint64(uintptr(unsafe.Pointer(&mem[0])))
	got := make([]byte, 3*P)
	if err := m.read(got, addr); err != nil {
		t.Fatalf("reading readable and protected pages: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("read other bytes than the memory holds")
	}
	if err := m.read(make([]byte, 2*P), addr+2*P); err == nil {
		t.Errorf("reading past the end of the mapping succeeded")
	}
}
