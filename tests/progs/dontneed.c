/* dontneed: memory given back with MADV_DONTNEED must read as zeros
 * afterwards, as anonymous memory does; allocators rely on it (Go's runtime,
 * the one in libckpt.so included, and jemalloc).  A restore that mapped the
 * image's pages privately instead of copying them would break it: those
 * pages would read as the image's again.  Each tick checks the 8 MiB it
 * filled at the last one, gives them back, checks that they read as zeros
 * and fills them again. */
#include <stdint.h>
#include <sys/mman.h>
#include "tests/progs/ticker.h"

#define LEN (8u << 20)

static uint64_t *mem;
static uint64_t seed;

static uint64_t word(size_t i) { return (i + 1) * 0x9e3779b97f4a7c15ULL ^ seed; }

static void fill(void)
{
	for (size_t i = 0; i < LEN / 8; i++)
		mem[i] = word(i);
}

static int check(unsigned long tick)
{
	for (size_t i = 0; i < LEN / 8; i++)
		if (mem[i] != word(i)) {
			printf("word %zu is %#lx, not what was written\n", i, (unsigned long)mem[i]);
			return 1;
		}
	if (madvise(mem, LEN, MADV_DONTNEED) != 0) {
		printf("madvise failed\n");
		return 1;
	}
	for (size_t i = 0; i < LEN / 8; i++)
		if (mem[i] != 0) {
			printf("word %zu reads %#lx after MADV_DONTNEED, not 0\n", i, (unsigned long)mem[i]);
			return 1;
		}
	seed = tick;
	fill();
	return 0;
}

int main(int argc, char **argv)
{
	mem = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		printf("FAIL mmap\n");
		return 1;
	}
	fill();
	tick_loop(tick_ms(argc, argv), check);
}
