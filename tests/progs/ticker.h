/* ticker.h: the loop every test program shares.  Each tick calls check(),
 * which returns 0 or prints why the program's state is wrong; then the
 * program prints its tick number.  A FAIL line makes the test fail. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Sleeps that ran their full length: signals (a checkpoint request, a
 * restore) cut sleeps short, so only these prove that time passed. */
static unsigned long full_sleeps;

/* With tick_mark set (tools/bench), a sleep that a signal cuts short prints
 * "wake" and goes on for the rest of its time: the first line a restored
 * program prints says that it runs again, before it does anything else. */
static int tick_mark;

/* progress_window is true once every 5 full sleeps since the last time it
 * was true: the moment to check that background threads made progress. */
static inline int progress_window(void)
{
	static unsigned long mark;

	if (full_sleeps - mark < 5)
		return 0;
	mark = full_sleeps;
	return 1;
}

static inline void tick_loop(long ms, int (*check)(unsigned long tick))
{
	struct timespec t = {ms / 1000, (ms % 1000) * 1000000};

	for (unsigned long i = 1;; i++) {
		if (check(i) != 0) {
			printf("FAIL at tick %lu\n", i);
			fflush(stdout);
			exit(1);
		}
		printf("%lu\n", i);
		fflush(stdout);
		struct timespec left = t;
		int rc;
		while ((rc = nanosleep(&left, &left)) != 0 && tick_mark) {
			printf("wake\n");
			fflush(stdout);
		}
		if (rc == 0)
			full_sleeps++;
	}
}

static inline long tick_ms(int argc, char **argv)
{
	return argc > 1 ? atol(argv[1]) : 200;
}
