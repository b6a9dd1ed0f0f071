package restart

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// stubProcess is the started stub, the only child restart waits for.
//
// It is started with syscall.ForkExec, not os.StartProcess: os probes
// once per process whether pidfds work, by forking and waiting for a child
// that exits at once, which cost every restart about 0.65 ms just before
// the stub could start (medians of 60 here).  The pidfd comes from the
// stub's own clone instead.
type stubProcess struct {
	pid   int
	pidfd int // -1 where clone gave none (Linux before 5.2)
}

// startStub starts path with args and no environment; files[i] becomes
// the child's descriptor i (^uintptr(0): closed).  The child dies with
// the thread that started it (Pdeathsig).
func startStub(path string, args []string, files []uintptr) (*stubProcess, error) {
	p := &stubProcess{pidfd: -1}
	pid, err := syscall.ForkExec(path, args, &syscall.ProcAttr{Env: []string{}, Files: files,
		Sys: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, PidFD: &p.pidfd}})
	if err != nil {
		return nil, err
	}
	p.pid = pid
	return p, nil
}

// signal sends sig to the stub.  Through the pidfd it never reaches
// another process that took the PID after the stub was waited for.
func (p *stubProcess) signal(sig syscall.Signal) {
	if p.pidfd >= 0 {
		unix.PidfdSendSignal(p.pidfd, sig, nil, 0)
		return
	}
	syscall.Kill(p.pid, sig)
}

// wait waits for the stub to end.
func (p *stubProcess) wait() (syscall.WaitStatus, error) {
	for {
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(p.pid, &ws, 0, nil); !errors.Is(err, syscall.EINTR) {
			return ws, err
		}
	}
}

// close closes the pidfd: after it, signal may not be called.
func (p *stubProcess) close() {
	if p.pidfd >= 0 {
		unix.Close(p.pidfd)
	}
}
