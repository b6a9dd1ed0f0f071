/* trivial: a C program that does nothing, for measuring what libckpt.so
 * costs a program that never checkpoints (tools/bench).  With "rss" it
 * waits 300 ms (the library's Go runtime is up by then) and prints its
 * resident set in KiB. */
#include <stdio.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv)
{
	char line[256];
	FILE *f;

	if (argc < 2 || strcmp(argv[1], "rss") != 0)
		return 0;
	nanosleep(&(struct timespec){0, 300 * 1000 * 1000}, NULL);
	f = fopen("/proc/self/status", "r");
	if (f == NULL)
		return 1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "VmRSS:", 6) == 0)
			fputs(line + 6, stdout);
	fclose(f);
	return 0;
}
