/* remap: keeps argv[2] MiB (default 16) of pages, each word its page's
 * number and the page's generation, and checks them every tick.  Until it
 * gets SIGUSR1, a thread unmaps one of the pages and maps it again every
 * millisecond or so, rewriting it as its next generation: a checkpoint
 * that copies memory before its pause finds the area changed.  After
 * SIGUSR1 the area stays as it is (tests/precopy_test.sh: copied before
 * the pause again a checkpoint later). */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include "tests/progs/ticker.h"

#define WORDS 512 /* per 4 KiB page */

static uint64_t *area, *gen;
static size_t npages;
static volatile sig_atomic_t remapping = 1;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void still(int sig)
{
	(void)sig;
	remapping = 0;
}

static void fill(size_t p)
{
	for (size_t w = 0; w < WORDS; w++)
		area[p * WORDS + w] = p << 32 | gen[p];
}

static void *remapper(void *arg)
{
	struct timespec nap = {0, 1000000};
	size_t p = 0;

	(void)arg;
	while (remapping) {
		p = (p + 97) % npages;
		pthread_mutex_lock(&lock);
		uint64_t *page = area + p * WORDS;
		if (munmap(page, 4096) != 0 ||
		    mmap(page, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != page) {
			printf("FAIL: remapping page %zu\n", p);
			fflush(stdout);
			exit(1);
		}
		gen[p]++;
		fill(p);
		pthread_mutex_unlock(&lock);
		nanosleep(&nap, NULL);
	}
	return NULL;
}

static int check(unsigned long tick)
{
	int bad = 0;

	(void)tick;
	pthread_mutex_lock(&lock);
	for (size_t p = 0; p < npages && !bad; p++)
		for (size_t w = 0; w < WORDS; w++)
			if (area[p * WORDS + w] != (p << 32 | gen[p])) {
				printf("page %zu word %zu reads %#lx, not version %lu\n", p, w,
				       (unsigned long)area[p * WORDS + w], (unsigned long)gen[p]);
				bad = 1;
				break;
			}
	pthread_mutex_unlock(&lock);
	return bad;
}

int main(int argc, char **argv)
{
	npages = (argc > 2 ? (size_t)atol(argv[2]) : 16) << 8;
	area = mmap(NULL, npages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	gen = calloc(npages, sizeof *gen);
	if (area == MAP_FAILED || gen == NULL) {
		printf("FAIL: no memory\n");
		return 1;
	}
	for (size_t p = 0; p < npages; p++)
		fill(p);
	signal(SIGUSR1, still);
	pthread_t t;
	if (pthread_create(&t, NULL, remapper, NULL) != 0) {
		printf("FAIL: no thread\n");
		return 1;
	}
	tick_loop(tick_ms(argc, argv), check);
}
