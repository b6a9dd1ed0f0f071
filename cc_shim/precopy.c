/*
 * precopy.c: the pause's half of a checkpoint whose big private memory Go
 * copied into the image while the program ran (go/lib/precopy.go).
 *
 * Runs inside ckpt_snapshot while every other thread is stopped: raw
 * system calls, no malloc.  The order matters: the written pages are
 * copied after every other thread stopped, and after that nothing writes
 * the areas taken (this thread's stack and the shim's data are never
 * taken), so the copies and the untouched rest are the memory at the fork.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cc_shim/capture.h"

struct ck_precopy ckpt_precopy;

/* PAGEMAP_SCAN, as in track.c. */
#define CK_PAGEMAP_SCAN 0xc0606610UL
#define CK_PM_SCAN_WP_MATCHING 1UL
#define CK_PAGE_IS_WPALLOWED 1UL
#define CK_PAGE_IS_WRITTEN 2UL
#define CK_PAGE_IS_PRESENT 8UL
#define CK_PAGE_IS_SWAPPED 16UL
#define CK_PAGE_IS_THERE (CK_PAGE_IS_PRESENT | CK_PAGE_IS_SWAPPED)
#define CK_PAGE 4096UL

struct ck_pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};

/* /proc/self/maps as of the freeze.  A process whose maps do not fit has
 * its later areas found changed: they are forked. */
static char ck_maps[1 << 18];

