package restart

import (
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// signalRelay catches every signal restart gets, from the moment Run
// starts: os/signal enables each signal by a round trip to a thread of its
// own, which takes 2-3 ms, over 10 on a busy machine, and would delay the
// restored program if done just before it starts.  Run reads the image's
// metadata meanwhile (3-5 ms for a 2 GiB image of one-page runs) and waits
// for it before it checks the data, unless it skips the check (--lazy):
// a signal that comes before may be dropped, like one that comes before
// restart's own start, but one sent while the data is checked (hundreds
// of milliseconds at 256 MiB) must not be.
//
// Until the program is started a signal does what it does to any Go
// program: SIGINT, SIGTERM and the like end restart (a Ctrl-C while the
// image is checked ends restart, not the program it was about to start),
// SIGTSTP and the like stop it.  The signals Go would have dropped
// (SIGUSR1, SIGUSR2, SIGALRM, real-time signals) are kept and forwarded
// once the program runs: a checkpoint request (SIGUSR2) a scheduler sends
// while restart is still loading is not lost.  Then Run forwards every
// signal (handOver).
type signalRelay struct {
	sigs    chan os.Signal
	ready   chan struct{} // closed once every signal is caught
	stop    chan struct{} // closed by handOver or close
	stopped chan struct{} // closed when early returns
	kept    []os.Signal   // for the program, in the order they came
}

func relaySignals() *signalRelay {
	r := &signalRelay{sigs: make(chan os.Signal, 64), ready: make(chan struct{}),
		stop: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		signal.Notify(r.sigs)
		close(r.ready)
	}()
	go r.early()
	return r
}

// early handles signals until the program is started.
func (r *signalRelay) early() {
	defer close(r.stopped)
	for {
		select {
		case <-r.stop:
			return
		case sig := <-r.sigs:
			switch s := sig.(syscall.Signal); s {
			case unix.SIGCHLD, unix.SIGURG, unix.SIGWINCH, unix.SIGCONT:
				// Nothing to do, nothing the program missed.
			case unix.SIGHUP, unix.SIGINT, unix.SIGTERM, unix.SIGQUIT, unix.SIGILL, unix.SIGTRAP,
				unix.SIGABRT, unix.SIGSTKFLT, unix.SIGSYS, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU:
				// Go's own action: end restart, or stop it until
				// it is continued.
				signal.Reset(s)
				unix.Kill(os.Getpid(), s)
				signal.Notify(r.sigs, s)
			default:
				if len(r.kept) < cap(r.sigs) {
					r.kept = append(r.kept, sig)
				}
			}
		}
	}
}

// caught waits until every signal is caught.
func (r *signalRelay) caught() { <-r.ready }

// handOver ends the early handling.  It returns the signals kept for the
// program and the channel the next ones come in on, for the caller to
// forward them.
func (r *signalRelay) handOver() ([]os.Signal, <-chan os.Signal) {
	<-r.ready
	close(r.stop)
	<-r.stopped
	return r.kept, r.sigs
}

// close stops catching signals.
func (r *signalRelay) close() {
	<-r.ready
	signal.Stop(r.sigs)
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	<-r.stopped
}
