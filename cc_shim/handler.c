/*
 * handler.c: the trigger, the freeze, and the snapshot.
 *
 * Algorithm:
 *   1. The trigger signal's handler (any program thread) only writes a byte
 *      into the wake pipe.  A Go goroutine locked to its own thread (the
 *      coordinator) reads it and calls ckpt_snapshot, one cgo call.
 *   2. ckpt_snapshot sends CK_FREEZE_SIG to every other thread, the Go
 *      runtime's included, until a pass over /proc/self/task finds no new
 *      one, and waits until all of them are asleep in ck_freeze_handler.
 *      Each records its kernel state and resume point there and waits on a
 *      futex.
 *      From here to the thaw only C runs: Go would wait on frozen threads.
 *   3. The coordinator records process-wide state and its own point, forks a
 *      copy-on-write snapshot child with a raw clone whose exit signal is 0
 *      (the program's wait() and SIGCHLD never see it), and thaws.  The
 *      program's pause is steps 2 and 3; Go writes the image from the child
 *      while the program runs on.
 *   4. After a restore every thread, the coordinator too, comes back out of
 *      ck_save_point with 1: the restore stub recreated it with its TID and
 *      jumped there.  The last one back unmaps the stub.  Threads then
 *      return through rt_sigreturn, which restores every register, the
 *      FPU/AVX state and the signal mask from the kernel's frame.
 *
 * Nothing here allocates, takes a lock or calls into Go.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cc_shim/capture.h"

/* How long ckpt_snapshot waits for all threads to stop. */
#define CK_FREEZE_TIMEOUT_NS (5 * 1000000000LL)

struct ck_state ckpt_state;
struct ck_restore_info ckpt_restore_info;
int64_t ckpt_pause_ns;

static int ck_busy;		/* a snapshot is being taken or written */
static int ck_pending;		/* CK_REQ and the options of triggers meanwhile */
static uint32_t ck_frozen;	/* threads stopped in ck_freeze_handler */
static uint32_t ck_thaw;	/* bumped to release them */
static uint32_t ck_parked;	/* where they sleep once counted asleep */
static uint32_t ck_asleep;	/* threads moved to ck_parked */
static uint32_t ck_slots;	/* next free ckpt_state.threads[] entry */

void ck_handler(int sig, siginfo_t *si, void *uc);
void ck_freeze_handler(int sig, siginfo_t *si, void *uc);

static long ck_futex(uint32_t *addr, int op, uint32_t val, const struct timespec *ts)
{
	return syscall(SYS_futex, addr, op, val, ts, NULL, 0);
}

static int64_t ck_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- 1: the trigger ----------------------------------------------------- */

void ck_handler(int sig, siginfo_t *si, void *uc)
{
	int saved_errno = errno;
	char c = CK_REQ;

	(void)sig;
	(void)uc;
	/* Options for this checkpoint come as the value of a queued signal.
	 * Triggers that come while one is served are served by one more
	 * checkpoint after it, with all of their options. */
	if (si != NULL && si->si_code == SI_QUEUE)
		c |= si->si_value.sival_int & CK_REQ_OPTIONS;
	__atomic_or_fetch(&ck_pending, c, __ATOMIC_SEQ_CST);
	if (!__atomic_exchange_n(&ck_busy, 1, __ATOMIC_SEQ_CST)) {
		c = (char)(__atomic_exchange_n(&ck_pending, 0, __ATOMIC_SEQ_CST) | c);
		if (write(ckpt_wake_fd[1], &c, 1) != 1) {
			__atomic_store_n(&ck_busy, 0, __ATOMIC_SEQ_CST);
			ck_log("ckpt: cannot wake the checkpoint writer; checkpoint skipped\n");
		}
	}
	errno = saved_errno;
}

void ckpt_finish(void)
{
	int pending;

	__atomic_store_n(&ck_busy, 0, __ATOMIC_SEQ_CST);
	pending = __atomic_exchange_n(&ck_pending, 0, __ATOMIC_SEQ_CST);
	if (pending & CK_REQ_OPTIONS) {
		union sigval v = {.sival_int = pending & CK_REQ_OPTIONS};
		sigqueue(getpid(), ck_trigger, v);
	} else if (pending) {
		syscall(SYS_kill, syscall(SYS_getpid), ck_trigger);
	}
}

