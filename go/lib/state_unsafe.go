package main

/*
#include "cc_shim/shim.h"
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/ckpt/ckpt/go/image"
	"golang.org/x/sys/unix"
)

// captured is what the handler stored in struct ck_state, in image terms.
type captured struct {
	process image.Process
	threads []image.Thread
	files   []image.File // FD, flags and offset only
	dropped int          // descriptors beyond CK_MAX_FDS
	pauseNS int64        // from the freeze to the snapshot child's birth
}

// readState copies struct ck_state out of the snapshot child.  The parent's
// copy may already be changing (the program runs on); the child's is the
// one that matches the image.
func readState(child int) (*captured, error) {
	var st C.struct_ck_state
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&st)), unsafe.Sizeof(st))
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/mem", child), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	n, err := unix.Pread(fd, buf, int64(uintptr(unsafe.Pointer(&C.ckpt_state))))
	if err != nil {
		return nil, err
	}
	if n != len(buf) {
		return nil, fmt.Errorf("short read of %d bytes", n)
	}
	c := &captured{}
	p := &c.process
	p.PID = int32(st.pid)
	p.Signal = int32(st.signo)
	p.Brk = image.Addr(st.brk)
	p.RestoreInfo = image.Addr(uintptr(unsafe.Pointer(&C.ckpt_restore_info)))
	for i := range p.Sigactions {
		a := &st.act[i]
		p.Sigactions[i] = image.Sigaction{Handler: uint64(a.handler), Flags: uint64(a.flags),
			Restorer: uint64(a.restorer), Mask: uint64(a.mask)}
	}
	for i := range p.Itimers {
		it := &st.itimer[i]
		p.Itimers[i] = image.Itimer{IntervalSec: int64(it.interval_sec), IntervalUsec: int64(it.interval_usec),
			ValueSec: int64(it.value_sec), ValueUsec: int64(it.value_usec)}
	}
	for i := 0; i < int(st.nfds) && i < len(st.fds); i++ {
		f := &st.fds[i]
		file := image.File{FD: int32(f.fd), FDFlags: uint32(f.fd_flags),
			Flags: uint32(f.status_flags), Offset: int64(f.offset)}
		if f.size >= 0 {
			file.Size = uint64(f.size)
		}
		c.files = append(c.files, file)
	}
	c.dropped = int(st.fds_dropped) + int(st.timers_dropped)
	for i := 0; i < int(st.ntimers) && i < len(st.timers); i++ {
		t := &st.timers[i]
		p.Timers = append(p.Timers, image.PosixTimer{ID: int32(t.id), Clock: int32(t.clock),
			Signal: int32(t.signo), Notify: int32(t.notify), TID: int32(t.tid), Value: uint64(t.value),
			IntervalSec: int64(t.interval_sec), IntervalNsec: int64(t.interval_nsec),
			ValueSec: int64(t.value_sec), ValueNsec: int64(t.value_nsec)})
	}
	nt := int(st.nthreads)
	if nt < 1 || nt > len(st.threads) {
		return nil, fmt.Errorf("%d threads captured", nt)
	}
	for i := 0; i < nt; i++ {
		t := &st.threads[i]
		th := image.Thread{
			TID: int32(t.tid),
			RBX: uint64(t.point.rbx), RBP: uint64(t.point.rbp), R12: uint64(t.point.r12),
			R13: uint64(t.point.r13), R14: uint64(t.point.r14), R15: uint64(t.point.r15),
			RSP: uint64(t.point.rsp), RIP: uint64(t.point.rip),
			FSBase: image.Addr(t.fs_base), RobustHead: image.Addr(t.robust_head),
			RobustLen: uint64(t.robust_len), ClearChildTID: image.Addr(t.clear_child_tid),
			RseqAddr: image.Addr(t.rseq_addr), RseqLen: uint32(t.rseq_len), RseqSig: uint32(t.rseq_sig),
			AltstackSP: image.Addr(t.altstack_sp), AltstackSize: uint64(t.altstack_size),
			AltstackFlags: int32(t.altstack_flags),
			Name:          C.GoString(&t.name[0]),
		}
		if t.flags&C.CK_THREAD_COORDINATOR != 0 {
			th.Flags |= image.ThreadCoordinator
		}
		c.threads = append(c.threads, th)
	}
	// The parent's copy, written after the thaw: the child's predates it.
	c.pauseNS = int64(C.ckpt_pause_ns)
	return c, nil
}
