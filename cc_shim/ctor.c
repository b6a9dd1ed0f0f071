/*
 * ctor.c: arms the checkpoint trigger before the program's main() runs.
 *
 * Order matters.  The priority-101 constructor runs before the Go runtime of
 * libckpt.so starts its threads, so blocking the trigger there means no Go
 * thread ever has it unblocked (a Go thread must never run the handler: Go
 * would be frozen by the snapshot it is asked to write); the same goes for
 * every other signal the program may be sent.  It also installs the
 * handlers.  The default-priority constructor runs after the runtime's first
 * thread exists and unblocks the trigger on the program's main thread only.
 * Threads the program creates later inherit main's mask, so any program
 * thread may take the signal.
 *
 * main() does not wait for the Go runtime to finish starting (that would
 * add milliseconds to every program start).  The runtime installs its signal
 * handlers before main(), on the loading thread; what its start changes later
 * that a program could see, RLIMIT_NOFILE, the program's main thread waits
 * for in interpose.c, and only if it asks that early.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cc_shim/capture.h"

int ckpt_wake_fd[2] = {-1, -1};
int ck_trigger = SIGUSR2;
static int ck_armed; /* handlers installed: unblock the trigger */
static int ck_masked; /* ck_early blocked signals; ck_arm puts back: */
static sigset_t ck_main_mask;
static pid_t ck_ctor_pid; /* the process that loaded the library */
struct rlimit ckpt_nofile; /* RLIMIT_NOFILE before the Go runtime started */
char ckpt_start_cwd[4096];
static int ck_go_started; /* set by ck_go_ready; futex word */

void ck_handler(int sig, siginfo_t *si, void *uc);
void ck_freeze_handler(int sig, siginfo_t *si, void *uc);

/* glibc's sigaction itself: ours (interpose.c) warns about takeovers. */
extern int __sigaction(int sig, const struct sigaction *act, struct sigaction *old);

/* ck_parse_signal accepts "12", "USR2" or "SIGUSR2"; 0 means not valid. */
static int ck_parse_signal(const char *s)
{
	static const struct { const char *name; int sig; } names[] = {
		{"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"HUP", SIGHUP},
		{"TERM", SIGTERM}, {"INT", SIGINT}, {"PWR", SIGPWR},
		{"XCPU", SIGXCPU}, {"WINCH", SIGWINCH},
	};
	char *end;
	long n;
	size_t i;

	if (strncmp(s, "SIG", 3) == 0)
		s += 3;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i].name) == 0)
			return names[i].sig;
	errno = 0;
	n = strtol(s, &end, 10);
	if (errno || *end || end == s || n < 1 || n > 64 || n == SIGKILL ||
	    n == SIGSTOP || n == SIGSEGV || n == SIGBUS || n == SIGFPE ||
	    n == SIGILL || n == SIGURG || n == SIGPROF || n == 32 || n == 33 ||
	    n == CK_FREEZE_SIG)
		return 0;
	return (int)n;
}

void ck_go_ready(void)
{
	__atomic_store_n(&ck_go_started, 1, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, &ck_go_started, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

void ck_wait_go(void)
{
	/* Only the program's first thread, in the process that loaded the
	 * library: a forked child never sees the runtime finish. */
	if (ck_ctor_pid == 0 || getpid() != ck_ctor_pid || gettid() != ck_ctor_pid)
		return;
	while (!__atomic_load_n(&ck_go_started, __ATOMIC_SEQ_CST))
		syscall(SYS_futex, &ck_go_started, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
}

/* ck_early runs before the Go runtime starts (the constructor priority puts
 * it ahead of the runtime's own initializer).  The runtime then starts on a
 * thread of its own and the program's main() does not wait for it: the
 * handlers are installed here, and the program's signals are blocked while
 * the runtime's first thread is created, so that no Go thread takes them. */
__attribute__((constructor(101))) static void ck_early(void)
{
	const char *s = getenv("CKPT_SIGNAL");
	struct sigaction sa;
	sigset_t set;

	ck_ctor_pid = getpid();
	syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, &ckpt_nofile);
	if (getcwd(ckpt_start_cwd, sizeof(ckpt_start_cwd)) == NULL)
		ckpt_start_cwd[0] = 0;
	/* Never in a setuid or setgid program: its image would hold what the
	 * user may not read.  (The loader ignores LD_PRELOAD there unless the
	 * library is in a trusted directory and itself setuid.) */
	if (getauxval(AT_SECURE))
		return;
	/* Block every signal but the freeze and the faults while the runtime
	 * creates its first thread: all Go threads inherit that mask, so
	 * signals for the program (the trigger, an alarm, SIGCHLD, SIGTERM)
	 * always reach one of the program's own threads and run on its
	 * stacks.  The runtime unblocks what it needs itself (SIGURG). */
	sigfillset(&set);
	sigdelset(&set, CK_FREEZE_SIG);
	sigdelset(&set, SIGSEGV);
	sigdelset(&set, SIGBUS);
	sigdelset(&set, SIGFPE);
	sigdelset(&set, SIGILL);
	sigdelset(&set, SIGTRAP);
	sigdelset(&set, SIGSYS);
	ck_masked = sigprocmask(SIG_BLOCK, &set, &ck_main_mask) == 0;
	if (s && *s) {
		int sig = ck_parse_signal(s);
		if (sig)
			ck_trigger = sig;
		else
			ck_log("ckpt: CKPT_SIGNAL is not a usable signal; using SIGUSR2\n");
	}
	if (pipe2(ckpt_wake_fd, O_CLOEXEC) != 0) {
		ck_log("ckpt: cannot create the wake pipe; checkpoints are disabled\n");
		return;
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = ck_handler;
	sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
	/* Nothing asynchronous interrupts the capture; faults still do. */
	sigfillset(&sa.sa_mask);
	sigdelset(&sa.sa_mask, SIGSEGV);
	sigdelset(&sa.sa_mask, SIGBUS);
	sigdelset(&sa.sa_mask, SIGFPE);
	sigdelset(&sa.sa_mask, SIGILL);
	if (__sigaction(ck_trigger, &sa, NULL) != 0) {
		ck_log("ckpt: cannot install the trigger handler\n");
		return;
	}
	/* The freeze handler may run on any thread, Go's included: on the
	 * thread's signal stack, and interrupting nothing that it would not
	 * come back to. */
	sa.sa_sigaction = ck_freeze_handler;
	if (__sigaction(CK_FREEZE_SIG, &sa, NULL) != 0) {
		ck_log("ckpt: cannot install the freeze handler\n");
		return;
	}
	ck_armed = 1;
}

/* ck_arm runs after the runtime's initializer has created its first thread
 * (with ck_early's mask), gives the program's main thread its own mask back
 * and lets the trigger reach it.  A signal that came meanwhile is delivered
 * now; the Go coordinator serves a trigger once the runtime is up. */
__attribute__((constructor)) static void ck_arm(void)
{
	sigset_t set = ck_main_mask;

	if (!ck_masked)
		return;
	if (ck_armed)
		sigdelset(&set, ck_trigger);
	sigprocmask(SIG_SETMASK, &set, NULL);
}
