/* bench_devns_load.c - the load of tests/bench/bench_devns.sh, built there as a static
 * binary (cc -static) so that it runs inside a VP image and on the host alike.
 *
 *   bench_devns_load hold MB    map MB of anonymous memory and fill it with content that
 *                               is the same in every process (page i holds a pattern of
 *                               i: identical across processes, distinct within one, so
 *                               only merging between processes can share it); print
 *                               "held MB" and sleep until SIGTERM/SIGINT. Nothing here
 *                               asks for merging: only an inherited PR_SET_MEMORY_MERGE
 *                               (cellsd --ksm on) makes the pages mergeable.
 *   bench_devns_load spin N     run a fixed CPU-bound loop of N iterations and print
 *                               its duration in nanoseconds (CLOCK_MONOTONIC) and the
 *                               loop's result (so it cannot be optimised away). */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static int parse(const char *s, unsigned long long max, unsigned long long *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || !*s || *s == '-' || v == 0 || v > max)
		return -1;
	*out = v;
	return 0;
}

static int hold(unsigned long long mb)
{
	size_t len = (size_t)mb << 20;
	long pg = sysconf(_SC_PAGESIZE);
	uint64_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		fprintf(stderr, "bench_devns_load: mmap %llu MB: %s\n", mb, strerror(errno));
		return 1;
	}
	size_t words = (size_t)pg / sizeof *p;
	for (size_t page = 0; page < len / (size_t)pg; page++)
		for (size_t w = 0; w < words; w++)
			p[page * words + w] = (page + 1) * 0x9e3779b97f4a7c15ull ^ w;
	struct sigaction sa = {.sa_handler = on_term};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	printf("held %llu\n", mb);
	fflush(stdout);
	while (!stop)
		pause();
	munmap(p, len);
	return 0;
}

static int spin(unsigned long long n)
{
	struct timespec a, b;
	uint64_t x = 88172645463325252ull;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (unsigned long long i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	long long ns = (long long)(b.tv_sec - a.tv_sec) * 1000000000ll + (b.tv_nsec - a.tv_nsec);
	printf("%lld %llx\n", ns, (unsigned long long)x);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned long long v;
	if (argc == 3 && !strcmp(argv[1], "hold") && parse(argv[2], 4096, &v) == 0)
		return hold(v);
	if (argc == 3 && !strcmp(argv[1], "spin") && parse(argv[2], 1ull << 40, &v) == 0)
		return spin(v);
	fprintf(stderr, "usage: bench_devns_load hold MB | spin ITERATIONS\n");
	return 2;
}
