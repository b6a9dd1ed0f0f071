package main

import (
	"github.com/ckpt/ckpt/go/procfs"
	"golang.org/x/sys/unix"
)

// waitLoaded waits until restart has put every page of this restored
// process in place (lazy loading, go/restart/lazy.go).  Until then pages
// are missing, and reading them through /proc/CHILD/mem, as a checkpoint
// does, fails: the kernel does not wait for a userfaultfd there.  The
// areas restart still fills have "um" among their VmFlags.
func waitLoaded() {
	for {
		smaps, err := procfs.ReadFile("/proc/self/smaps")
		if err != nil || !loading(smaps) {
			return
		}
		unix.Nanosleep(&unix.Timespec{Nsec: 5e6}, nil)
	}
}

// loading reports whether any mapping in smaps is registered for missing
// pages with a userfaultfd.
func loading(smaps []byte) bool {
	for _, s := range smapsAreas(smaps) {
		if s.has("um") {
			return true
		}
	}
	return false
}
