/*
 * interpose.c: notices when the program takes over a signal the library
 * needs, and keeps the program from seeing the Go runtime's start half-done.
 * These definitions interpose on glibc's (the library is preloaded); they
 * warn once, wait for the runtime if they must (ck_wait_go), and then do
 * exactly what glibc would.  (The runtime installs its signal handlers on
 * the loading thread, before main(): sigaction need not wait.)
 */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cc_shim/capture.h"

/* glibc's own entry point behind sigaction(), exported for this. */
extern int __sigaction(int sig, const struct sigaction *act, struct sigaction *old);

static void ck_warn_takeover(int sig)
{
	static int warned[2];
	static const char trigger[] =
		"ckpt: the program installs its own handler for the checkpoint signal; "
		"checkpoints need CKPT_SIGNAL set to another signal\n";
	static const char freeze[] =
		"ckpt: the program installs a handler for signal 63, which checkpoints need; "
		"checkpoints will fail\n";
	int which = sig == ck_trigger ? 0 : 1;
	ssize_t r;

	if (warned[which])
		return;
	warned[which] = 1;
	r = which == 0 ? write(2, trigger, sizeof(trigger) - 1) : write(2, freeze, sizeof(freeze) - 1);
	(void)r;
}

int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	if (act != NULL && (sig == ck_trigger || sig == CK_FREEZE_SIG))
		ck_warn_takeover(sig);
	return __sigaction(sig, act, old);
}

sighandler_t signal(int sig, sighandler_t handler)
{
	struct sigaction sa, old;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sa.sa_flags = SA_RESTART; /* glibc's signal() has BSD semantics */
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, sig);
	if (sigaction(sig, &sa, &old) < 0)
		return SIG_ERR;
	return old.sa_handler;
}

/* The runtime raises the soft RLIMIT_NOFILE as it starts and go/lib puts it
 * back: the program must see neither.  (glibc's 64-bit names are aliases of
 * the same calls.) */
static int ck_prlimit(pid_t pid, int resource, const struct rlimit *new, struct rlimit *old)
{
	ck_wait_go();
	return (int)syscall(SYS_prlimit64, pid, resource, new, old);
}

int getrlimit(__rlimit_resource_t resource, struct rlimit *rl)
{
	return ck_prlimit(0, resource, NULL, rl);
}
int getrlimit64(__rlimit_resource_t resource, struct rlimit64 *rl)
{
	return ck_prlimit(0, resource, NULL, (struct rlimit *)rl);
}
int setrlimit(__rlimit_resource_t resource, const struct rlimit *rl)
{
	return ck_prlimit(0, resource, rl, NULL);
}
int setrlimit64(__rlimit_resource_t resource, const struct rlimit64 *rl)
{
	return ck_prlimit(0, resource, (const struct rlimit *)rl, NULL);
}
int prlimit(pid_t pid, __rlimit_resource_t resource, const struct rlimit *new, struct rlimit *old)
{
	return ck_prlimit(pid, resource, new, old);
}
int prlimit64(pid_t pid, __rlimit_resource_t resource, const struct rlimit64 *new, struct rlimit64 *old)
{
	return ck_prlimit(pid, resource, (const struct rlimit *)new, (struct rlimit *)old);
}
