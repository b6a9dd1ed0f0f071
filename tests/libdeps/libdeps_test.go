// Package libdeps checks what libckpt.so brings into every program that
// preloads it.  Each library it needs is loaded, relocated and initialised
// in every program's start, checkpointed or not: libm, which the C
// toolchain linked by default and nothing called, cost about 0.35 ms and
// 23 page faults of each start on a slow day of the development VM.
package libdeps

import (
	"debug/elf"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

// lib is relative to the runfiles root; go_test runs in the package's
// directory under it.
var lib = flag.String("lib", "", "path of libckpt.so in the runfiles")

// allowed is what a c-shared Go library with cgo needs on glibc.
var allowed = map[string]bool{"libc.so.6": true, "ld-linux-x86-64.so.2": true}

func TestNeeded(t *testing.T) {
	path := filepath.Join(os.Getenv("TEST_SRCDIR"), os.Getenv("TEST_WORKSPACE"), *lib)
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	needed, err := f.ImportedLibraries()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(needed) == 0 {
		t.Fatalf("%s needs no library at all: not the c-shared library this test is for", *lib)
	}
	for _, n := range needed {
		if !allowed[n] {
			t.Errorf("%s needs %s: every program started with the library would load it", *lib, n)
		}
	}
}
