/* files: kernel state beyond memory.  At start it moves into a directory of
 * its own, sets a umask and a resource limit, opens a log (appending), an
 * input file it reads one line per tick, a scratch file it then deletes, and
 * a pipe, and starts an interval timer.  Every tick it checks all of it:
 * the log holds exactly the ticks before this one (no duplicates after a
 * restart), the input continues at the right line, the deleted file still
 * has its contents, the directory, umask and limit are unchanged, and the
 * interval timer and a POSIX timer (same ID) still fire.  Then it logs the
 * tick. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include "tests/progs/ticker.h"

static FILE *input;
static int logfd, scratch, pipefd[2];
static char wd[4096];
static volatile sig_atomic_t alarms, usr1s;
static sig_atomic_t alarms_seen, usr1s_seen;
static timer_t posix_timer;
static const char secret[] = "the scratch file's contents";

static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

static void on_usr1(int sig)
{
	(void)sig;
	usr1s++;
}

static int check_log(unsigned long tick)
{
	char buf[16];
	unsigned long want = 1, got;
	FILE *f = fopen("log.txt", "r");

	if (!f) {
		printf("cannot read log.txt: %s\n", strerror(errno));
		return 1;
	}
	while (fgets(buf, sizeof(buf), f)) {
		got = strtoul(buf, NULL, 10);
		if (got != want) {
			printf("log.txt has %lu where %lu belongs\n", got, want);
			fclose(f);
			return 1;
		}
		want++;
	}
	fclose(f);
	if (want != tick) {
		printf("log.txt ends at %lu before tick %lu\n", want - 1, tick);
		return 1;
	}
	return 0;
}

static int check(unsigned long tick)
{
	char line[32], buf[64], here[4096];
	struct rlimit rl;
	mode_t mask;

	if (check_log(tick))
		return 1;
	if (!fgets(line, sizeof(line), input) || strtoul(line, NULL, 10) != tick * 3) {
		printf("input.txt: line for tick %lu is wrong\n", tick);
		return 1;
	}
	/* The secret is in each of 3 MiB, at a different place in each (the
	 * image stores them as separate chunks). */
	for (int mib = 0; mib < 3; mib++) {
		memset(buf, 0, sizeof(buf));
		if (pread(scratch, buf, sizeof(secret), ((off_t)mib << 20) + mib * 64) != sizeof(secret) ||
		    strcmp(buf, secret) != 0) {
			printf("the deleted scratch file lost its contents at %d MiB\n", mib);
			return 1;
		}
	}
	if (!getcwd(here, sizeof(here)) || strcmp(here, wd) != 0) {
		printf("working directory is %s, not %s\n", here, wd);
		return 1;
	}
	mask = umask(027);
	if (mask != 027) {
		printf("umask is %o, not 027\n", (unsigned)mask);
		return 1;
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur != 200) {
		printf("RLIMIT_NOFILE is %lu, not 200\n", (unsigned long)rl.rlim_cur);
		return 1;
	}
	if (write(pipefd[1], "x", 1) < 0 && errno != EBADF) {
		/* a replaced pipe may refuse writes, but never crashes us */
	}
	/* Alarms cut most sleeps short; look over 5 ticks, each cut short
	 * by something. */
	if (tick % 5 == 0) {
		if (tick > 5 && alarms == alarms_seen) {
			printf("the interval timer stopped\n");
			return 1;
		}
		alarms_seen = alarms;
		if (tick > 5 && usr1s == usr1s_seen) {
			printf("the POSIX timer stopped\n");
			return 1;
		}
		usr1s_seen = usr1s;
	}
	struct itimerspec its;
	if (timer_gettime(posix_timer, &its) != 0 || its.it_interval.tv_nsec != 30000000) {
		printf("the POSIX timer is gone or changed\n");
		return 1;
	}
	dprintf(logfd, "%lu\n", tick);
	return 0;
}

int main(int argc, char **argv)
{
	struct rlimit rl;
	struct itimerval it = {{0, 50000}, {0, 50000}};
	FILE *in;

	if (mkdir("files.wd", 0755) && errno != EEXIST) {
		printf("FAIL mkdir\n");
		return 1;
	}
	if (chdir("files.wd") || !getcwd(wd, sizeof(wd))) {
		printf("FAIL chdir\n");
		return 1;
	}
	umask(027);
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = 200;
	setrlimit(RLIMIT_NOFILE, &rl);
	in = fopen("input.txt", "w");
	for (int i = 1; i <= 100000; i++)
		fprintf(in, "%d\n", i * 3);
	fclose(in);
	input = fopen("input.txt", "r");
	unlink("log.txt");
	logfd = open("log.txt", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	scratch = open("scratch", O_RDWR | O_CREAT | O_EXCL, 0600);
	if (!input || logfd < 0 || scratch < 0 || pipe(pipefd)) {
		printf("FAIL setting up files\n");
		return 1;
	}
	for (int mib = 0; mib < 3; mib++)
		if (pwrite(scratch, secret, sizeof(secret), ((off_t)mib << 20) + mib * 64) != sizeof(secret)) {
			printf("FAIL writing the scratch file\n");
			return 1;
		}
	unlink("scratch");
	signal(SIGALRM, on_alarm);
	setitimer(ITIMER_REAL, &it, NULL);
	struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1};
	struct itimerspec its = {{0, 30000000}, {0, 30000000}};
	signal(SIGUSR1, on_usr1);
	if (timer_create(CLOCK_MONOTONIC, &sev, &posix_timer) || timer_settime(posix_timer, 0, &its, NULL)) {
		printf("FAIL timer_create\n");
		return 1;
	}
	tick_loop(tick_ms(argc, argv), check);
}
