/*
 * shim.h: state shared between the C signal shim and the Go side of
 * libckpt.so.
 *
 * The shim fills struct ck_state while every thread is stopped in its
 * freeze handler, using only raw system calls, then forks a copy-on-write
 * snapshot child.  Go reads the struct back out of the snapshot child's memory
 * (/proc/CHILD/mem at &ckpt_state), so a second trigger that rewrites the
 * parent's copy can never tear the image being written.
 *
 * Every field has a fixed width: Go decodes this layout through cgo, and the
 * restore stub (linker/) writes struct ck_restore_info into the restored
 * process at the address recorded in the image.
 */
#ifndef CKPT_CC_SHIM_SHIM_H_
#define CKPT_CC_SHIM_SHIM_H_

#include <stdint.h>
#include <sys/resource.h>

#define CK_NSIG 64

/* The kernel's struct sigaction layout (arch/x86/include/uapi/asm/signal.h),
 * which is what rt_sigaction reads and writes; glibc's differs. */
struct ck_sigaction {
	uint64_t handler;
	uint64_t flags;
	uint64_t restorer;
	uint64_t mask;
};

/* A resume point: the callee-saved registers, stack and return address of
 * ck_save_point's caller.  Everything else (all other registers, FPU/AVX
 * state, the signal mask) lives in the kernel's signal frame on the saved
 * stack and comes back through rt_sigreturn. */
struct ck_point {
	uint64_t rbx;
	uint64_t rbp;
	uint64_t r12;
	uint64_t r13;
	uint64_t r14;
	uint64_t r15;
	uint64_t rsp;
	uint64_t rip;
};

/* Per-thread kernel state that the signal frame does not carry. */
#define CK_THREAD_COORDINATOR 1 /* the thread that forked the snapshot */

struct ck_thread {
	struct ck_point point;
	uint64_t fs_base;
	uint64_t robust_head;
	uint64_t robust_len;
	uint64_t clear_child_tid; /* glibc: &struct pthread.tid */
	uint64_t rseq_addr;
	uint32_t rseq_len;
	uint32_t rseq_sig;
	uint64_t altstack_sp;
	uint64_t altstack_size;
	int32_t altstack_flags;
	int32_t tid;
	char name[16]; /* PR_GET_NAME */
	uint32_t flags;
	uint32_t pad;
};

#define CK_MAX_THREADS 512

/* An open descriptor.  Its offset must be read at the moment of the
 * snapshot: the snapshot child shares open file descriptions with the
 * program, which keeps moving their offsets while the image is written. */
struct ck_fd {
	int32_t fd;
	int32_t fd_flags;	/* F_GETFD: FD_CLOEXEC */
	int32_t status_flags;	/* F_GETFL: access mode, O_APPEND, ... */
	int32_t pad;
	int64_t offset;		/* lseek(fd, 0, SEEK_CUR), or -errno */
	int64_t size;		/* st_size, or -errno */
};

#define CK_MAX_FDS 1024

/* The byte the trigger handler writes to the wake pipe: CK_REQ, plus
 * options a sender asked for with sigqueue(3)'s value (ckpt checkpoint). */
#define CK_REQ 1
#define CK_REQ_COMPRESS 2
#define CK_REQ_OPTIONS CK_REQ_COMPRESS

/* struct itimerval with fixed widths. */
struct ck_itimer {
	int64_t interval_sec, interval_usec;
	int64_t value_sec, value_usec;
};

/* A POSIX timer (timer_create), from /proc/self/timers and timer_gettime. */
struct ck_timer {
	int32_t id;
	int32_t clock;
	int32_t signo;
	int32_t notify; /* sigev_notify: SIGEV_SIGNAL, SIGEV_NONE, |SIGEV_THREAD_ID */
	int32_t tid;	/* with SIGEV_THREAD_ID */
	int32_t pad;
	uint64_t value; /* sigev_value */
	int64_t interval_sec, interval_nsec;
	int64_t value_sec, value_nsec;
};

#define CK_MAX_TIMERS 64

/* What the handler captured at the last trigger. */
struct ck_state {
	int64_t capture_ns; /* CLOCK_MONOTONIC when the handler started */
	uint64_t brk;
	int32_t pid;
	int32_t signo; /* the trigger signal */
	struct ck_sigaction act[CK_NSIG]; /* act[i] is signal i+1 */
	uint32_t nthreads;
	uint32_t pad;
	struct ck_thread threads[CK_MAX_THREADS];
	struct ck_itimer itimer[3]; /* ITIMER_REAL, _VIRTUAL, _PROF */
	uint32_t ntimers;
	uint32_t timers_dropped; /* POSIX timers beyond CK_MAX_TIMERS */
	struct ck_timer timers[CK_MAX_TIMERS];
	uint32_t nfds;
	uint32_t fds_dropped; /* open descriptors beyond CK_MAX_FDS */
	struct ck_fd fds[CK_MAX_FDS];
};

/* Written by the restore stub into the restored process just before it
 * jumps back into the handler: what the handler must clean up. */
