/*
 * capture.c: reads the kernel state that neither memory nor the signal
 * frame carries, with raw system calls only: these run in signal handlers
 * and while every other thread is stopped, possibly holding malloc's lock.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/rseq.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cc_shim/capture.h"

#define ARCH_GET_FS 0x1003
#define CK_RSEQ_LEN 32 /* the original struct rseq; glibc 2.36 registers this */

void ck_log(const char *msg)
{
	ssize_t r = write(2, msg, strlen(msg));
	(void)r;
}

void ck_capture_thread(struct ck_thread *t)
{
	stack_t ss;

	syscall(SYS_arch_prctl, ARCH_GET_FS, &t->fs_base);
	t->robust_head = 0;
	t->robust_len = 0;
	syscall(SYS_get_robust_list, 0, &t->robust_head, &t->robust_len);
	t->clear_child_tid = 0;
	syscall(SYS_prctl, PR_GET_TID_ADDRESS, &t->clear_child_tid);
	t->rseq_addr = 0;
	t->rseq_len = 0;
	t->rseq_sig = 0;
	if (__rseq_size > 0) {
		t->rseq_addr = t->fs_base + __rseq_offset;
		t->rseq_len = CK_RSEQ_LEN;
		t->rseq_sig = RSEQ_SIG;
	}
	memset(&ss, 0, sizeof(ss));
	syscall(SYS_sigaltstack, NULL, &ss);
	t->altstack_sp = (uint64_t)ss.ss_sp;
	t->altstack_size = ss.ss_size;
	t->altstack_flags = ss.ss_flags & ~SS_ONSTACK;
	t->tid = (int32_t)syscall(SYS_gettid);
	memset(t->name, 0, sizeof(t->name));
	syscall(SYS_prctl, PR_GET_NAME, t->name);
	t->flags = 0;
}

/* ck_capture_fds lists the open descriptors from /proc/self/fd with raw
 * getdents64 (opendir would malloc) and records each one's flags, offset
 * and size. */
