/*
 * handler.c: the trigger signal's handler.
 *
 * Algorithm:
 *   1. Capture what the kernel holds outside memory and outside the signal
 *      frame (fs base, robust list, rseq, clear_child_tid, dispositions,
 *      brk, interval timers, descriptors' flags and offsets) into
 *      ckpt_state, with raw system calls only.
 *   2. Save a resume point.  A restore comes back here with 1 (step 5).
 *   3. Fork a copy-on-write snapshot child with a raw clone whose exit signal
 *      is 0: the program's own wait() and SIGCHLD never see it.  The child
 *      blocks every signal and sleeps until Go has copied it out and kills
 *      it.  This fork is the whole pause the program sees.
 *   4. Hand the child's PID to Go through a pipe and return.  Go writes the
 *      image from the child while the program runs on.
 *   5. After a restore: unmap the restore stub, then return; rt_sigreturn
 *      brings back every register, the FPU/AVX state and the signal mask
 *      from the kernel's frame, which the image kept on the stack.
 *
 * Nothing here allocates, takes a lock or calls into Go: the signal may have
 * interrupted malloc, and the first Go callback on a C thread mallocs.
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

#include "cc_shim/shim.h"

#define ARCH_GET_FS 0x1003
#define CK_RSEQ_LEN 32 /* the original struct rseq; glibc 2.36 registers this */

struct ck_state ckpt_state;
struct ck_restore_info ckpt_restore_info;

extern int ck_trigger;
static int ck_busy;	/* a snapshot is being written */
static int ck_pending;	/* a trigger arrived meanwhile */
static int ck_warned_restored;

void ck_handler(int sig, siginfo_t *si, void *uc);

static void ck_log(const char *msg)
{
	ssize_t r = write(2, msg, strlen(msg));
	(void)r;
}

static void ck_capture_thread(struct ck_thread *t)
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
}

/* ck_capture_fds lists the open descriptors from /proc/self/fd with raw
 * getdents64 (opendir would malloc) and records each one's flags and
 * offset. */
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
			struct ck_dirent {
				uint64_t ino;
				int64_t off;
				unsigned short reclen;
				unsigned char type;
				char name[];
			} *d = (struct ck_dirent *)(buf + off);
			int fd = 0;
			const char *c = d->name;

			off += d->reclen;
			if (*c < '0' || *c > '9')
				continue;
			for (; *c >= '0' && *c <= '9'; c++)
				fd = fd * 10 + (*c - '0');
			if (fd == dir)
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

static void ck_capture(struct ck_state *st, int sig)
{
	struct timespec ts;
	int i;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	st->capture_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	st->brk = (uint64_t)syscall(SYS_brk, 0);
	st->pid = (int32_t)syscall(SYS_getpid);
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
	ck_capture_fds(st);
	ck_capture_thread(&st->thread);
}

/* ck_snapshot_child runs in the copy-on-write child.  Its memory is the
 * image; it must not change it, so it only sleeps. */
static void ck_snapshot_child(pid_t parent)
{
	uint64_t all = ~0ULL;

	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, 8);
	syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL);
	if (syscall(SYS_getppid) != parent)
		syscall(SYS_exit_group, 0);
	for (;;)
		syscall(SYS_pause);
}

/* ck_resumed runs once in a freshly restored process. */
static void ck_resumed(void)
{
	if (ckpt_restore_info.stub_len != 0)
		syscall(SYS_munmap, ckpt_restore_info.stub_start,
			ckpt_restore_info.stub_len);
	ckpt_restore_info.stub_start = 0;
	ckpt_restore_info.stub_len = 0;
}

void ck_handler(int sig, siginfo_t *si, void *uc)
{
	int saved_errno = errno;
	pid_t pid, child;

	(void)si;
	(void)uc;
	if (ckpt_restore_info.generation != 0) {
		if (!ck_warned_restored) {
			ck_warned_restored = 1;
			ck_log("ckpt: checkpointing a restarted process is not supported yet; request ignored\n");
		}
		goto out;
	}
	__atomic_store_n(&ck_pending, 1, __ATOMIC_SEQ_CST);
	if (__atomic_exchange_n(&ck_busy, 1, __ATOMIC_SEQ_CST))
		goto out; /* ckpt_finish raises it again */
	__atomic_store_n(&ck_pending, 0, __ATOMIC_SEQ_CST);

	pid = (pid_t)syscall(SYS_getpid);
	if (syscall(SYS_gettid) != pid) {
		/* Only the main thread is captured: pass the request on. */
		__atomic_store_n(&ck_busy, 0, __ATOMIC_SEQ_CST);
		syscall(SYS_tgkill, pid, pid, sig);
		goto out;
	}

	ck_capture(&ckpt_state, sig);
	if (ck_save_point(&ckpt_state.thread.point)) {
		ck_resumed();
		goto out;
	}
	child = (pid_t)syscall(SYS_clone, 0UL, 0UL, NULL, NULL, 0UL);
	if (child == 0)
		ck_snapshot_child(pid);
	if (child < 0 ||
	    write(ckpt_wake_fd[1], &child, sizeof(child)) != sizeof(child)) {
		ck_log("ckpt: cannot start a snapshot; checkpoint skipped\n");
		if (child > 0)
			syscall(SYS_kill, child, SIGKILL);
		__atomic_store_n(&ck_busy, 0, __ATOMIC_SEQ_CST);
	}
out:
	errno = saved_errno;
}

void ckpt_finish(void)
{
	__atomic_store_n(&ck_busy, 0, __ATOMIC_SEQ_CST);
	if (__atomic_exchange_n(&ck_pending, 0, __ATOMIC_SEQ_CST))
		syscall(SYS_kill, syscall(SYS_getpid), ck_trigger);
}

uint32_t ckpt_restored(void)
{
	return ckpt_restore_info.generation;
}
