/* scribble: writes its memory all the time, from a thread, while it is
 * checkpointed: what copying memory before the pause (go/lib/precopy.go)
 * must get right.  argv[2] MiB (default 128) of pages each hold their number
 * and version in every word; the versions are in an array of their own.
 * The writer thread picks a page, bumps its version and rewrites it,
 * pausing about argv[3] microseconds (default 20) between pages; a second
 * thread rewrites a 1 MiB area flat out, each word its index plus a round
 * counter.  Every tick the main thread stops both (between pages, between
 * rounds) and checks every word of both areas against the versions and
 * the round; a page restored from a copy older than its version shows. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include "tests/progs/ticker.h"

#define WORDS 512 /* per 4 KiB page */
#define HOT_WORDS (1 << 17)

static uint64_t *pages;
static uint64_t *version;
static size_t npages;
static long pause_us;
static uint64_t *hot, hot_round;

/* stop asks both threads to wait; stopped counts those that do. */
static int stop, stopped;

static void wait_while_stopped(void)
{
	if (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE))
		return;
	__atomic_add_fetch(&stopped, 1, __ATOMIC_ACQ_REL);
	while (__atomic_load_n(&stop, __ATOMIC_ACQUIRE))
		sched_yield();
	__atomic_sub_fetch(&stopped, 1, __ATOMIC_ACQ_REL);
}

static void *writer(void *arg)
{
	uint64_t rng = 88172645463325252ULL;
	struct timespec nap = {0, pause_us * 1000};

	(void)arg;
	for (;;) {
		wait_while_stopped();
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		size_t p = rng % npages;
		uint64_t v = ++version[p];
		for (size_t w = 0; w < WORDS; w++)
			pages[p * WORDS + w] = p << 32 | v;
		if (pause_us > 0)
			nanosleep(&nap, NULL);
	}
	return NULL;
}

static void *hot_writer(void *arg)
{
	(void)arg;
	for (;;) {
		wait_while_stopped();
		uint64_t r = __atomic_add_fetch(&hot_round, 1, __ATOMIC_RELAXED);
		for (size_t w = 0; w < HOT_WORDS; w++)
			hot[w] = w << 32 | r;
	}
	return NULL;
}

static int check(unsigned long tick)
{
	int bad = 0;

	(void)tick;
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	while (__atomic_load_n(&stopped, __ATOMIC_ACQUIRE) < 2)
		sched_yield();
	for (size_t p = 0; p < npages; p++)
		for (size_t w = 0; w < WORDS; w++)
			if (pages[p * WORDS + w] != (p << 32 | version[p])) {
				if (bad++ < 3)
					printf("page %zu word %zu reads %#lx, not version %lu\n", p, w,
					       (unsigned long)pages[p * WORDS + w], (unsigned long)version[p]);
				break;
			}
	if (bad > 3)
		printf("%d pages are not their version\n", bad);
	for (size_t w = 0; w < HOT_WORDS && !bad; w++)
		if (hot[w] != (w << 32 | hot_round)) {
			printf("hot word %zu reads %#lx, not round %lu\n", w, (unsigned long)hot[w],
			       (unsigned long)hot_round);
			bad = 1;
		}
	__atomic_store_n(&stop, 0, __ATOMIC_RELEASE);
	return bad;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 128;
	pthread_t t;

	pause_us = argc > 3 ? atol(argv[3]) : 20;
	npages = mib << 8;
	pages = mmap(NULL, npages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	version = mmap(NULL, npages * sizeof(*version), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	hot = mmap(NULL, HOT_WORDS * sizeof(*hot), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (pages == MAP_FAILED || version == MAP_FAILED || hot == MAP_FAILED) {
		printf("FAIL mmap\n");
		return 1;
	}
	for (size_t p = 0; p < npages; p++)
		for (size_t w = 0; w < WORDS; w++)
			pages[p * WORDS + w] = p << 32;
	for (size_t w = 0; w < HOT_WORDS; w++)
		hot[w] = w << 32;
	if (pthread_create(&t, NULL, writer, NULL) != 0 || pthread_create(&t, NULL, hot_writer, NULL) != 0) {
		printf("FAIL pthread_create\n");
		return 1;
	}
	tick_loop(tick_ms(argc, argv), check);
}
