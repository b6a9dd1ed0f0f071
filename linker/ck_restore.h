/*
 * ck_restore.h: the one input of the restore stub.
 *
 * The Go front end (go/restart) parses and checks the image, decides every
 * address, and writes this blob to a memory file whose descriptor number is
 * the stub's only argument.  The stub runs system calls and nothing else.
 * go/restart/args.go encodes this layout; its test compares the offsets.
 *
 * Blob layout: struct ck_restore_args, then nareas struct ck_restore_area at
 * areas_off, nruns struct ck_restore_run at runs_off, nfds struct
 * ck_restore_fd at fds_off, nthreads struct ck_restore_thread at
 * threads_off and nepoll struct ck_restore_epoll at epoll_off.  All offsets are
 * from the start of the blob; the blob is mapped at args_addr.
 */
#ifndef CKPT_LINKER_CK_RESTORE_H_
#define CKPT_LINKER_CK_RESTORE_H_

#include <stdint.h>

#include "cc_shim/shim.h" /* struct ck_sigaction, struct ck_itimer */

#define CK_ARGS_MAGIC 0x5347524154534b43ULL /* "CKSTARGS" little-endian */
#define CK_ARGS_VERSION 4

/* Area kinds; the same numbers as go/image.Kind. */
#define CK_KIND_MEMORY 0
#define CK_KIND_STACK 1
#define CK_KIND_HEAP 2
#define CK_KIND_VDSO 3
#define CK_KIND_VVAR 4
#define CK_KIND_VVAR_VCLOCK 5

#define CK_AREA_SHARED 1
/* The area's pages come only from restart's loader, which checked that it
 * can serve them: its runs are not passed, and if it cannot be registered
 * with the loader's userfaultfd the restore fails. */
#define CK_AREA_LOADER 2

struct ck_restore_area {
	uint64_t start;
	uint64_t end;
	uint32_t prot;
	uint32_t kind;
	uint32_t flags;
	uint32_t pad;
	uint64_t first_run; /* index of its first run */
	uint64_t nruns;
};

struct ck_restore_run {
	uint64_t addr;
	uint64_t len;
	uint64_t file_off;
};

struct ck_restore_fd {
	int32_t from;	/* opened by the front end, above every target */
	int32_t to;	/* the number the program had */
	uint32_t cloexec;
	uint32_t pad;
};

struct ck_restore_thread {
	struct ck_point point; /* ck_resume in start_amd64.S reads it first */
	uint64_t fs_base;
	uint64_t robust_head;
	uint64_t robust_len;
	uint64_t clear_child_tid;
	uint64_t rseq_addr;
	uint32_t rseq_len;
	uint32_t rseq_sig;
	uint64_t altstack_sp;
	uint64_t altstack_size;
	int32_t altstack_flags;
	int32_t tid;
	char name[16];
};

/* struct prctl_mm_map from linux/prctl.h. */
struct ck_mm_map {
	uint64_t start_code;
	uint64_t end_code;
	uint64_t start_data;
	uint64_t end_data;
	uint64_t start_brk;
	uint64_t brk;
	uint64_t start_stack;
	uint64_t arg_start;
	uint64_t arg_end;
	uint64_t env_start;
	uint64_t env_end;
	uint64_t auxv;
	uint32_t auxv_size;
	uint32_t exe_fd;
};

struct ck_restore_args {
	uint64_t magic;
	uint32_t version;
	uint32_t image_fd;
	uint64_t size;		/* bytes in the blob */
	uint64_t args_addr;	/* where the stub maps the blob */
	uint64_t args_len;	/* page-rounded size of that mapping */
	uint64_t stub_start;	/* the stub's link-time range */
	uint64_t stub_end;
	uint64_t reloc_addr;	/* where to move the stub first; 0: stay */
	uint64_t park_addr;	/* where the new vDSO waits while memory is mapped */
	uint64_t park_len;
	uint64_t restore_info;	/* struct ck_restore_info in the image, or 0 */
	uint64_t set_mm;	/* 1: apply mm with PR_SET_MM_MAP */
	struct ck_mm_map mm;
	char comm[16];
	struct ck_sigaction act[CK_NSIG];
	uint64_t nareas;
	uint64_t areas_off;
	uint64_t nruns;
	uint64_t runs_off;
	struct ck_itimer itimer[3]; /* ITIMER_REAL, _VIRTUAL, _PROF */
	uint64_t nfds;
	uint64_t fds_off;
	int32_t pid;		/* the process's PID: its first thread's TID */
	uint32_t pid_ns_init;	/* 1: make new namespaces, run as their PID 1 */
	uint64_t nthreads;	/* all threads, the one with TID pid included */
	uint64_t threads_off;	/* struct ck_restore_thread[nthreads] */
	uint64_t stacks_addr;	/* CK_THREAD_STACK bytes per thread */
	uint64_t stacks_len;
	uint64_t nepoll;	/* epoll registrations to make again */
	uint64_t epoll_off;	/* struct ck_restore_epoll[nepoll] */
	uint64_t ntimers;	/* POSIX timers to create with their IDs */
	uint64_t timers_off;	/* struct ck_timer[ntimers] (cc_shim/shim.h) */
	uint64_t scratch_addr;	/* a window of the image is mapped here to */
	uint64_t scratch_len;	/* copy small runs from; 0: read them */
	int32_t uffd_dev;	/* /dev/userfaultfd, or -1: copy every page */
	int32_t uffd_sock;	/* where the userfaultfd goes to restart's loader */
	int32_t fill_sock;	/* restart fills the memory (go/restart/fill.go), or -1 */
	int32_t pad;
};

/* One epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, {events, data}), by the numbers
 * the program has once its descriptors are in place. */
struct ck_restore_epoll {
	int32_t epfd;
	int32_t tfd;
	uint32_t events;
	uint32_t pad;
	uint64_t data;
};

#define CK_THREAD_STACK 16384

/* go/restart/args.go writes these layouts field by field; a change here
 * without one there fails the build. */
_Static_assert(sizeof(struct ck_restore_area) == 48, "ck_restore_area layout");
_Static_assert(sizeof(struct ck_restore_run) == 24, "ck_restore_run layout");
_Static_assert(sizeof(struct ck_restore_thread) == 152, "ck_restore_thread layout");
_Static_assert(sizeof(struct ck_mm_map) == 104, "ck_mm_map layout");
_Static_assert(__builtin_offsetof(struct ck_restore_args, act) == 216, "ck_restore_args layout");
_Static_assert(sizeof(struct ck_restore_fd) == 16, "ck_restore_fd layout");
_Static_assert(__builtin_offsetof(struct ck_restore_args, itimer) == 2296, "ck_restore_args layout");
_Static_assert(sizeof(struct ck_restore_args) == 2512, "ck_restore_args layout");
_Static_assert(sizeof(struct ck_timer) == 64, "ck_timer layout");
_Static_assert(sizeof(struct ck_restore_epoll) == 24, "ck_restore_epoll layout");

#endif /* CKPT_LINKER_CK_RESTORE_H_ */
