/* threads: 4 workers pass a token round-robin under one mutex and condition
 * variable; each adds to its own counter and to a shared total.  Every tick
 * the main thread checks, under the mutex, that the counters add up to the
 * total, that the workers made progress, and that every thread still has
 * the PID and TID it started with (glibc and the program cache them). */
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "tests/progs/ticker.h"

#define WORKERS 4

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static unsigned long counts[WORKERS], total, last_total;
static int turn;
static pid_t pid0, tids[WORKERS], main_tid;
static volatile int bad_id;

static void *worker(void *arg)
{
	int me = (int)(long)arg;

	tids[me] = (pid_t)syscall(SYS_gettid);
	for (;;) {
		pthread_mutex_lock(&mu);
		while (turn != me)
			pthread_cond_wait(&cv, &mu);
		counts[me]++;
		total++;
		turn = (turn + 1) % WORKERS;
		pthread_cond_broadcast(&cv);
		pthread_mutex_unlock(&mu);
		if (getpid() != pid0 || syscall(SYS_gettid) != tids[me] || pthread_self() == 0)
			bad_id = 1;
		usleep(100);
	}
	return NULL;
}

static int check(unsigned long tick)
{
	unsigned long sum = 0;
	int rc = 0;

	pthread_mutex_lock(&mu);
	for (int i = 0; i < WORKERS; i++)
		sum += counts[i];
	if (sum != total) {
		printf("counters add up to %lu, total is %lu\n", sum, total);
		rc = 1;
	}
	(void)tick;
	if (progress_window()) {
		if (total == last_total) {
			printf("the workers made no progress in 5 ticks\n");
			rc = 1;
		}
		last_total = total;
	}
	pthread_mutex_unlock(&mu);
	if (getpid() != pid0 || syscall(SYS_gettid) != main_tid || bad_id) {
		printf("a thread's PID or TID changed\n");
		rc = 1;
	}
	return rc;
}

int main(int argc, char **argv)
{
	pthread_t t;

	pid0 = getpid();
	main_tid = (pid_t)syscall(SYS_gettid);
	for (long i = 0; i < WORKERS; i++)
		pthread_create(&t, NULL, worker, (void *)i);
	tick_loop(tick_ms(argc, argv), check);
}
