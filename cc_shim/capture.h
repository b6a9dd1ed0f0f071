/* capture.h: the shim's internal interfaces (not shared with Go). */
#ifndef CKPT_CC_SHIM_CAPTURE_H_
#define CKPT_CC_SHIM_CAPTURE_H_

#include <stdint.h>

#include "cc_shim/shim.h"

/* struct linux_dirent64. */
struct ck_dirent {
	uint64_t ino;
	int64_t off;
	unsigned short reclen;
	unsigned char type;
	char name[];
};

/* ck_dirent_number is the entry's name as a number, or -1. */
int ck_dirent_number(const struct ck_dirent *d);

/* ck_capture_thread records the calling thread's state. */
void ck_capture_thread(struct ck_thread *t);

/* ck_capture_process records process-wide state: dispositions, brk,
 * interval timers, descriptors. */
void ck_capture_process(struct ck_state *st, int sig);

/* ck_log writes a constant message to stderr; async-signal-safe. */
void ck_log(const char *msg) __attribute__((visibility("hidden")));

/* The trigger signal (ctor.c). */
extern int ck_trigger;

#endif /* CKPT_CC_SHIM_CAPTURE_H_ */
