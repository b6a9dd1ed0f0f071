/*
 * stub.c: the restore stub.  A freestanding static program at a fixed
 * address (stub.lds) that turns itself into the checkpointed process.
 *
 * Algorithm:
 *   0. Create new user, mount and PID namespaces and fork their PID 1,
 *      staying behind forwarding signals (ck_enter_namespaces); as PID 1:
 *      mount /proc, fork the process with its original PID, and stay
 *      behind forwarding signals (ck_init).
 *   1. Read struct ck_restore_args from the descriptor named by argv[1] and
 *      map the whole blob where the front end said.
 *   2. If the image needs the stub's own addresses, copy the stub to
 *      args->reloc_addr and continue there (the code is position
 *      independent; see stub.lds).
 *   3. Park the kernel's [vdso], [vvar] and [vvar_vclock] in the park window,
 *      then unmap everything that is not the stub, the blob or the park.
 *   4. Map every memory area of the image and read its stored pages.
 *   5. Move the parked vDSO pieces to the image's vDSO addresses: glibc
 *      cached pointers into the old ones.
 *   6. Restore the mm layout (brk) with PR_SET_MM_MAP, the name and every
 *      signal disposition; recreate every other thread with clone3 and its
 *      TID; each sets its sigaltstack, robust list, rseq and name and waits.
 *   7. Tell the restored library where the stub is, move the descriptors
 *      the front end opened to their numbers, close ours, start the
 *      interval timers, set the fs base and jump into the saved point.
 *      All signals stay blocked from the start until that jump.  The library's
 *      handler returns through rt_sigreturn, restoring registers, FPU state
 *      and signal mask from the frame on the restored stack.
 *
 * Every failure writes one line naming the step and the kernel's error code
 * and exits with status 1.  Nothing here uses libc: static glibc would set
 * up its own TLS and rseq, which the restore replaces under it.
 */
#include <stddef.h>
#include <stdint.h>

#include "cc_shim/shim.h"
#include "linker/ck_restore.h"

#define SYS_read 0
#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_mmap 9
#define SYS_mprotect 10
#define SYS_munmap 11
#define SYS_madvise 28
#define SYS_rt_sigaction 13
#define SYS_rt_sigprocmask 14
#define SYS_pread64 17
#define SYS_ioctl 16
#define SYS_sendmsg 46
#define SYS_recvfrom 45
#define SYS_mremap 25
#define SYS_setitimer 38
#define SYS_getpid 39
#define SYS_wait4 61
#define SYS_kill 62
#define SYS_getuid 102
#define SYS_getgid 104
#define SYS_unshare 272
#define SYS_pipe2 293
#define SYS_mount 165
#define SYS_futex 202
#define SYS_clone3 435
#define SYS_close_range 436
#define SYS_sigaltstack 131
#define SYS_prctl 157
#define SYS_arch_prctl 158
#define SYS_set_tid_address 218
#define SYS_timer_create 222
#define SYS_timer_settime 223
#define SYS_exit_group 231
#define SYS_epoll_ctl 233
#define SYS_set_robust_list 273
#define SYS_dup3 292
#define SYS_rseq 334

#define PROT_READ 1
#define PROT_WRITE 2
#define PROT_EXEC 4
#define MAP_SHARED 0x01
#define MAP_PRIVATE 0x02
#define MAP_FIXED 0x10
#define MAP_ANONYMOUS 0x20
#define MAP_GROWSDOWN 0x100
#define MAP_NORESERVE 0x4000
#define MAP_FIXED_NOREPLACE 0x100000
#define MADV_POPULATE_WRITE 23
#define MREMAP_MAYMOVE 1
#define MREMAP_FIXED 2
#define PR_SET_NAME 15
#define PR_SET_MM 35
#define PR_SET_MM_MAP 14
#define ARCH_SET_FS 0x1002
#define O_CLOEXEC 02000000
#define SIGCHLD 17
#define MS_NOSUID 2
#define MS_NODEV 4
#define MS_NOEXEC 8
#define MS_REC 16384
#define MS_PRIVATE (1 << 18)
#define FUTEX_WAIT_PRIVATE 128
#define FUTEX_WAKE_PRIVATE 129
#define WALL 0x40000000
#define CLONE_VM 0x100
#define CLONE_FS 0x200
#define CLONE_FILES 0x400
#define CLONE_SIGHAND 0x800
#define CLONE_THREAD 0x10000
#define CLONE_SYSVSEM 0x40000
#define CLONE_SETTLS 0x80000
#define CLONE_CHILD_CLEARTID 0x200000
#define CLONE_NEWNS 0x20000
#define CLONE_NEWUSER 0x10000000
#define CLONE_NEWPID 0x20000000
#define PR_SET_PDEATHSIG 1
#define SIGKILL 9
#define O_WRONLY 1
#define SA_RESTORER 0x04000000
#define EINTR 4
#define PAGE 4096UL
#define MAX_MAPS 256

struct ck_map {
	uint64_t start, end;
	int kind; /* CK_KIND_VDSO etc., or -1 */
};

/* The stub's own range, from stub.lds.  Hidden, so that -fPIE code takes
 * their addresses relative to %rip: they follow the stub when it moves. */
extern char __ck_stub_start[] __attribute__((visibility("hidden")));
extern char __ck_stub_end[] __attribute__((visibility("hidden")));

void ck_main(uint64_t *sp) __attribute__((noreturn, visibility("hidden")));
void ck_main_moved(struct ck_restore_args *a) __attribute__((noreturn, visibility("hidden")));
void ck_switch(void (*entry)(struct ck_restore_args *), void *stack, struct ck_restore_args *a)
	__attribute__((noreturn, visibility("hidden")));
void ck_resume(const struct ck_restore_thread *t) __attribute__((noreturn, visibility("hidden")));
long ck_clone3_thread(void *args, uint64_t size, void (*fn)(const struct ck_restore_thread *),
		      const struct ck_restore_thread *arg) __attribute__((visibility("hidden")));
