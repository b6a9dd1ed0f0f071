/* deepstack: recurses 4000 frames deep (2 MiB of stack) and ticks at the
 * bottom, checking every frame's contents each tick.  Every 10 ticks it goes
 * 500 frames deeper, so a restored main stack must still grow. */
#include <string.h>
#include "tests/progs/ticker.h"

#define FRAME_BYTES 512
#define MAX_DEPTH 12000

static volatile unsigned char *frames[MAX_DEPTH];
static unsigned long depth_reached;

static int check(unsigned long tick)
{
	(void)tick;
	for (unsigned long d = 0; d < depth_reached; d++)
		for (int i = 0; i < FRAME_BYTES; i++)
			if (frames[d][i] != (unsigned char)(d * 7)) {
				printf("frame %lu corrupted\n", d);
				return 1;
			}
	return 0;
}

static void recurse(unsigned long depth, unsigned long limit, long ms)
{
	volatile unsigned char frame[FRAME_BYTES];
	struct timespec t = {ms / 1000, (ms % 1000) * 1000000};
	static unsigned long tick = 1;

	if (depth >= MAX_DEPTH)
		return;
	memset((void *)frame, (int)(unsigned char)(depth * 7), sizeof(frame));
	frames[depth] = frame;
	depth_reached = depth + 1;
	if (depth + 1 < limit) {
		recurse(depth + 1, limit, ms);
		return;
	}
	do {
		if (check(tick)) {
			printf("FAIL at tick %lu\n", tick);
			fflush(stdout);
			exit(1);
		}
		printf("%lu depth %lu\n", tick, depth + 1);
		fflush(stdout);
		nanosleep(&t, NULL);
	} while (++tick % 10 != 0 || limit + 500 > MAX_DEPTH);
	recurse(depth + 1, limit + 500, ms);
}

int main(int argc, char **argv)
{
	recurse(0, 4000, tick_ms(argc, argv));
}