static void ck_capture_fds(struct ck_state *st)
{
	static char buf[4096];
	struct stat sb;
	long dir, n;

	st->nfds = 0;
	st->fds_dropped = 0;
	dir = syscall(SYS_open, "/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		return;
	while ((n = syscall(SYS_getdents64, dir, buf, sizeof(buf))) > 0) {
		for (long off = 0; off < n;) {
			struct ck_dirent *d = (struct ck_dirent *)(buf + off);
			int fd;

			off += d->reclen;
			fd = ck_dirent_number(d);
			if (fd < 0 || fd == dir || fd == ckpt_track.uffd || fd == ckpt_track.pagemap)
				continue;
			if (st->nfds == CK_MAX_FDS) {
				st->fds_dropped++;
				continue;
			}
			struct ck_fd *f = &st->fds[st->nfds++];
			f->fd = fd;
			f->fd_flags = (int32_t)syscall(SYS_fcntl, fd, F_GETFD);
			f->status_flags = (int32_t)syscall(SYS_fcntl, fd, F_GETFL);
			f->offset = syscall(SYS_lseek, fd, 0L, SEEK_CUR);
			if (f->offset < 0)
				f->offset = -errno;
			/* The size now, before the program writes more. */
			f->size = syscall(SYS_fstat, fd, &sb) == 0 ? sb.st_size : -errno;
		}
	}
	syscall(SYS_close, dir);
}

/* ck_number_after parses the number (in base) after prefix at the start
 * of line, if line starts with prefix. */
static int ck_number_after(const char *line, const char *end, const char *prefix, int base, uint64_t *v)
{
	size_t n = strlen(prefix);

	if ((size_t)(end - line) < n || memcmp(line, prefix, n) != 0)
		return 0;
	*v = 0;
	for (line += n; line < end; line++) {
		int d;
		if (*line >= '0' && *line <= '9')
			d = *line - '0';
		else if (base == 16 && *line >= 'a' && *line <= 'f')
			d = *line - 'a' + 10;
		else
			break;
		*v = *v * (uint64_t)base + (uint64_t)d;
	}
	return 1;
}

/* ck_capture_timers reads /proc/self/timers, whose entries are
 *	ID: 3
 *	signal: 14/0000000000000000
 *	notify: signal/pid.1234		(or none/..., signal/tid.N)
 *	ClockID: 1
 * and asks each timer for its remaining time. */
static void ck_capture_timers(struct ck_state *st)
{
	static char buf[16384];
	struct ck_timer *t = NULL;
	long fd, n, len = 0;
	uint64_t v;

	st->ntimers = 0;
	st->timers_dropped = 0;
	fd = syscall(SYS_open, "/proc/self/timers", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	while (len < (long)sizeof(buf) && (n = syscall(SYS_read, fd, buf + len, sizeof(buf) - len)) > 0)
		len += n;
	syscall(SYS_close, fd);
	for (const char *line = buf, *end; line < buf + len; line = end + 1) {
		for (end = line; end < buf + len && *end != '\n'; end++)
			;
		if (ck_number_after(line, end, "ID: ", 10, &v)) {
			if (st->ntimers == CK_MAX_TIMERS) {
				st->timers_dropped++;
				t = NULL;
				continue;
			}
			t = &st->timers[st->ntimers++];
			memset(t, 0, sizeof(*t));
			t->id = (int32_t)v;
		} else if (t && ck_number_after(line, end, "signal: ", 10, &v)) {
			const char *slash = line;
			t->signo = (int32_t)v;
			while (slash < end && *slash != '/')
				slash++;
			if (slash < end)
				ck_number_after(slash, end, "/", 16, &t->value);
		} else if (t && (end - line) > 8 && memcmp(line, "notify: ", 8) == 0) {
			const char *p = line + 8, *dot = p;
			t->notify = memcmp(p, "none", 4) == 0 ? SIGEV_NONE : SIGEV_SIGNAL;
			while (dot < end && *dot != '/')
				dot++;
			if (end - dot > 4 && memcmp(dot, "/tid.", 5) == 0) {
				t->notify |= 4; /* SIGEV_THREAD_ID */
				ck_number_after(dot, end, "/tid.", 10, &v);
				t->tid = (int32_t)v;
			}
		} else if (t && ck_number_after(line, end, "ClockID: ", 10, &v)) {
			struct itimerspec its;
			t->clock = (int32_t)v;
			memset(&its, 0, sizeof(its));
			syscall(SYS_timer_gettime, t->id, &its);
			t->interval_sec = its.it_interval.tv_sec;
			t->interval_nsec = its.it_interval.tv_nsec;
			t->value_sec = its.it_value.tv_sec;
			t->value_nsec = its.it_value.tv_nsec;
		}
	}
}

void ck_capture_process(struct ck_state *st, int sig)
{
	struct timespec ts;
	int i;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	st->capture_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	st->brk = (uint64_t)syscall(SYS_brk, 0);
	st->signo = sig;
	for (i = 0; i < CK_NSIG; i++) {
		memset(&st->act[i], 0, sizeof(st->act[i]));
		syscall(SYS_rt_sigaction, i + 1, NULL, &st->act[i], 8);
	}
	for (i = 0; i < 3; i++) {
		struct itimerval it;
		memset(&it, 0, sizeof(it));
		syscall(SYS_getitimer, i, &it);
		st->itimer[i].interval_sec = it.it_interval.tv_sec;
		st->itimer[i].interval_usec = it.it_interval.tv_usec;
		st->itimer[i].value_sec = it.it_value.tv_sec;
		st->itimer[i].value_usec = it.it_value.tv_usec;
	}
	ck_capture_timers(st);
	ck_capture_fds(st);
}

int ck_dirent_number(const struct ck_dirent *d)
{
	const char *c = d->name;
	int n = 0;

	if (*c < '0' || *c > '9')
		return -1;
	for (; *c >= '0' && *c <= '9'; c++)
		n = n * 10 + (*c - '0');
	return n;
}