void ck_sigreturn(void) __attribute__((visibility("hidden")));
void ck_thread_main(const struct ck_restore_thread *src) __attribute__((noreturn, visibility("hidden")));
extern char ck_stack_top[] __attribute__((visibility("hidden")));

static struct ck_restore_args *ck_load_args(uint64_t *sp);
static void ck_move_stub(struct ck_restore_args *a) __attribute__((noreturn));
static int ck_read_maps(struct ck_map *maps);
static void ck_park_vdso(const struct ck_restore_args *a);
static void ck_unmap_others(const struct ck_restore_args *a);
static void ck_restore_memory(const struct ck_restore_args *a);
static void ck_restore_area(const struct ck_restore_args *a, const struct ck_restore_area *ar,
			    const struct ck_restore_run *runs, int copy_now);
static void ck_copy_runs(const struct ck_restore_args *a, const struct ck_restore_area *ar,
			 const struct ck_restore_run *runs);
static void ck_protect_area(const struct ck_restore_area *ar);
static void ck_restore_vdso(const struct ck_restore_args *a);
static void ck_restore_mm(const struct ck_restore_args *a);
static void ck_restore_signals(const struct ck_restore_args *a);
static void ck_restore_thread(const struct ck_restore_thread *t);
static void ck_enter_namespaces(void);
static void ck_init(const struct ck_restore_args *a);
static void ck_relay(int32_t pid) __attribute__((noreturn));
static void ck_start_threads(const struct ck_restore_args *a);
static void ck_restore_files(const struct ck_restore_args *a);
static void ck_restore_timers(const struct ck_restore_args *a);
static void ck_finish(const struct ck_restore_args *a) __attribute__((noreturn));

/* ---- system calls and helpers ---------------------------------------- */

