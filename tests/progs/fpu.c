/* fpu: runs with a non-default rounding mode (upward) in both x87 and SSE,
 * and checks every tick that the mode is still set and that arithmetic
 * rounds upward.  The mode lives in the FPU state, which comes back through
 * the signal frame. */
#include <fenv.h>
#include "tests/progs/ticker.h"

static volatile double third_num = 1.0, third_den = 3.0;
static double up_third;

/* Not inlined: GCC moves an inline division across fesetround (GCC bug
 * 34678) even with -frounding-math. */
static __attribute__((noinline)) double third(void)
{
	double q = third_num / third_den;
	__asm__ volatile("" : "+x"(q));
	return q;
}

static int check(unsigned long tick)
{
	(void)tick;
	if (fegetround() != FE_UPWARD) {
		printf("rounding mode is %d, not FE_UPWARD\n", fegetround());
		return 1;
	}
	if (third() != up_third) {
		printf("1/3 did not round upward\n");
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	fesetround(FE_DOWNWARD);
	double down = third();
	fesetround(FE_UPWARD);
	up_third = third();
	if (!(up_third > down)) {
		printf("FAIL rounding modes have no effect\n");
		return 1;
	}
	tick_loop(tick_ms(argc, argv), check);
}
