/* hello: counts, one line per tick (default 1 s, or argv[1] milliseconds).
 * The round trip checks that a restarted copy goes on from where the
 * checkpoint left it. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv)
{
	long ms = argc > 1 ? atol(argv[1]) : 1000;
	struct timespec tick = {ms / 1000, (ms % 1000) * 1000000};

	for (unsigned long i = 1;; i++) {
		printf("%lu\n", i);
		fflush(stdout);
		nanosleep(&tick, NULL);
	}
}
