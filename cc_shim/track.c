/*
 * track.c: which pages the program wrote since the last snapshot.
 *
 * Runs inside ckpt_snapshot while every other thread is stopped, so it
 * uses raw system calls and no malloc, like the rest of the freeze.
 */
#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cc_shim/shim.h"

struct ck_track ckpt_track = {.uffd = -1, .pagemap = -1};

/* PAGEMAP_SCAN (Linux 6.7, include/uapi/linux/fs.h). */
#define CK_PAGEMAP_SCAN 0xc0606610UL /* _IOWR('f', 16, struct pm_scan_arg) */
#define CK_PM_SCAN_WP_MATCHING 1UL
#define CK_PAGE_IS_WRITTEN 2UL

struct ck_pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};

/* The top of the x86-64 user address space with 4-level page tables. */
#define CK_USER_END 0x7ffffffff000UL
#define CK_REGION_WORDS 3

void ck_track_scan(void)
{
	struct ck_track *t = &ckpt_track;
	uint64_t start = 0;

	/* Written before the walk, so that this page is reported written
	 * and saved as it is at the fork, with the counts written below.
	 * The regions go after the precopy's (precopy.c). */
	t->err = 0;
	/* One region per stretch of written pages; when the buffer is full
	 * the kernel stops at walk_end, having protected only what it
	 * reported.  The buffer does not grow here: the rest stays written
	 * for the next checkpoint, and Go makes the buffer bigger. */
	while (start < CK_USER_END) {
		struct ck_pm_scan_arg a = {
			.size = sizeof(a),
			.flags = CK_PM_SCAN_WP_MATCHING,
			.start = start,
			.end = CK_USER_END,
			.vec = (uint64_t)(t->regions + t->n * CK_REGION_WORDS),
			.vec_len = t->cap - t->n,
			.category_mask = CK_PAGE_IS_WRITTEN,
			.return_mask = CK_PAGE_IS_WRITTEN,
		};
		long n;

		if (t->n == t->cap) {
			t->err = ENOSPC;
			return;
		}
		n = syscall(SYS_ioctl, t->pagemap, CK_PAGEMAP_SCAN, &a);
		if (n < 0) {
			t->err = errno;
			return;
		}
		t->n += (uint64_t)n;
		if (a.walk_end <= start) {
			t->err = EIO; /* no progress: do not loop */
			return;
		}
		start = a.walk_end;
	}
}
