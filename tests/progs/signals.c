/* signals: the program's own signal state.  A SIGUSR1 handler counts, a
 * SIGALRM handler runs on the program's own sigaltstack and checks that it
 * does, SIGTERM stays blocked in the mask, and SIGHUP is ignored.  Every
 * tick raises SIGUSR1 and SIGHUP, arms a short alarm, and checks all of it. */
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/time.h>
#include "tests/progs/ticker.h"

static char altstack[64 * 1024];
static volatile sig_atomic_t usr1, alarms, alarm_on_altstack = 1;

static void on_usr1(int sig)
{
	(void)sig;
	usr1++;
}

static void on_alarm(int sig)
{
	char here;

	(void)sig;
	alarms++;
	if ((uintptr_t)&here < (uintptr_t)altstack || (uintptr_t)&here >= (uintptr_t)altstack + sizeof(altstack))
		alarm_on_altstack = 0;
}

static int check(unsigned long tick)
{
	sigset_t mask;
	struct sigaction sa;
	stack_t ss;
	sig_atomic_t before = usr1;
	struct itimerval it = {{0, 0}, {0, 20000}};

	raise(SIGUSR1);
	raise(SIGHUP);
	if (usr1 != before + 1) {
		printf("the SIGUSR1 handler did not run\n");
		return 1;
	}
	sigprocmask(SIG_BLOCK, NULL, &mask);
	if (!sigismember(&mask, SIGTERM)) {
		printf("SIGTERM is no longer blocked\n");
		return 1;
	}
	sigaction(SIGHUP, NULL, &sa);
	if (sa.sa_handler != SIG_IGN) {
		printf("SIGHUP is no longer ignored\n");
		return 1;
	}
	if (sigaltstack(NULL, &ss) || ss.ss_sp != altstack || ss.ss_size != sizeof(altstack)) {
		printf("the sigaltstack changed\n");
		return 1;
	}
	if (!alarm_on_altstack || (tick > 3 && alarms == 0)) {
		printf("SIGALRM did not run on the sigaltstack\n");
		return 1;
	}
	setitimer(ITIMER_REAL, &it, NULL);
	return 0;
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	stack_t ss = {.ss_sp = altstack, .ss_size = sizeof(altstack)};
	sigset_t term;

	sigaltstack(&ss, NULL);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_alarm;
	sa.sa_flags = SA_ONSTACK;
	sigaction(SIGALRM, &sa, NULL);
	signal(SIGHUP, SIG_IGN);
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigprocmask(SIG_BLOCK, &term, NULL);
	tick_loop(tick_ms(argc, argv), check);
}