/* ---- 2: the freeze -------------------------------------------------------- */

/* ck_resumed runs in every thread of a freshly restored process. */
static void ck_resumed(void)
{
	struct ck_restore_info *ri = &ckpt_restore_info;

	if (__atomic_add_fetch(&ri->resumed, 1, __ATOMIC_SEQ_CST) != ri->nthreads)
		return;
	/* Every thread is off the stub's stacks now. */
	if (ri->stub_len != 0)
		syscall(SYS_munmap, ri->stub_start, ri->stub_len);
	if (ri->stacks_len != 0)
		syscall(SYS_munmap, ri->stacks_start, ri->stacks_len);
}

void ck_freeze_handler(int sig, siginfo_t *si, void *uc)
{
	int saved_errno = errno;
	uint32_t gen = __atomic_load_n(&ck_thaw, __ATOMIC_SEQ_CST);
	uint32_t slot;

	(void)sig;
	(void)uc;
	if (si->si_code != SI_TKILL || si->si_pid != ckpt_state.pid)
		goto out; /* not sent by ckpt_snapshot */
	slot = __atomic_fetch_add(&ck_slots, 1, __ATOMIC_SEQ_CST);
	if (slot < CK_MAX_THREADS) {
		ck_capture_thread(&ckpt_state.threads[slot]);
		if (ck_save_point(&ckpt_state.threads[slot].point)) {
			ck_resumed();
			goto out;
		}
	}
	/* Stopped.  The coordinator goes on once this thread sleeps on
	 * ck_thaw (ck_wait_frozen): what it writes until then is before the
	 * pause looks at memory. */
	__atomic_add_fetch(&ck_frozen, 1, __ATOMIC_SEQ_CST);
	ck_futex(&ck_frozen, FUTEX_WAKE_PRIVATE, 1, NULL);
	while (__atomic_load_n(&ck_thaw, __ATOMIC_SEQ_CST) == gen)
		ck_futex(&ck_thaw, FUTEX_WAIT_PRIVATE, gen, NULL);
out:
	errno = saved_errno;
}

/* ck_signal_new signals every thread of /proc/self/task that is not the
 * caller and not in sent[]; it returns how many it signalled, or -errno. */
