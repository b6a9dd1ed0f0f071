/* memmap: changes its memory map while a lazily restored image is still
 * being loaded (go/restart/lazy.go must follow each change), and checks
 * every byte each tick.  Four regions of argv[2] MiB each (default 64):
 *   A: a forked child checks it and the others (pages missing in the
 *      parent at the fork are missing in the child too);
 *   B: half of it is given back with MADV_DONTNEED and must read as zeros;
 *   C: moved with mremap between two addresses;
 *   D: half of it is mapped over again, and must read as zeros.
 * (Moves and new mappings only ever replace the program's own mappings,
 * never leave a hole another thread could map into meanwhile.)
 * A checkpoint that comes during the sleep (the tick is long for that) cuts
 * it short, and a restored program then does its next check at once, its
 * fork first, while most pages are still missing. */
#define _GNU_SOURCE /* mremap */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tests/progs/ticker.h"

static size_t len; /* bytes per region */
static uint64_t *a, *b, *c, *d, *c_other;
static uint64_t seed_a = 1, seed_b = 2, seed_c = 3, seed_d = 4;

static uint64_t word(uint64_t seed, size_t i) { return (i + 1) * 0x9e3779b97f4a7c15ULL ^ (seed << 32); }

static void fill(uint64_t *m, size_t from, size_t to, uint64_t seed)
{
	for (size_t i = from; i < to; i++)
		m[i] = word(seed, i);
}

/* bad returns the first word of m[from, to) that is not what fill wrote
 * (or not zero, with seed 0), or -1. */
static long bad(const uint64_t *m, size_t from, size_t to, uint64_t seed)
{
	for (size_t i = from; i < to; i++)
		if (m[i] != (seed ? word(seed, i) : 0))
			return (long)i;
	return -1;
}

static int report(const char *what, long i)
{
	if (i < 0)
		return 0;
	printf("%s: word %ld is wrong\n", what, i);
	return 1;
}

/* forked_check has a child check every region, one word per page (quick,
 * so that checks stay short and checkpoints come during the sleep), only
 * the first halves of B and D if halves: 0 if all is well, 1 if not, -1 if
 * the child vanished (ECHILD). */
static int forked_check(int halves)
{
	size_t n = len / 8, nbd = halves ? n / 2 : n;
	int status;
	pid_t pid = fork(), w;

	if (pid == 0) {
		for (size_t i = 0; i < n; i += 512)
			if (a[i] != word(seed_a, i) || c[i] != word(seed_c, i) ||
			    (i < nbd && (b[i] != word(seed_b, i) || d[i] != word(seed_d, i))))
				_exit(1);
		_exit(0);
	}
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
		;
	if (w != pid && errno == ECHILD)
		return -1;
	if (w != pid) {
		printf("waitpid: %s\n", strerror(errno));
		return 1;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		printf("the forked child found its memory wrong (status %#x)\n", status);
		return 1;
	}
	return 0;
}

static int check(unsigned long tick)
{
	size_t n = len / 8, half = n / 2;

	/* First a forked child checks every region.  The checkpoint request
	 * cuts the sleep short, so the snapshot finds this process waiting
	 * for that child, which a restored process does not have (README):
	 * then it changes its map first and forks again after, both while
	 * its pages are still being loaded. */
	int rc = forked_check(0);
	if (rc > 0)
		return 1;
	/* Then the map changes, all before anything else is read, while a
	 * restored program's pages are still missing: B's second half given
	 * back, C moved to the other address (and back next time; the old
	 * range stays mapped, empty: MREMAP_DONTUNMAP), a new mapping over
	 * D's second half. */
	madvise(b + half, len / 2, MADV_DONTNEED);
	uint64_t *to = mremap(c, len, len, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, c_other);
	if (to == MAP_FAILED)
		return report("mremap", 0);
	c_other = c;
	c = to;
	if (mmap(d + half, len / 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
		return report("mmap", 0);
	if (rc < 0 && forked_check(1) != 0)
		return 1;
	if (report("A", bad(a, 0, n, seed_a)) || report("B", bad(b, 0, half, seed_b)) ||
	    report("B after MADV_DONTNEED", bad(b, half, n, 0)) || report("C after mremap", bad(c, 0, n, seed_c)) ||
	    report("D", bad(d, 0, half, seed_d)) || report("D mapped again", bad(d, half, n, 0)))
		return 1;
	fill(b, half, n, seed_b);
	seed_d = tick + 10;
	fill(d, 0, n, seed_d);
	return 0;
}

static uint64_t *region(void)
{
	uint64_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		printf("FAIL mmap\n");
		exit(1);
	}
	return m;
}

int main(int argc, char **argv)
{
	len = (argc > 2 ? (size_t)atol(argv[2]) : 64) << 20;
	a = region(), b = region(), c = region(), d = region();
	/* Where C moves to first. */
	c_other = region();
	fill(a, 0, len / 8, seed_a);
	fill(b, 0, len / 8, seed_b);
	fill(c, 0, len / 8, seed_c);
	fill(d, 0, len / 8, seed_d);
	tick_loop(tick_ms(argc, argv), check);
}