static uint64_t ck_hex(const char **p, const char *end)
{
	uint64_t v = 0;

	for (; *p < end; (*p)++) {
		char c = **p;
		if (c >= '0' && c <= '9')
			v = v << 4 | (uint64_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v << 4 | (uint64_t)(c - 'a' + 10);
		else
			break;
	}
	return v;
}

/* ck_read_maps reads /proc/self/maps into ck_maps and returns its length. */
static long ck_read_maps(void)
{
	long fd, n, len = 0;

	fd = syscall(SYS_open, "/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	while (len < (long)sizeof(ck_maps) && (n = syscall(SYS_read, fd, ck_maps + len, sizeof(ck_maps) - len)) > 0)
		len += n;
	syscall(SYS_close, fd);
	return len;
}

/* ck_mark_changed marks CK_PRECOPY_CHANGED every area that is not one whole
 * line of the maps with the protection Go saw.  Both lists are sorted. */
static void ck_mark_changed(long len)
{
	struct ck_precopy *pc = &ckpt_precopy;
	const char *p = ck_maps, *end = ck_maps + len;
	uint32_t i = 0;

	while (p < end && i < pc->n) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		uint64_t start, stop;

		if (eol == NULL)
			break; /* cut short: what follows is unknown */
		start = ck_hex(&p, eol);
		if (p < eol && *p == '-')
			p++;
		stop = ck_hex(&p, eol);
		if (p < eol)
			p++;
		for (; i < pc->n && pc->areas[i].end <= start; i++)
			if (pc->areas[i].state == CK_PRECOPY_ASKED)
				pc->areas[i].state = CK_PRECOPY_CHANGED;
		if (i < pc->n && pc->areas[i].start == start && pc->areas[i].end == stop && eol - p >= 4 &&
		    memcmp(p, pc->areas[i].perms, 4) == 0)
			i++; /* the same mapping */
		p = eol + 1;
	}
	for (; i < pc->n; i++)
		if (pc->areas[i].state == CK_PRECOPY_ASKED)
			pc->areas[i].state = CK_PRECOPY_CHANGED;
}

static long ck_scan(struct ck_pm_scan_arg *a)
{
	long n = syscall(SYS_ioctl, ckpt_track.pagemap, CK_PAGEMAP_SCAN, a);
	return n < 0 ? -errno : n;
}

/* ck_untracked reports whether some page of a is not registered for
 * write tracking: mapped anew since Go registered it, it would change
 * unseen. */
static int ck_untracked(struct ck_precopy_area *a)
{
	uint64_t region[3];
	struct ck_pm_scan_arg s = {
		.size = sizeof(s),
		.start = a->start,
		.end = a->end,
		.vec = (uint64_t)region,
		.vec_len = 1,
		.category_inverted = CK_PAGE_IS_WPALLOWED,
		.category_mask = CK_PAGE_IS_WPALLOWED,
		.return_mask = CK_PAGE_IS_WPALLOWED,
	};
	return ck_scan(&s) != 0;
}

/* ck_take_written lists a's pages written since Go copied them in the
 * region buffer from *used on, and copies those still in memory or swap
 * into scratch from *copied on (the others were dropped, MADV_DONTNEED:
 * zeros now, whatever their number).  It returns the area's new state. */
static int ck_take_written(struct ck_precopy_area *a, uint64_t *used, uint64_t *copied)
{
	struct ck_track *t = &ckpt_track;
	uint64_t start = a->start, bytes = 0, k;

	a->first = *used;
	a->n = 0;
	a->scratch_off = *copied;
	while (start < a->end) {
		/* Protecting what it reports is not needed here, but
		 * without it this kernel (6.18) reports some regions
		 * twice once there are more than 1024. */
		struct ck_pm_scan_arg s = {
			.size = sizeof(s),
			.flags = CK_PM_SCAN_WP_MATCHING,
			.start = start,
			.end = a->end,
			.vec = (uint64_t)(t->regions + (*used + a->n) * 3),
			.vec_len = t->cap - *used - a->n,
			.category_mask = CK_PAGE_IS_WRITTEN,
			.return_mask = CK_PAGE_IS_WRITTEN | CK_PAGE_IS_THERE,
		};
		long n;

		if (s.vec_len == 0)
			return CK_PRECOPY_FULL;
		n = ck_scan(&s);
		if (n < 0 || s.walk_end <= start)
			return CK_PRECOPY_FAILED;
		a->n += (uint64_t)n;
		start = s.walk_end;
	}
	for (k = a->first; k < a->first + a->n; k++)
		if (t->regions[k * 3 + 2] & CK_PAGE_IS_THERE)
			bytes += t->regions[k * 3 + 1] - t->regions[k * 3];
	if (bytes > ckpt_precopy.scratch_len - *copied)
		return CK_PRECOPY_FULL;
	for (k = a->first; k < a->first + a->n; k++) {
		uint64_t from = t->regions[k * 3], len = t->regions[k * 3 + 1] - from;

		if (!(t->regions[k * 3 + 2] & CK_PAGE_IS_THERE))
			continue;
		memcpy(ckpt_precopy.scratch + *copied, (const void *)from, len);
		*copied += len;
	}
	*used += a->n;
	return CK_PRECOPY_TAKEN;
}

void ck_precopy_freeze(void)
{
	struct ck_precopy *pc = &ckpt_precopy;
	uint64_t here = (uint64_t)&pc, used = ckpt_track.n, copied = 0;
	uint32_t i;

	ck_mark_changed(ck_read_maps());
	for (i = 0; i < pc->n; i++) {
		struct ck_precopy_area *a = &pc->areas[i];
		uint64_t mine[] = {here, (uint64_t)pc, (uint64_t)&ckpt_state, (uint64_t)&ckpt_track};
		unsigned j;

		if (a->state != CK_PRECOPY_ASKED)
			continue;
		for (j = 0; j < sizeof(mine) / sizeof(mine[0]); j++)
			if (mine[j] >= a->start && mine[j] < a->end)
				a->state = CK_PRECOPY_IN_USE;
		if (a->state != CK_PRECOPY_ASKED)
			continue;
		if (ckpt_track.pagemap < 0 || ck_untracked(a)) {
			a->state = CK_PRECOPY_UNTRACKED;
			continue;
		}
		a->state = ck_take_written(a, &used, &copied);
		if (a->state == CK_PRECOPY_TAKEN && !pc->keep &&
		    syscall(SYS_madvise, a->start, a->end - a->start, MADV_DONTFORK) != 0) {
			/* Nothing changed if it failed; be sure anyway. */
			syscall(SYS_madvise, a->start, a->end - a->start, MADV_DOFORK);
			a->state = CK_PRECOPY_FAILED;
		}
	}
	ckpt_track.n = used; /* the scan of all memory adds its regions */
}

/* ck_precopy_thaw gives the areas taken back to later forks, the
 * program's own included. */
void ck_precopy_thaw(void)
{
	struct ck_precopy *pc = &ckpt_precopy;
	uint32_t i;

	for (i = 0; i < pc->n && !pc->keep; i++)
		if (pc->areas[i].state == CK_PRECOPY_TAKEN)
			syscall(SYS_madvise, pc->areas[i].start, pc->areas[i].end - pc->areas[i].start, MADV_DOFORK);
}
