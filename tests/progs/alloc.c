/* alloc: 4 threads allocate and free nonstop (random sizes, each block
 * filled with a pattern checked before it is freed), the stress test's
 * target: checkpoints land in the middle of malloc and free.  With argv[2]
 * "spawn" a fifth thread also starts and joins short-lived threads nonstop
 * (each adds to a count and exits): checkpoints land while threads come
 * and go. */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include "tests/progs/ticker.h"

#define THREADS 4
#define SLOTS 512

static volatile unsigned long rounds[THREADS], spawned;
static volatile int corrupt;
static unsigned long last;
static int spawning;

static void *churn(void *arg)
{
	int me = (int)(long)arg;
	unsigned char *slot[SLOTS] = {0};
	size_t len[SLOTS] = {0};
	uint64_t x = 88172645463325252ULL + (uint64_t)me;

	for (;;) {
		for (int k = 0; k < 64; k++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			int i = (int)(x % SLOTS);
			if (slot[i]) {
				for (size_t j = 0; j < len[i]; j++)
					if (slot[i][j] != (unsigned char)(i + len[i]))
						corrupt = 1;
				free(slot[i]);
			}
			len[i] = 1 + (x >> 20) % 8192;
			slot[i] = malloc(len[i]);
			memset(slot[i], (unsigned char)(i + len[i]), len[i]);
		}
		rounds[me]++;
	}
	return NULL;
}

static void *brief(void *arg)
{
	__atomic_add_fetch(&spawned, 1, __ATOMIC_RELAXED);
	return arg;
}

static void *spawner(void *arg)
{
	for (;;) {
		pthread_t t;
		unsigned long before = spawned;
		if (pthread_create(&t, NULL, brief, arg) != 0 || pthread_join(t, NULL) != 0 || spawned != before + 1) {
			printf("FAIL: a short-lived thread did not run\n");
			fflush(stdout);
			exit(1);
		}
	}
	return NULL;
}

static int check(unsigned long tick)
{
	unsigned long sum = 0;

	for (int i = 0; i < THREADS; i++)
		sum += rounds[i];
	if (corrupt) {
		printf("a block lost its pattern\n");
		return 1;
	}
	(void)tick;
	if (progress_window()) {
		if (sum == last) {
			printf("the threads made no progress in 5 ticks\n");
			return 1;
		}
		last = sum;
		static unsigned long last_spawned;
		if (spawning && spawned == last_spawned) {
			printf("no thread was spawned in 5 ticks\n");
			return 1;
		}
		last_spawned = spawned;
	}
	return 0;
}

int main(int argc, char **argv)
{
	pthread_t t;

	for (long i = 0; i < THREADS; i++)
		pthread_create(&t, NULL, churn, (void *)i);
	if (argc > 2 && strcmp(argv[2], "spawn") == 0) {
		spawning = 1;
		pthread_create(&t, NULL, spawner, NULL);
	}
	tick_loop(tick_ms(argc, argv), check);
}
