/* churn: changes its memory between ticks in every way the kernel's write
 * tracking for incremental checkpoints must notice, and checks all of it
 * every tick.  Each page of a 16 MiB area holds a pattern of its number and
 * its version, kept in a separate array (a missed write to either shows);
 * version 0 means the page must read as zeros.  Each tick:
 *   - the program writes 64 pages;
 *   - the kernel writes 4 (read(2) from a pipe);
 *   - 4 are dropped with MADV_DONTNEED (zeros), 4 are read while zero;
 *   - 16 pages are unmapped and mapped again at the same place, half of
 *     them rewritten (the rest zero);
 *   - 8 pages are made read-only and writable again, then one is written;
 *   - a 1 MiB area is moved with mremap between two places (leaving no
 *     hole, see check);
 *   - a forked child writes its copies of 64 pages and exits (the parent's
 *     must not change).
 * With argv[2] "aio" it also sets up an asynchronous I/O context
 * (io_setup), which could write its memory without a page fault. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tests/progs/ticker.h"

#define PAGE 4096
#define WORDS (PAGE / 8)
#define PAGES 4096 /* 16 MiB */
#define MOVED_PAGES 256

static uint64_t *area;
static uint32_t *version;
static uint64_t *moved, *moved_other; /* where the 1 MiB area is, and the other place */
static uint64_t moved_version = 1;
static uint64_t rng = 88172645463325252ULL;

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return x;
}

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void pattern(uint64_t *p, uint64_t page, uint64_t ver)
{
	for (int j = 0; j < WORDS; j++)
		p[j] = ver == 0 ? 0 : mix(page << 32 ^ ver << 12 ^ (uint64_t)j);
}

static int same(const uint64_t *p, uint64_t page, uint64_t ver)
{
	for (int j = 0; j < WORDS; j++)
		if (p[j] != (ver == 0 ? 0 : mix(page << 32 ^ ver << 12 ^ (uint64_t)j)))
			return 0;
	return 1;
}

static void write_page(size_t i)
{
	version[i]++;
	if (version[i] == 0)
		version[i] = 1;
	pattern(area + i * WORDS, i, version[i]);
}

static int check(unsigned long tick)
{
	static uint64_t buf[WORDS];
	int fds[2];

	(void)tick;
	for (size_t i = 0; i < PAGES; i++) {
		if (!same(area + i * WORDS, i, version[i])) {
			printf("page %zu is not version %u\n", i, version[i]);
			return 1;
		}
	}
	for (size_t i = 0; i < MOVED_PAGES; i++) {
		if (!same(moved + i * WORDS, PAGES + i, moved_version)) {
			printf("moved page %zu is not version %lu\n", i, (unsigned long)moved_version);
			return 1;
		}
	}

	for (int k = 0; k < 64; k++)
		write_page(next() % PAGES);
	if (pipe(fds) != 0)
		return printf("pipe failed\n"), 1;
	for (int k = 0; k < 4; k++) {
		size_t i = next() % PAGES;
		uint32_t v = version[i] + 1 ? version[i] + 1 : 1;
		pattern(buf, i, v);
		if (write(fds[1], buf, PAGE) != PAGE || read(fds[0], area + i * WORDS, PAGE) != PAGE)
			return printf("pipe copy failed\n"), 1;
		version[i] = v;
	}
	close(fds[0]);
	close(fds[1]);
	for (int k = 0; k < 4; k++) {
		size_t i = next() % PAGES;
		madvise(area + i * WORDS, PAGE, MADV_DONTNEED);
		version[i] = 0;
	}
	for (int k = 0; k < 4; k++) {
		size_t i = next() % PAGES;
		if (version[i] == 0 && area[i * WORDS + 7] != 0)
			return printf("a dropped page %zu reads %lx\n", i, (unsigned long)area[i * WORDS + 7]), 1;
	}
	size_t first = next() % (PAGES / 16) * 16;
	if (mmap(area + first * WORDS, 16 * PAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
		return printf("mmap over failed\n"), 1;
	for (size_t i = first; i < first + 16; i++) {
		version[i] = 0;
		if (i % 2)
			write_page(i);
	}
	first = next() % (PAGES / 8) * 8;
	mprotect(area + first * WORDS, 8 * PAGE, PROT_READ);
	mprotect(area + first * WORDS, 8 * PAGE, PROT_READ | PROT_WRITE);
	write_page(first + next() % 8);

	/* The old place stays mapped (MREMAP_DONTUNMAP) until the mmap
	 * below replaces it: a hole there, even for a moment, is where
	 * another thread's mmap can land (the library's Go runtime maps
	 * memory during checkpoints), and MAP_FIXED would then destroy it. */
	uint64_t *to = moved_other;
	if (mremap(moved, MOVED_PAGES * PAGE, MOVED_PAGES * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, to) != to)
		return printf("mremap failed\n"), 1;
	moved_other = moved;
	moved = to;
	if (mmap(moved_other, MOVED_PAGES * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
		return printf("mmap over the old place failed\n"), 1;
	if (next() % 2) {
		moved_version++;
		for (size_t i = 0; i < MOVED_PAGES; i++)
			pattern(moved + i * WORDS, PAGES + i, moved_version);
	}

	pid_t child = fork();
	if (child == 0) {
		for (int k = 0; k < 64; k++)
			memset(area + (next() % PAGES) * WORDS, 0x5a, PAGE);
		_exit(0);
	}
	if (child < 0)
		return printf("fork failed\n"), 1;
	/* A restart between the fork and here brings back no child (it
	 * is not in the image): ECHILD. */
	pid_t w;
	while ((w = waitpid(child, NULL, 0)) < 0 && errno == EINTR)
		;
	if (w != child && errno != ECHILD)
		return printf("waitpid failed\n"), 1;
	return 0;
}

int main(int argc, char **argv)
{
	area = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	version = calloc(PAGES, sizeof(*version));
	char *two = mmap(NULL, 2 * MOVED_PAGES * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED || version == NULL || two == MAP_FAILED) {
		printf("FAIL setup\n");
		return 1;
	}
	if (argc > 2 && strcmp(argv[2], "aio") == 0) {
		unsigned long ctx = 0;
		if (syscall(SYS_io_setup, 8, &ctx) != 0) {
			printf("FAIL io_setup\n");
			return 1;
		}
	}
	moved = (uint64_t *)two;
	moved_other = (uint64_t *)(two + MOVED_PAGES * PAGE);
	mprotect(moved, MOVED_PAGES * PAGE, PROT_READ | PROT_WRITE);
	for (size_t i = 0; i < PAGES; i++)
		if (i % 5)
			write_page(i);
	for (size_t i = 0; i < MOVED_PAGES; i++)
		pattern(moved + i * WORDS, PAGES + i, moved_version);
	tick_loop(tick_ms(argc, argv), check);
}
