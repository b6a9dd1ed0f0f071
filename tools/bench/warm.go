package main

import "syscall"

// warm maps n bytes of memory, has the kernel fill them, and frees them,
// right before a measurement that writes about as much into the page cache.
//
// This machine is a VM whose balloon hands memory left free for a few
// seconds back to the host (virtio free page reporting), and the first
// touch of such memory faults in the host.  Writing 1 GiB into the page
// cache took 2.4 s into memory freed long before and 0.2 s into memory
// freed just before; dd, run right after the checkpointed program was
// killed, always wrote into the 2 GiB the program had just freed, and the
// checkpoint into whatever was free when it came.  Freeing as much memory
// as the write needs right before each checkpoint and each dd gives both
// the same start, so that the ratio shows what the disk allows, as it
// would on a machine without a balloon.
func warm(n int64) error {
	b, err := syscall.Mmap(-1, 0, int(n), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS|syscall.MAP_POPULATE)
	if err != nil {
		return err
	}
	return syscall.Munmap(b)
}