static long ck_syscall6(long n, long a1, long a2, long a3, long a4, long a5, long a6)
{
	long ret;
	register long r10 __asm__("r10") = a4;
	register long r8 __asm__("r8") = a5;
	register long r9 __asm__("r9") = a6;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

#define ck_sys(n, a, b, c, d, e, f) \
	ck_syscall6((n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))

/* The compiler may emit calls to these for struct copies. */
void *memcpy(void *dst, const void *src, size_t n) __attribute__((visibility("hidden")));
void *memset(void *dst, int c, size_t n) __attribute__((visibility("hidden")));

void *memcpy(void *dst, const void *src, size_t n)
{
	char *d = dst;
	const char *s = src;
	while (n--)
		*d++ = *s++;
	return dst;
}

void *memset(void *dst, int c, size_t n)
{
	char *d = dst;
	while (n--)
		*d++ = (char)c;
	return dst;
}

static size_t ck_strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

static void ck_write_str(const char *s)
{
	ck_sys(SYS_write, 2, s, ck_strlen(s), 0, 0, 0);
}

/* ck_decimal writes v in decimal just before end and returns where it
 * starts (at most 20 digits). */
static char *ck_decimal(char *end, unsigned long v)
{
	do {
		*--end = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return end;
}

/* ck_fail reports a failed step with the kernel's return code and exits. */
static void __attribute__((noreturn)) ck_fail(const char *what, long rc)
{
	char num[24] = {0};
	char *p;

	num[sizeof(num) - 2] = '\n';
	p = ck_decimal(num + sizeof(num) - 2, rc < 0 ? (unsigned long)-rc : (unsigned long)rc);
	if (rc < 0)
		*--p = '-';
	ck_write_str("ckpt-restore: ");
	ck_write_str(what);
	ck_write_str(": ");
	ck_write_str(p);
	ck_sys(SYS_exit_group, 1, 0, 0, 0, 0, 0);
	__builtin_unreachable();
}

static int ck_overlaps(uint64_t s1, uint64_t e1, uint64_t s2, uint64_t e2)
{
	return s1 < e2 && s2 < e1;
}

static void ck_pread_full(int fd, void *buf, uint64_t len, uint64_t off, const char *what)
{
	char *p = buf;
	while (len > 0) {
		long n = ck_sys(SYS_pread64, fd, p, len, off, 0, 0);
		if (n == -EINTR)
			continue;
		if (n <= 0)
			ck_fail(what, n == 0 ? -5 : n);
		p += n;
		len -= (uint64_t)n;
		off += (uint64_t)n;
	}
}

/* ---- 1 and 2: arguments and relocation -------------------------------- */

void ck_main(uint64_t *sp)
{
	uint64_t all = ~0ULL;
	struct ck_restore_args *a;

	/* No signal may run a restored handler on the stub's stack; the
	 * program's own mask comes back through rt_sigreturn. */
	ck_sys(SYS_rt_sigprocmask, 2 /* SIG_SETMASK */, &all, 0, 8, 0, 0);
	a = ck_load_args(sp);

	if (a->reloc_addr != 0)
		ck_move_stub(a);
	ck_main_moved(a);
}

static struct ck_restore_args *ck_load_args(uint64_t *sp)
{
	struct ck_restore_args head;
	const char *arg;
	long fd = 0, p;

	/* sp[0] is argc, sp[1] argv[0], sp[2] argv[1]: the blob's fd. */
	if (sp[0] != 2)
		ck_fail("usage: ckpt-restore FD (run by restart, not by hand)", -22);
	for (arg = (const char *)sp[2]; *arg; arg++) {
		if (*arg < '0' || *arg > '9' || fd > 100000)
			ck_fail("bad descriptor argument", -22);
		fd = fd * 10 + (*arg - '0');
	}
	ck_pread_full((int)fd, &head, sizeof(head), 0, "reading restore arguments");
	if (head.magic != CK_ARGS_MAGIC || head.version != CK_ARGS_VERSION ||
	    head.size < sizeof(head) || head.args_len < head.size || head.args_len % PAGE)
		ck_fail("restore arguments do not match this stub", -22);
	p = ck_sys(SYS_mmap, head.args_addr, head.args_len, PROT_READ,
		   MAP_PRIVATE | MAP_FIXED_NOREPLACE, fd, 0);
	if (p != (long)head.args_addr)
		ck_fail("mapping restore arguments", p);
	ck_sys(SYS_close, fd, 0, 0, 0, 0, 0);
	return (struct ck_restore_args *)p;
}

static void ck_move_stub(struct ck_restore_args *a)
{
	uint64_t start = (uint64_t)__ck_stub_start, len = (uint64_t)(__ck_stub_end - __ck_stub_start);
	uint64_t delta = a->reloc_addr - start;
	long p;

	p = ck_sys(SYS_mmap, a->reloc_addr, len, PROT_READ | PROT_WRITE | PROT_EXEC,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (p != (long)a->reloc_addr)
		ck_fail("moving the stub out of the image's way", p);
	memcpy((void *)p, __ck_stub_start, len);
	ck_switch((void (*)(struct ck_restore_args *))((uint64_t)ck_main_moved + delta),
		  ck_stack_top + delta, a);
}

/* ---- 3: clear the address space --------------------------------------- */

static int ck_kind_of(const char *name, const char *end)
{
	static const struct {
		const char *name;
		int kind;
	} specials[] = {
		{"[vdso]", CK_KIND_VDSO},
		{"[vvar]", CK_KIND_VVAR},
		{"[vvar_vclock]", CK_KIND_VVAR_VCLOCK},
	};
	size_t i, n = (size_t)(end - name);

	for (i = 0; i < sizeof(specials) / sizeof(specials[0]); i++) {
		const char *s = specials[i].name;
		size_t j = 0;
		while (j < n && s[j] && s[j] == name[j])
			j++;
		if (j == n && s[j] == 0)
			return specials[i].kind;
	}
	return -1;
}

static uint64_t ck_hex(const char **pp)
{
	const char *p = *pp;
	uint64_t v = 0;

	for (;; p++) {
		char c = *p;
		if (c >= '0' && c <= '9')
			v = v * 16 + (uint64_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v * 16 + (uint64_t)(c - 'a' + 10);
		else
			break;
	}
	*pp = p;
	return v;
}

/* ck_read_maps lists this process's mappings.  A static program has only a
 * handful; the parse only needs each range and whether it is a vDSO part. */
static int ck_read_maps(struct ck_map *maps)
{
	static char buf[65536];
	long fd, n, len = 0;
	int count = 0;
	const char *p, *end;

	fd = ck_sys(SYS_open, "/proc/self/maps", 0, 0, 0, 0, 0);
	if (fd < 0)
		ck_fail("opening /proc/self/maps", fd);
	while ((n = ck_sys(SYS_read, fd, buf + len, sizeof(buf) - 1 - (size_t)len, 0, 0, 0)) != 0) {
		if (n == -EINTR)
			continue;
		if (n < 0)
			ck_fail("reading /proc/self/maps", n);
		len += n;
		if (len >= (long)sizeof(buf) - 1)
			ck_fail("/proc/self/maps is too long", len);
	}
	ck_sys(SYS_close, fd, 0, 0, 0, 0, 0);
	p = buf;
	end = buf + len;
	while (p < end) {
		const char *line = p, *eol = p, *name;
		while (eol < end && *eol != '\n')
			eol++;
		if (count == MAX_MAPS)
			ck_fail("too many mappings in the stub", count);
		maps[count].start = ck_hex(&p);
		p++; /* '-' */
		maps[count].end = ck_hex(&p);
		/* The name is the sixth field. */
		name = line;
		for (int f = 0; f < 5 && name < eol; f++) {
			while (name < eol && *name != ' ')
				name++;
			while (name < eol && *name == ' ')
				name++;
		}
		maps[count].kind = ck_kind_of(name, eol);
		count++;
		p = eol + 1;
	}
	return count;
}

static void ck_park_vdso(const struct ck_restore_args *a)
{
	struct ck_map maps[MAX_MAPS];
	int n = ck_read_maps(maps);
	uint64_t next = a->park_addr;

	for (int i = 0; i < n; i++) {
		uint64_t len = maps[i].end - maps[i].start;
		long p;
		if (maps[i].kind < 0)
			continue;
		if (ck_overlaps(maps[i].start, maps[i].end, a->park_addr, a->park_addr + a->park_len))
			ck_fail("the kernel's vDSO lies in the park window", (long)maps[i].start);
		if (next + len > a->park_addr + a->park_len)
			ck_fail("the park window is too small for the vDSO", (long)len);
		/* Park each kind at a fixed slot: 16 pages apart, in kind order. */
		next = a->park_addr + (uint64_t)(maps[i].kind - CK_KIND_VDSO) * (a->park_len / 4);
		p = ck_sys(SYS_mremap, maps[i].start, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, next, 0);
		if (p != (long)next)
			ck_fail("parking the vDSO", p);
	}
}

static void ck_unmap_others(const struct ck_restore_args *a)
{
	struct ck_map maps[MAX_MAPS];
	int n = ck_read_maps(maps);
	uint64_t stub = (uint64_t)__ck_stub_start, stub_end = (uint64_t)__ck_stub_end;

	for (int i = 0; i < n; i++) {
		long rc;
		if (ck_overlaps(maps[i].start, maps[i].end, stub, stub_end) ||
		    ck_overlaps(maps[i].start, maps[i].end, a->args_addr, a->args_addr + a->args_len) ||
		    ck_overlaps(maps[i].start, maps[i].end, a->park_addr, a->park_addr + a->park_len))
			continue;
		if (maps[i].start >= 0x800000000000ULL)
			continue; /* [vsyscall] */
		rc = ck_sys(SYS_munmap, maps[i].start, maps[i].end - maps[i].start, 0, 0, 0, 0);
		if (rc != 0)
			ck_fail("unmapping the stub's old mappings", rc);
	}
}

/* ---- 4 and 5: memory ---------------------------------------------------- */

/* Runs up to this long are copied from a mapped window of the image (one
 * mapping serves thousands of them) rather than read one by one. */
#define CK_SMALL_RUN (64 * 1024)

/* The part of the image mapped at scratch_addr, if any. */
static uint64_t ck_window_off, ck_window_len;

static void ck_copy(void *dst, const void *src, uint64_t n)
{
	__asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
}

/* Lazy loading: with uffd_dev, the private areas that hold data are
 * registered with a userfaultfd that restart's loader (go/restart/lazy.go)
 * serves, page faults first and everything else in the background, so the
 * program runs before its memory is all in place.  The stub only creates
 * the userfaultfd and hands it over: the loader, outside the program's user
 * namespace, enables the events (fork in particular needs CAP_SYS_PTRACE
 * there) and answers with one byte, 1 if it serves. */
#define CK_USERFAULTFD_IOC_NEW 0xaa00
#define CK_UFFDIO_REGISTER 0xc020aa00
#define CK_UFFDIO_REGISTER_MODE_MISSING 1
#define CK_O_NONBLOCK 04000
#define CK_SOL_SOCKET 1
#define CK_SCM_RIGHTS 1

static int ck_uffd = -1; /* registered areas are loaded by restart */

struct ck_iovec {
	void *base;
	uint64_t len;
};

struct ck_msghdr {
	void *name;
	uint32_t namelen;
	struct ck_iovec *iov;
	uint64_t iovlen;
	void *control;
	uint64_t controllen;
	int32_t flags;
};

/* ck_start_lazy creates the userfaultfd and passes it to the loader; on
 * any failure the stub copies every page itself, as without uffd_dev. */
static void ck_start_lazy(const struct ck_restore_args *a)
{
	struct {
		uint64_t len;
		int32_t level, type;
		int32_t fd, pad;
	} cmsg;
	struct ck_iovec iov;
	struct ck_msghdr msg;
	char byte = 0;
	long uffd, rc;

	if (a->uffd_dev < 0)
		return;
	/* The loader always answers, with or without a userfaultfd, and
	 * the stub waits for it: with --lazy it checks the image first if it
	 * cannot load lazily. */
	uffd = ck_sys(SYS_ioctl, a->uffd_dev, CK_USERFAULTFD_IOC_NEW, O_CLOEXEC | CK_O_NONBLOCK, 0, 0, 0);
	memset(&msg, 0, sizeof(msg));
	cmsg.len = 20; /* CMSG_LEN(sizeof(int)) */
	cmsg.level = CK_SOL_SOCKET;
	cmsg.type = CK_SCM_RIGHTS;
	cmsg.fd = (int32_t)uffd;
	cmsg.pad = 0;
	iov.base = &byte;
	iov.len = 1;
	msg.iov = &iov;
	msg.iovlen = 1;
	if (uffd >= 0) {
		msg.control = &cmsg;
		msg.controllen = sizeof(cmsg);
	}
	rc = ck_sys(SYS_sendmsg, a->uffd_sock, &msg, 0, 0, 0, 0);
	if (rc == 1 && ck_sys(SYS_recvfrom, a->uffd_sock, &byte, 1, 0, 0, 0) == 1 && byte == 1 && uffd >= 0)
		ck_uffd = (int)uffd;
	else if (uffd >= 0)
		ck_sys(SYS_close, uffd, 0, 0, 0, 0, 0);
	if (ck_uffd < 0)
		ck_sys(SYS_close, a->uffd_sock, 0, 0, 0, 0, 0);
	ck_sys(SYS_close, a->uffd_dev, 0, 0, 0, 0, 0);
}

/* ck_register_lazy hands an area's pages to the loader; false if it cannot,
 * and the stub copies them. */
static int ck_register_lazy(const struct ck_restore_area *ar)
{
	struct {
		uint64_t start, len, mode, ioctls;
	} reg = {ar->start, ar->end - ar->start, CK_UFFDIO_REGISTER_MODE_MISSING, 0};

	if (ck_uffd < 0 || (ar->flags & CK_AREA_SHARED))
		return 0;
	return ck_sys(SYS_ioctl, ck_uffd, CK_UFFDIO_REGISTER, &reg, 0, 0, 0) == 0;
}

/* ck_copy_run copies one run into place.  Memory is always copied, never
 * mapped from the image: a private file mapping would change what
 * MADV_DONTNEED does there (the pages would read as the image's again, not
 * as zeros), and allocators rely on the zeros (Go's runtime, jemalloc). */
static void ck_copy_run(const struct ck_restore_args *a, const struct ck_restore_run *run)
{
	if (run->len <= CK_SMALL_RUN && a->scratch_len >= CK_SMALL_RUN) {
		if (run->file_off < ck_window_off ||
		    run->file_off + run->len > ck_window_off + ck_window_len) {
			long p = ck_sys(SYS_mmap, a->scratch_addr, a->scratch_len, PROT_READ,
					MAP_PRIVATE | MAP_FIXED, a->image_fd, run->file_off);
			ck_window_len = p == (long)a->scratch_addr ? a->scratch_len : 0;
			ck_window_off = run->file_off;
		}
		if (ck_window_len) {
			ck_copy((void *)run->addr,
				(const char *)a->scratch_addr + (run->file_off - ck_window_off), run->len);
			return;
		}
	}
	/* Faulting the pages in with one call first is faster than one
	 * fault each as the read fills them (older kernels refuse it). */
	ck_sys(SYS_madvise, run->addr, run->len, MADV_POPULATE_WRITE, 0, 0, 0);
	ck_pread_full((int)a->image_fd, (void *)run->addr, run->len, run->file_off,
		      "reading pages from the image");
}

/* ck_filled asks restart to fill the mapped areas (go/restart/fill.go: it
 * writes the pages with process_vm_writev on every CPU, where the stub
 * alone would copy them on one) and waits until it has: true if it did.
 * restart learns which process to write to from the message's
 * credentials.  On any failure the stub copies every page itself. */
static int ck_filled(const struct ck_restore_args *a)
{
	char byte = 1;
	int ok;

	if (a->fill_sock < 0)
		return 0;
	ok = ck_sys(SYS_write, a->fill_sock, &byte, 1, 0, 0, 0) == 1 &&
	     ck_sys(SYS_read, a->fill_sock, &byte, 1, 0, 0, 0) == 1 && byte == 1;
	ck_sys(SYS_close, a->fill_sock, 0, 0, 0, 0, 0);
	return ok;
}

static int ck_restored_here(const struct ck_restore_area *ar)
{
	return ar->kind != CK_KIND_VDSO && ar->kind != CK_KIND_VVAR && ar->kind != CK_KIND_VVAR_VCLOCK;
}

static void ck_restore_memory(const struct ck_restore_args *a)
{
	const struct ck_restore_area *areas =
		(const struct ck_restore_area *)((const char *)a + a->areas_off);
	const struct ck_restore_run *runs =
		(const struct ck_restore_run *)((const char *)a + a->runs_off);
	int filling;

	ck_start_lazy(a);
	/* restart fills only where no loader serves (it never passes both). */
	filling = a->fill_sock >= 0 && ck_uffd < 0;
	for (uint64_t i = 0; i < a->nareas; i++)
		if (ck_restored_here(&areas[i]))
			ck_restore_area(a, &areas[i], runs, !filling);
	if (filling) {
		int filled = ck_filled(a);

		for (uint64_t i = 0; i < a->nareas; i++) {
			if (!ck_restored_here(&areas[i]))
				continue;
			if (!filled)
				ck_copy_runs(a, &areas[i], runs);
			ck_protect_area(&areas[i]);
		}
	}
	if (a->scratch_len)
		ck_sys(SYS_munmap, a->scratch_addr, a->scratch_len, 0, 0, 0, 0);
	/* Every area is registered: the loader may start (before, a copy to
	 * an area not registered yet would fail and be given up).  It holds
	 * its own copy of the userfaultfd: registrations last until it
	 * closes it, once every page is in place. */
	if (ck_uffd >= 0) {
		char go = 1;
		ck_sys(SYS_write, a->uffd_sock, &go, 1, 0, 0, 0);
		ck_sys(SYS_close, a->uffd_sock, 0, 0, 0, 0, 0);
		ck_sys(SYS_close, ck_uffd, 0, 0, 0, 0, 0);
	}
}

static void ck_copy_runs(const struct ck_restore_args *a, const struct ck_restore_area *ar,
			 const struct ck_restore_run *runs)
{
	for (uint64_t r = ar->first_run; r < ar->first_run + ar->nruns; r++)
		ck_copy_run(a, &runs[r]);
}

/* ck_protect_area gives an area its protection once its pages are in. */
static void ck_protect_area(const struct ck_restore_area *ar)
{
	long rc;

	if (ar->nruns == 0 || ar->prot == (PROT_READ | PROT_WRITE))
		return; /* mapped with it */
	rc = ck_sys(SYS_mprotect, ar->start, ar->end - ar->start, ar->prot, 0, 0, 0);
	if (rc != 0)
		ck_fail("protecting an image area", rc);
}

/* ck_restore_area maps an area and hands it to the loader if it serves;
 * else with copy_now the stub copies its pages and protects it, and without
 * it restart fills them first (ck_restore_memory then protects it). */
static void ck_restore_area(const struct ck_restore_args *a, const struct ck_restore_area *ar,
			    const struct ck_restore_run *runs, int copy_now)
{
	long flags = MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | MAP_NORESERVE;
	long prot = ar->nruns ? PROT_READ | PROT_WRITE : ar->prot;
	long p;

	flags |= (ar->flags & CK_AREA_SHARED) ? MAP_SHARED : MAP_PRIVATE;
	if (ar->kind == CK_KIND_STACK)
		flags |= MAP_GROWSDOWN;
	p = ck_sys(SYS_mmap, ar->start, ar->end - ar->start, prot, flags, -1, 0);
	if (p != (long)ar->start)
		ck_fail("mapping an image area", p);
	if (ar->flags & CK_AREA_LOADER) {
		if (!ck_register_lazy(ar))
			ck_fail("handing an image area to the loader", -22 /* EINVAL */);
	} else if (ar->nruns > 0 && ck_register_lazy(ar)) {
		/* the loader fills it */
	} else if (copy_now) {
		ck_copy_runs(a, ar, runs);
	} else {
		return;
	}
	if (copy_now)
		ck_protect_area(ar);
}

static void ck_restore_vdso(const struct ck_restore_args *a)
{
	const struct ck_restore_area *areas =
		(const struct ck_restore_area *)((const char *)a + a->areas_off);

	for (uint64_t i = 0; i < a->nareas; i++) {
		const struct ck_restore_area *ar = &areas[i];
		uint64_t len = ar->end - ar->start, from;
		long p;
		if (ar->kind != CK_KIND_VDSO && ar->kind != CK_KIND_VVAR && ar->kind != CK_KIND_VVAR_VCLOCK)
			continue;
		from = a->park_addr + (uint64_t)(ar->kind - CK_KIND_VDSO) * (a->park_len / 4);
		p = ck_sys(SYS_mremap, from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, ar->start, 0);
		if (p != (long)ar->start)
			ck_fail("moving the vDSO to the image's address", p);
	}
}

/* ---- 6: process and thread state ------------------------------------- */

static void ck_restore_mm(const struct ck_restore_args *a)
{
	long rc;

	if (a->set_mm) {
		rc = ck_sys(SYS_prctl, PR_SET_MM, PR_SET_MM_MAP, &a->mm, sizeof(a->mm), 0, 0);
		if (rc != 0)
			ck_fail("restoring the memory layout (PR_SET_MM_MAP)", rc);
	}
	ck_sys(SYS_prctl, PR_SET_NAME, a->comm, 0, 0, 0, 0);
}

static void ck_restore_signals(const struct ck_restore_args *a)
{
	for (int sig = 1; sig <= 64; sig++) {
		long rc;
		if (sig == 9 || sig == 19) /* SIGKILL, SIGSTOP */
			continue;
		rc = ck_sys(SYS_rt_sigaction, sig, &a->act[sig - 1], 0, 8, 0, 0);
		if (rc != 0)
			ck_fail("restoring a signal disposition", sig);
	}
}

/* ck_restore_thread sets the calling thread's kernel state; the fs base
 * and clear_child_tid come with clone3 (or later, for the first thread). */
static void ck_restore_thread(const struct ck_restore_thread *t)
{
	long rc;

	if (t->altstack_sp != 0 || t->altstack_flags != 0) {
		struct { uint64_t sp; int32_t flags; int32_t pad; uint64_t size; } ss = {
			t->altstack_sp, t->altstack_flags, 0, t->altstack_size};
		rc = ck_sys(SYS_sigaltstack, &ss, 0, 0, 0, 0, 0);
		if (rc != 0)
			ck_fail("restoring the signal stack", rc);
	}
	if (t->robust_head != 0) {
		rc = ck_sys(SYS_set_robust_list, t->robust_head, t->robust_len, 0, 0, 0, 0);
		if (rc != 0)
			ck_fail("restoring the robust futex list", rc);
	}
	if (t->rseq_addr != 0) {
		rc = ck_sys(SYS_rseq, t->rseq_addr, t->rseq_len, 0, t->rseq_sig, 0, 0);
		if (rc != 0)
			ck_fail("registering rseq", rc);
	}
	ck_sys(SYS_prctl, PR_SET_NAME, t->name, 0, 0, 0, 0);
}

/* ---- threads ------------------------------------------------------------- */

static uint32_t ck_ready; /* threads created and set up */
static uint32_t ck_go;    /* 1: every thread may resume */

static void ck_futex_wait(uint32_t *w, uint32_t val)
{
	ck_sys(SYS_futex, w, FUTEX_WAIT_PRIVATE, val, 0, 0, 0);
}

static void ck_futex_wake(uint32_t *w)
{
	ck_sys(SYS_futex, w, FUTEX_WAKE_PRIVATE, 0x7fffffff, 0, 0, 0);
}

/* ck_thread_main runs first in every thread but the first, on its own small
 * stack.  It copies its state out of the argument blob, which the first
 * thread unmaps once all are ready. */
void ck_thread_main(const struct ck_restore_thread *src)
{
	struct ck_restore_thread t = *src;

	ck_restore_thread(&t);
	__atomic_add_fetch(&ck_ready, 1, __ATOMIC_SEQ_CST);
	ck_futex_wake(&ck_ready);
	while (!__atomic_load_n(&ck_go, __ATOMIC_SEQ_CST))
		ck_futex_wait(&ck_go, 0);
	ck_resume(&t);
}

struct ck_clone_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls,
		set_tid, set_tid_size, cgroup;
};

/* ck_start_threads recreates every thread but the first with its TID.
 * They wait until all exist: a resumed Go thread may at once signal
 * another (preemption), which must be there. */
static void ck_start_threads(const struct ck_restore_args *a)
{
	const struct ck_restore_thread *threads =
		(const struct ck_restore_thread *)((const char *)a + a->threads_off);
	uint32_t started = 0, ready;
	long p;

	if (a->nthreads > 1) {
		p = ck_sys(SYS_mmap, a->stacks_addr, a->stacks_len, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (p != (long)a->stacks_addr)
			ck_fail("mapping thread stacks", p);
	}
	for (uint64_t i = 0; i < a->nthreads; i++) {
		const struct ck_restore_thread *t = &threads[i];
		uint64_t tid = (uint64_t)t->tid;
		struct ck_clone_args ca;

		if (t->tid == a->pid)
			continue;
		memset(&ca, 0, sizeof(ca));
		ca.flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM |
			   CLONE_SETTLS | (t->clear_child_tid ? CLONE_CHILD_CLEARTID : 0);
		ca.child_tid = t->clear_child_tid;
		ca.stack = a->stacks_addr + (uint64_t)started * CK_THREAD_STACK;
		ca.stack_size = CK_THREAD_STACK;
		ca.tls = t->fs_base;
		ca.set_tid = (uint64_t)&tid;
		ca.set_tid_size = 1;
		p = ck_clone3_thread(&ca, sizeof(ca), ck_thread_main, t);
		if (p != t->tid)
			ck_fail("recreating a thread with its TID", p);
		started++;
	}
	while ((ready = __atomic_load_n(&ck_ready, __ATOMIC_SEQ_CST)) != started)
		ck_futex_wait(&ck_ready, ready);
}

/* ---- PID 1 ---------------------------------------------------------------- */

static int32_t ck_leader_pid; /* in ck_relay: the process signals go to */

static void ck_forward(int sig)
{
	ck_sys(SYS_kill, ck_leader_pid, sig, 0, 0, 0, 0);
}

/* ck_write_file writes s to the file at path, or fails. */
static void ck_write_file(const char *path, const char *s)
{
	long fd = ck_sys(SYS_open, path, O_WRONLY | O_CLOEXEC, 0, 0, 0, 0), n;

	if (fd < 0)
		ck_fail(path, fd);
	n = ck_sys(SYS_write, fd, s, ck_strlen(s), 0, 0, 0);
	if (n != (long)ck_strlen(s))
		ck_fail(path, n < 0 ? n : -5);
	ck_sys(SYS_close, fd, 0, 0, 0, 0, 0);
}

/* ck_write_id_map maps ID 0 inside to id outside ("0 ID 1"). */
static void ck_write_id_map(const char *path, unsigned long id)
{
	char line[32] = {0};
	char *p;

	memcpy(line + sizeof(line) - 4, " 1\n", 3);
	p = ck_decimal(line + sizeof(line) - 4, id);
	*--p = ' ';
	*--p = '0';
	ck_write_file(path, p);
}

/* ck_enter_namespaces creates the user, mount and PID namespaces the
 * restored process lives in, with root inside mapped to the caller's user
 * and group, and forks their PID 1.  restart could create them as it
 * starts the stub, but Go does that with a fork that copies restart's page
 * tables and waits for restart to write the maps (3-11 ms here, against
 * about 0.5 ms for starting the stub without namespaces).  This process
 * stays behind, forwarding signals to PID 1 and exiting as it does; PID 1
 * dies with it (PR_SET_PDEATHSIG), and everything in the namespace with
 * PID 1.  It returns in PID 1. */
static void ck_enter_namespaces(void)
{
	unsigned long uid = (unsigned long)ck_sys(SYS_getuid, 0, 0, 0, 0, 0, 0);
	unsigned long gid = (unsigned long)ck_sys(SYS_getgid, 0, 0, 0, 0, 0, 0);
	struct ck_clone_args ca;
	int armed[2];
	char c = 0;
	long rc;

	rc = ck_sys(SYS_unshare, CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID, 0, 0, 0, 0, 0);
	if (rc != 0)
		ck_fail("creating user, PID and mount namespaces for the restored process "
			"(user namespaces may be disabled: see /proc/sys/user/max_user_namespaces)",
			rc);
	ck_write_file("/proc/self/setgroups", "deny");
	ck_write_id_map("/proc/self/uid_map", uid);
	ck_write_id_map("/proc/self/gid_map", gid);
	/* PID 1 writes to armed once it dies with this process; if this one
	 * died before, the write fails (no reader) and PID 1 exits. */
	rc = ck_sys(SYS_pipe2, armed, O_CLOEXEC, 0, 0, 0, 0);
	if (rc != 0)
		ck_fail("making a pipe", rc);
	memset(&ca, 0, sizeof(ca));
	ca.exit_signal = SIGCHLD;
	rc = ck_sys(SYS_clone3, &ca, sizeof(ca), 0, 0, 0, 0);
	if (rc < 0)
		ck_fail("creating the PID namespace's init", rc);
	if (rc == 0) {
		ck_sys(SYS_close, armed[0], 0, 0, 0, 0, 0);
		ck_sys(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0, 0);
		if (ck_sys(SYS_write, armed[1], &c, 1, 0, 0, 0) != 1)
			ck_sys(SYS_exit_group, 1, 0, 0, 0, 0, 0);
		ck_sys(SYS_close, armed[1], 0, 0, 0, 0, 0);
		return;
	}
	ck_sys(SYS_close, armed[1], 0, 0, 0, 0, 0);
	while (ck_sys(SYS_read, armed[0], &c, 1, 0, 0, 0) == -EINTR)
		;
	ck_relay((int32_t)rc);
}

/* ck_init runs as PID 1 of the new PID namespace.  It mounts a /proc that
 * shows this namespace, forks the process-to-be with its original PID
 * (clone3 set_tid; PID 1 must exist first), and then only forwards signals
 * to it and exits with its status.  It returns in the child. */
static void ck_init(const struct ck_restore_args *a)
{
	uint64_t pid = (uint64_t)a->pid;
	struct ck_clone_args ca;
	long rc;

	rc = ck_sys(SYS_mount, 0, "/", 0, MS_REC | MS_PRIVATE, 0, 0);
	if (rc != 0)
		ck_fail("making the mount namespace private", rc);
	rc = ck_sys(SYS_mount, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, 0, 0);
	if (rc != 0)
		ck_fail("mounting /proc for the new PID namespace", rc);
	memset(&ca, 0, sizeof(ca));
	ca.exit_signal = SIGCHLD;
	ca.set_tid = (uint64_t)&pid;
	ca.set_tid_size = 1;
	rc = ck_sys(SYS_clone3, &ca, sizeof(ca), 0, 0, 0, 0);
	if (rc == 0)
		return;
	if (rc < 0)
		ck_fail("creating the process with its original PID", rc);
	ck_relay((int32_t)rc);
}

/* ck_relay forwards every signal this process gets to its child pid, waits
 * for it and exits as it did: with its code, or 128 + the signal that
 * killed it. */
static void ck_relay(int32_t pid)
{
	struct ck_sigaction fwd;
	uint64_t none = 0;
	int status = 0;
	long rc;

	ck_leader_pid = pid;
	/* Hold nothing open: a pipe's write end here would keep its reader
	 * from ever seeing end of file. */
	ck_sys(SYS_close_range, 0, ~0U, 0, 0, 0, 0);
	fwd.handler = (uint64_t)ck_forward;
	fwd.flags = SA_RESTORER;
	fwd.restorer = (uint64_t)ck_sigreturn;
	fwd.mask = 0;
	for (int sig = 1; sig <= 64; sig++)
		if (sig != 9 && sig != 19 && sig != SIGCHLD)
			ck_sys(SYS_rt_sigaction, sig, &fwd, 0, 8, 0, 0);
	ck_sys(SYS_rt_sigprocmask, 2 /* SIG_SETMASK */, &none, 0, 8, 0, 0);
	for (;;) {
		rc = ck_sys(SYS_wait4, -1, &status, WALL, 0, 0, 0);
		if (rc == -EINTR)
			continue;
		if (rc < 0)
			ck_sys(SYS_exit_group, 1, 0, 0, 0, 0, 0);
		if (rc == pid)
			break;
	}
	ck_sys(SYS_exit_group, (status & 0x7f) ? 128 + (status & 0x7f) : (status >> 8) & 0xff, 0, 0, 0, 0, 0);
	__builtin_unreachable();
}

/* The front end opened every descriptor above all the numbers they take. */
/* The front end made new epoll instances; register what the old ones
 * watched.  A target that came back as /dev/null cannot be watched: such
 * failures are left as they are (restart warned about the target). */
static void ck_restore_epoll(const struct ck_restore_args *a)
{
	const struct ck_restore_epoll *e = (const struct ck_restore_epoll *)((const char *)a + a->epoll_off);

	for (uint64_t i = 0; i < a->nepoll; i++) {
		struct {
			uint32_t events;
			uint64_t data;
		} __attribute__((packed)) ev = {e[i].events, e[i].data}; /* struct epoll_event */
		ck_sys(SYS_epoll_ctl, e[i].epfd, 1 /* EPOLL_CTL_ADD */, e[i].tfd, &ev, 0, 0);
	}
}

static void ck_restore_files(const struct ck_restore_args *a)
{
	const struct ck_restore_fd *fds = (const struct ck_restore_fd *)((const char *)a + a->fds_off);
	uint32_t lowest = a->image_fd;

	for (uint64_t i = 0; i < a->nfds; i++) {
		long rc = ck_sys(SYS_dup3, fds[i].from, fds[i].to, fds[i].cloexec ? O_CLOEXEC : 0, 0, 0, 0);
		if (rc != fds[i].to)
			ck_fail("moving a descriptor into place", rc);
		if ((uint32_t)fds[i].from < lowest)
			lowest = (uint32_t)fds[i].from;
	}
	ck_restore_epoll(a);
	/* Everything from the lowest helper up is ours, not the program's:
	 * the passed originals, the image and the stub's own file. */
	ck_sys(SYS_close_range, lowest, ~0U, 0, 0, 0, 0);
}

/* POSIX timers come back with their IDs, which the program holds
 * (PR_TIMER_CREATE_RESTORE_IDS: timer_create takes the ID it is given). */
static void ck_restore_posix_timers(const struct ck_restore_args *a)
{
	const struct ck_timer *t = (const struct ck_timer *)((const char *)a + a->timers_off);
	long rc;

	if (a->ntimers == 0)
		return;
	rc = ck_sys(SYS_prctl, 77 /* PR_TIMER_CREATE_RESTORE_IDS */, 1, 0, 0, 0, 0);
	if (rc != 0)
		ck_fail("choosing POSIX timer IDs (PR_TIMER_CREATE_RESTORE_IDS)", rc);
	for (uint64_t i = 0; i < a->ntimers; i++) {
		struct {
			uint64_t value;
			int32_t signo, notify, tid, pad[11];
		} sev; /* struct sigevent */
		int32_t id = t[i].id;

		memset(&sev, 0, sizeof(sev));
		sev.value = t[i].value;
		sev.signo = t[i].signo;
		sev.notify = t[i].notify;
		sev.tid = t[i].tid;
		rc = ck_sys(SYS_timer_create, t[i].clock, &sev, &id, 0, 0, 0);
		if (rc != 0 || id != t[i].id)
			ck_fail("recreating a POSIX timer", rc ? rc : id);
		struct {
			int64_t interval_sec, interval_nsec, value_sec, value_nsec;
		} its = {t[i].interval_sec, t[i].interval_nsec, t[i].value_sec, t[i].value_nsec};
		if (its.value_sec == 0 && its.value_nsec == 0 && (its.interval_sec != 0 || its.interval_nsec != 0))
			its.value_nsec = 1; /* expired, its signal pending: see ck_restore_timers */
		if (its.value_sec != 0 || its.value_nsec != 0) {
			rc = ck_sys(SYS_timer_settime, id, 0, &its, 0, 0, 0);
			if (rc != 0)
				ck_fail("arming a POSIX timer", rc);
		}
	}
	ck_sys(SYS_prctl, 77, 0, 0, 0, 0, 0);
}

/* Last before the jump: the timers run from here on. */
static void ck_restore_timers(const struct ck_restore_args *a)
{
	for (int which = 0; which < 3; which++) {
		struct ck_itimer t = a->itimer[which];
		long rc;
		/* A periodic timer that had just expired reads 0 left: the
		 * kernel re-arms it only when its signal, pending at the
		 * snapshot, is taken, and pending signals are not restored.
		 * Fire it at once instead, and it goes on. */
		if (t.value_sec == 0 && t.value_usec == 0 && (t.interval_sec != 0 || t.interval_usec != 0))
			t.value_usec = 1;
		if (t.value_sec == 0 && t.value_usec == 0)
			continue;
		rc = ck_sys(SYS_setitimer, which, &t, 0, 0, 0, 0);
		if (rc != 0)
			ck_fail("restoring an interval timer", rc);
	}
}

/* ---- 7: hand over -------------------------------------------------------- */

static void ck_finish(const struct ck_restore_args *a)
{
	const struct ck_restore_thread *threads =
		(const struct ck_restore_thread *)((const char *)a + a->threads_off);
	struct ck_restore_thread t;
	long rc, tid;

	memset(&t, 0, sizeof(t));
	for (uint64_t i = 0; i < a->nthreads; i++)
		if (threads[i].tid == a->pid)
			t = threads[i];
	ck_restore_thread(&t);
	tid = ck_sys(SYS_set_tid_address, t.clear_child_tid, 0, 0, 0, 0, 0);
	/* glibc caches the thread's TID at its clear_child_tid address
	 * (struct pthread.tid); with the original PID it is unchanged. */
	if (t.clear_child_tid != 0)
		*(volatile int32_t *)t.clear_child_tid = (int32_t)tid;
	if (a->restore_info != 0) {
		struct ck_restore_info *info = (struct ck_restore_info *)a->restore_info;
		info->stub_start = (uint64_t)__ck_stub_start;
		info->stub_len = (uint64_t)(__ck_stub_end - __ck_stub_start);
		info->stacks_start = a->nthreads > 1 ? a->stacks_addr : 0;
		info->stacks_len = a->nthreads > 1 ? a->stacks_len : 0;
		info->pid = (int32_t)ck_sys(SYS_getpid, 0, 0, 0, 0, 0, 0);
		info->nthreads = (uint32_t)a->nthreads;
		info->resumed = 0;
		info->generation++;
	}
	ck_restore_files(a);
	ck_restore_posix_timers(a);
	ck_restore_timers(a);
	ck_sys(SYS_munmap, a->args_addr, a->args_len, 0, 0, 0, 0);
	rc = ck_sys(SYS_arch_prctl, ARCH_SET_FS, t.fs_base, 0, 0, 0, 0);
	if (rc != 0)
		ck_fail("setting the fs base", rc);
	__atomic_store_n(&ck_go, 1, __ATOMIC_SEQ_CST);
	ck_futex_wake(&ck_go);
	ck_resume(&t);
}

void ck_main_moved(struct ck_restore_args *a)
{
	if (a->pid_ns_init) {
		ck_enter_namespaces();
		ck_init(a);
	}
	ck_park_vdso(a);
	ck_unmap_others(a);
	ck_restore_memory(a);
	ck_restore_vdso(a);
	ck_restore_mm(a);
	ck_restore_signals(a);
	ck_start_threads(a);
	ck_finish(a);
}
