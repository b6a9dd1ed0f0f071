/*
 * ctor.c: arms the checkpoint trigger before the program's main() runs.
 *
 * Order matters.  The priority-101 constructor runs before the Go runtime of
 * libckpt.so starts its threads, so blocking the trigger there means no Go
 * thread ever has it unblocked (a Go thread must never run the handler: Go
 * would be frozen by the snapshot it is asked to write).  The default-priority
 * constructor runs after the runtime started; it installs the handler and
 * unblocks the trigger on the program's main thread only.  Threads the program
 * creates later inherit main's mask, so any program thread may take the
 * signal; the handler passes it on to the main thread.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cc_shim/capture.h"

int ckpt_wake_fd[2] = {-1, -1};
int ck_trigger = SIGUSR2;
static int ck_secure; /* AT_SECURE: the library stays inert */
struct rlimit ckpt_nofile; /* RLIMIT_NOFILE before the Go runtime started */

/* Exported by go/lib; returns once the Go runtime's initialization is done. */
extern void ckptGoReady(void);

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

__attribute__((constructor(101))) static void ck_early(void)
{
	const char *s = getenv("CKPT_SIGNAL");
	sigset_t set;

	getrlimit(RLIMIT_NOFILE, &ckpt_nofile);
	/* Never in a setuid or setgid program: its image would hold what the
	 * user may not read.  (The loader ignores LD_PRELOAD there unless the
	 * library is in a trusted directory and itself setuid.) */
	if (getauxval(AT_SECURE)) {
		ck_secure = 1;
		return;
	}
	if (s && *s) {
		int sig = ck_parse_signal(s);
		if (sig)
			ck_trigger = sig;
		else
			ck_log("ckpt: CKPT_SIGNAL is not a usable signal; using SIGUSR2\n");
	}
	if (pipe2(ckpt_wake_fd, O_CLOEXEC) != 0)
		ck_log("ckpt: cannot create the wake pipe; checkpoints are disabled\n");

	sigemptyset(&set);
	sigaddset(&set, ck_trigger);
	sigprocmask(SIG_BLOCK, &set, NULL);
}

__attribute__((constructor)) static void ck_arm(void)
{
	struct sigaction sa;
	sigset_t set;

	/* Wait for the Go runtime's package initialization, which runs on its
	 * own thread, so that it cannot race with main() (Go raises
	 * RLIMIT_NOFILE at init; ckptGoReady puts it back). */
	ckptGoReady();
	if (ck_secure || ckpt_wake_fd[1] < 0)
		return;
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
	sigemptyset(&set);
	sigaddset(&set, ck_trigger);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
}
