/* collide: keeps data at the restore stub's own link address (1 TiB, see
 * linker/stub.lds), so a restore must move the stub out of the way first.
 * It checks the data every tick. */
#include <stdint.h>
#include <sys/mman.h>
#include "tests/progs/ticker.h"

#define STUB_ADDR ((void *)0x10000000000UL)
#define LEN (1UL << 20)

static uint64_t *data;

static int check(unsigned long tick)
{
	(void)tick;
	for (size_t i = 0; i < LEN / sizeof(*data); i++)
		if (data[i] != i * 0x9e3779b97f4a7c15ULL) {
			printf("data at the stub's address is wrong\n");
			return 1;
		}
	return 0;
}

int main(int argc, char **argv)
{
	data = mmap(STUB_ADDR, LEN, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (data != STUB_ADDR) {
		printf("FAIL cannot map at %p\n", STUB_ADDR);
		return 1;
	}
	for (size_t i = 0; i < LEN / sizeof(*data); i++)
		data[i] = i * 0x9e3779b97f4a7c15ULL;
	tick_loop(tick_ms(argc, argv), check);
}
