/*
 * interpose.c: notices when the program takes over a signal the library
 * needs.  These definitions interpose on glibc's (the library is
 * preloaded); they warn once and then do exactly what glibc would.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
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
