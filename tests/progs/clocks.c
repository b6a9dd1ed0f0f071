/* clocks: reads the clocks through the vDSO every tick (clock_gettime,
 * gettimeofday, time) and checks that they never go backwards.  Without the
 * vDSO moved back to its old address, the first call after a restart
 * crashes. */
#include <sys/time.h>
#include "tests/progs/ticker.h"

static struct timespec last_mono, last_real;

static int later(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec > b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec >= b->tv_nsec);
}

static int check(unsigned long tick)
{
	struct timespec mono, real, boot;
	struct timeval tv;

	(void)tick;
	if (clock_gettime(CLOCK_MONOTONIC, &mono) || clock_gettime(CLOCK_REALTIME, &real) ||
	    clock_gettime(CLOCK_BOOTTIME, &boot) || gettimeofday(&tv, NULL)) {
		printf("clock call failed\n");
		return 1;
	}
	if (!later(&mono, &last_mono) || !later(&real, &last_real)) {
		printf("clock went backwards\n");
		return 1;
	}
	if (time(NULL) + 1 < real.tv_sec || tv.tv_sec + 1 < real.tv_sec) {
		printf("time() and gettimeofday() disagree with CLOCK_REALTIME\n");
		return 1;
	}
	last_mono = mono;
	last_real = real;
	return 0;
}

int main(int argc, char **argv)
{
	tick_loop(tick_ms(argc, argv), check);
}
