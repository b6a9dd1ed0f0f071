/* bigheap: fills argv[2] MiB (default 256) of heap with pseudo-random data
 * and checks a checksum of all of it every tick, changing one word in every
 * 64th page between ticks.  Half of the pages are left zero to exercise
 * zero-page skipping, unless argv[3] is "full"; with "sparse" they are
 * never touched; with "text" every page holds data that compresses about
 * 2:1 (5 random bits per byte).  argv[4] "mark" sets tick_mark (ticker.h)
 * for tools/bench. */
#include <stdint.h>
#include <string.h>
#include "tests/progs/ticker.h"

static uint64_t *heap;
static size_t words;
static uint64_t expect;

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return x;
}

static uint64_t sum(void)
{
	uint64_t s = 0;
	for (size_t i = 0; i < words; i++)
		s = s * 31 + heap[i];
	return s;
}

static int check(unsigned long tick)
{
	if (sum() != expect) {
		printf("heap checksum mismatch\n");
		return 1;
	}
	/* Change one word in every 64th page, then remember the new sum. */
	for (size_t i = 0; i < words; i += 512 * 64)
		heap[i] = mix(heap[i] + tick);
	expect = sum();
	return 0;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 256;

	words = mib << 17;
	/* Page aligned, so that the zero half is whole zero pages. */
	if (posix_memalign((void **)&heap, 4096, words * sizeof(*heap)) != 0) {
		printf("FAIL malloc\n");
		return 1;
	}
	/* argv[3] "full": no zero pages; "sparse": the zero half is never
	 * touched at all. */
	int full = argc > 3 && strcmp(argv[3], "full") == 0;
	int sparse = argc > 3 && strcmp(argv[3], "sparse") == 0;
	int text = argc > 3 && strcmp(argv[3], "text") == 0;
	for (size_t i = 0; i < words; i++) {
		if (text)
			heap[i] = (mix(i + 1) & 0x1f1f1f1f1f1f1f1fULL) | 0x4040404040404040ULL;
		else if (full || (i / 512) % 2 == 0)
			heap[i] = mix(i + 1);
		else if (!sparse)
			heap[i] = 0;
	}
	expect = sum();
	tick_mark = argc > 4 && strcmp(argv[4], "mark") == 0;
	tick_loop(tick_ms(argc, argv), check);
}
