package main

import (
	"github.com/ckpt/ckpt/go/procfs"
	"golang.org/x/sys/unix"
)

// waitLoaded waits until restart has put every page of this restored
// process in place (lazy loading, go/restart/lazy.go).  Until then pages
// are missing, and reading them through /proc/CHILD/mem, as a checkpoint
// does, fails: the kernel does not wait for a userfaultfd there.  The
// areas restart still fills have "um" among their VmFlags.  A wait that
// goes on (a big image on slow storage, or a loader that is stuck) is
// reported once, so that a checkpoint asked for does not just seem lost.
func waitLoaded(cfg *config) {
	var start, now unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &start)
	told := false
	for {
		smaps, err := procfs.ReadFile("/proc/self/smaps")
		if err != nil {
			return
		}
		n := loading(smaps)
		if n == 0 {
			return
		}
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &now)
		if !told && now.Nano()-start.Nano() > 2e9 {
			logf(cfg, "ckpt: the checkpoint waits until restart has loaded this process's memory (%d areas still loading)\n", n)
			told = true
		}
		unix.Nanosleep(&unix.Timespec{Nsec: 5e6}, nil)
	}
}

// loading returns how many mappings in smaps are registered for missing
// pages with a userfaultfd.
func loading(smaps []byte) int {
	n := 0
	for _, s := range smapsAreas(smaps) {
		if s.has("um") {
			n++
		}
	}
	return n
}