static int ck_signal_new(int pid, int self, int32_t *sent, int *nsent)
{
	static char buf[4096];
	long dir, n;
	int added = 0;

	dir = syscall(SYS_open, "/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		return -errno;
	while ((n = syscall(SYS_getdents64, dir, buf, sizeof(buf))) > 0) {
		for (long off = 0; off < n;) {
			struct ck_dirent *d = (struct ck_dirent *)(buf + off);
			int tid = ck_dirent_number(d), i;

			off += d->reclen;
			if (tid <= 0 || tid == self)
				continue;
			for (i = 0; i < *nsent && sent[i] != tid; i++)
				;
			if (i < *nsent)
				continue;
			if (*nsent == CK_MAX_THREADS - 1) {
				syscall(SYS_close, dir);
				return -E2BIG;
			}
			if (syscall(SYS_tgkill, pid, tid, CK_FREEZE_SIG) == 0) {
				sent[(*nsent)++] = tid;
				added++;
			}
		}
	}
	syscall(SYS_close, dir);
	return added;
}

/* ck_gone counts the threads of sent[] that no longer exist. */
static uint32_t ck_gone(int pid, const int32_t *sent, int nsent)
{
	uint32_t gone = 0;

	for (int i = 0; i < nsent; i++)
		if (syscall(SYS_tgkill, pid, sent[i], 0) != 0 && errno == ESRCH)
			gone++;
	return gone;
}

/* ck_park moves the threads asleep on ck_thaw (still gen) to ck_parked
 * without waking them, and counts them in ck_asleep. */
static void ck_park(uint32_t gen)
{
	long moved = syscall(SYS_futex, &ck_thaw, FUTEX_CMP_REQUEUE_PRIVATE, 0, (unsigned long)INT_MAX,
			     &ck_parked, gen);

	if (moved > 0)
		ck_asleep += (uint32_t)moved;
}

/* ck_wait_frozen waits until every thread of sent[] is asleep in
 * ck_freeze_handler or gone.  Asleep, not only stopped: between counting
 * itself in ck_frozen and falling asleep a thread still writes its stack
 * (the frames of its futex calls) and the kernel its rseq area, returning
 * from the wake; after the precopy's scan, such a write is in the
 * snapshot but not in the image (CKPT_PRECOPY=check found one about every
 * 150-200 runs of tests/precopy_test.sh's churn lines, always in a frozen
 * thread's stack or TCB).  Moving the sleepers to ck_parked counts those
 * that got there.  A thread that exits after it was signalled never
 * stops, and waiting for it would end the checkpoint with "stopping the
 * threads: connection timed out"; a stopped thread cannot also be gone. */
static int ck_wait_frozen(int pid, const int32_t *sent, int nsent, uint32_t gen, int64_t deadline)
{
	uint32_t gone = 0;

	for (;;) {
		uint32_t f = __atomic_load_n(&ck_frozen, __ATOMIC_SEQ_CST);
		struct timespec ts = {0, 10 * 1000000}, nap = {0, 10 * 1000};
		ck_park(gen);
		if (ck_asleep + gone >= (uint32_t)nsent)
			return 0;
		if (ck_now() > deadline)
			return -ETIMEDOUT;
		if (f + gone >= (uint32_t)nsent) /* all stopped: falling asleep */
			nanosleep(&nap, NULL);
		else if (ck_futex(&ck_frozen, FUTEX_WAIT_PRIVATE, f, &ts) != 0 && errno == ETIMEDOUT)
			gone = ck_gone(pid, sent, nsent);
	}
}

/* ---- 3: the snapshot ------------------------------------------------------- */

/* ck_snapshot_child runs in the copy-on-write child.  Its memory is the
 * image; it must not change it, so it only sleeps until Go kills it. */
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

int ckpt_snapshot(void)
{
	static int32_t sent[CK_MAX_THREADS];
	struct ck_state *st = &ckpt_state;
	int pid = (int)syscall(SYS_getpid), self = (int)syscall(SYS_gettid);
	int nsent = 0, rc, added, pass;
	uint32_t gen = __atomic_load_n(&ck_thaw, __ATOMIC_SEQ_CST), slot;
	int64_t start = ck_now();

	st->pid = pid;
	__atomic_store_n(&ck_frozen, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&ck_slots, 0, __ATOMIC_SEQ_CST);
	ck_asleep = 0;
	/* Threads may be created while we look: repeat until a pass finds
	 * none that was not already stopped. */
	for (pass = 0;; pass++) {
		added = ck_signal_new(pid, self, sent, &nsent);
		if (added < 0) {
			rc = added;
			goto thaw;
		}
		rc = ck_wait_frozen(pid, sent, nsent, gen, start + CK_FREEZE_TIMEOUT_NS);
		if (rc != 0)
			goto thaw;
		if (added == 0 && pass > 0)
			break;
	}
	ck_capture_process(st, ck_trigger);
	st->capture_ns = start;
	slot = __atomic_fetch_add(&ck_slots, 1, __ATOMIC_SEQ_CST);
	ck_capture_thread(&st->threads[slot]);
	st->threads[slot].flags = CK_THREAD_COORDINATOR;
	st->nthreads = slot + 1;
	if (ck_save_point(&st->threads[slot].point)) {
		ck_resumed();
		return 0;
	}
	/* Before the fork: a write between the fork and the scan would be
	 * in no image and yet look unwritten at the next checkpoint.  The
	 * precopy's areas first: their written pages are the first regions
	 * of the report, and the scan of all memory adds what is left. */
	ckpt_track.n = 0;
	if (ckpt_precopy.n > 0)
		ck_precopy_freeze();
	if (ckpt_track.pagemap >= 0 && ckpt_track.scan)
		ck_track_scan();
	rc = (int)syscall(SYS_clone, 0UL, 0UL, NULL, NULL, 0UL);
	if (rc == 0)
		ck_snapshot_child(pid);
	if (rc < 0)
		rc = -errno;
	if (ckpt_precopy.n > 0)
		ck_precopy_thaw();
thaw:
	__atomic_store_n(&ck_thaw, gen + 1, __ATOMIC_SEQ_CST);
	ck_futex(&ck_thaw, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
	ck_futex(&ck_parked, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
	ckpt_pause_ns = ck_now() - start;
	return rc;
}
