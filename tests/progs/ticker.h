/* ticker.h: the loop every test program shares.  Each tick calls check(),
 * which returns 0 or prints why the program's state is wrong; then the
 * program prints its tick number.  A FAIL line makes the test fail. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

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
		nanosleep(&t, NULL);
	}
}

static inline long tick_ms(int argc, char **argv)
{
	return argc > 1 ? atol(argv[1]) : 200;
}