struct ck_restore_info {
	uint64_t stub_start; /* the stub's own mapping, unmapped by the shim */
	uint64_t stub_len;
	uint64_t stacks_start; /* the stub's thread stacks, unmapped too */
	uint64_t stacks_len;
	int32_t pid; /* the restored process's PID */
	uint32_t generation; /* how many restores this process has been through */
	uint32_t nthreads; /* threads the stub started */
	uint32_t resumed; /* threads back in the shim; the last one unmaps */
};

extern struct ck_state ckpt_state;

/* How long the last ckpt_snapshot kept the program stopped. */
extern int64_t ckpt_pause_ns;
extern struct ck_restore_info ckpt_restore_info;

/* RLIMIT_NOFILE as the program had it before the Go runtime started. */
extern struct rlimit ckpt_nofile;

/* The working directory the program started in ("" if too long). */
extern char ckpt_start_cwd[4096];

/* The Go runtime starts on its own thread while the program's main() runs.
 * ck_go_ready is called at the end of go/lib's package initialization;
 * ck_wait_go makes the program's main thread wait for it before it touches
 * what the runtime's start changes (RLIMIT_NOFILE). */
void ck_go_ready(void);
void ck_wait_go(void);

/* The pipe the trigger handler writes a byte into; the Go coordinator reads it. */
extern int ckpt_wake_fd[2];

/* ckpt_snapshot freezes every other thread, captures the process into
 * ckpt_state, forks the snapshot child and thaws.  It returns the child's
 * PID; 0 when it returns in a restored process; -errno on failure. */
int ckpt_snapshot(void);

/* ckpt_finish is called by Go when it is done with a snapshot: it allows the
 * next checkpoint and, if a trigger arrived meanwhile, raises it again. */
void ckpt_finish(void);

/* Write tracking for incremental checkpoints (go/lib/tracking.go).  Go
 * registers the program's private memory with a userfaultfd in asynchronous
 * write-protect mode; while the threads are stopped, before the fork,
 * ckpt_snapshot asks the kernel which pages were written since the last
 * snapshot and protects them again in the same call (PAGEMAP_SCAN on
 * /proc/self/pagemap), so that the next answer starts at this snapshot.
 * Both descriptors are left out of the image. */
struct ck_track {
	int32_t uffd;	 /* -1: not tracking */
	int32_t pagemap; /* -1: not tracking */
	int32_t err;	 /* 0, or the errno that cut the last scan short */
	int32_t scan;	 /* 1: ckpt_snapshot scans (incremental checkpoints) */
	/* The kernel writes the regions after it has looked at their pages,
	 * so Go maps this buffer apart and leaves it unregistered. */
	uint64_t *regions; /* n struct page_region {start, end, categories} */
	uint64_t n;
	uint64_t cap; /* regions that fit in the buffer */
};

extern struct ck_track ckpt_track;

/* ck_track_scan fills ckpt_track.regions (track.c). */
void ck_track_scan(void);

/* Copying before the pause (go/lib/precopy.go, precopy.c).  Go copies the
 * program's big private memory into the image while the program runs,
 * with its write tracking on (ckpt_track).  While the threads are stopped,
 * ckpt_snapshot checks that each such area is still the mapping Go copied,
 * copies the pages written since into scratch, and leaves the area out of
 * the snapshot child (MADV_DONTFORK), whose fork would otherwise copy a
 * page table entry for each of its pages. */
#define CK_MAX_PRECOPY 256

enum {
	CK_PRECOPY_ASKED = 0,	/* set by Go */
	CK_PRECOPY_TAKEN,	/* checked, written pages in scratch, not forked */
	CK_PRECOPY_CHANGED,	/* mapped, moved or protected differently since */
	CK_PRECOPY_UNTRACKED,	/* some page is not tracked any more */
	CK_PRECOPY_IN_USE,	/* holds this thread's stack or the shim's data */
	CK_PRECOPY_FULL,	/* too much written for scratch or the region buffer */
	CK_PRECOPY_FAILED,	/* a system call failed */
};

struct ck_precopy_area {
	uint64_t start, end;
	char perms[4];	      /* as in /proc/self/maps: "rw-p" */
	int32_t state;	      /* CK_PRECOPY_* */
	uint64_t first, n;    /* its written pages: regions [first, first+n) */
	uint64_t scratch_off; /* where the copies of those pages start */
};

struct ck_precopy {
	uint32_t n;    /* areas; 0: no precopy */
	uint32_t keep; /* 1: the fork keeps the areas (CKPT_PRECOPY=check) */
	uint8_t *scratch; /* Go's, populated and MADV_DONTFORK */
	uint64_t scratch_len;
	struct ck_precopy_area areas[CK_MAX_PRECOPY];
};

extern struct ck_precopy ckpt_precopy;

void ck_precopy_freeze(void);
void ck_precopy_thaw(void);

/* The signal that stops threads for a snapshot. */
#define CK_FREEZE_SIG 63


/* ck_save_point saves the caller's resume point and returns 0; a restore
 * returns from it a second time with 1.  (point_amd64.S) */
__attribute__((returns_twice)) int ck_save_point(struct ck_point *p);

#endif /* CKPT_CC_SHIM_SHIM_H_ */
