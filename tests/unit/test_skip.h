/* test_skip.h - the one rule for unit tests that cannot run here (not root, no loop
 * devices, a cgroup controller missing): they skip, except under CI=true, where a skip
 * is a failure whatever the user (the suite must not pass by skipping what it checks).
 * Include after <cmocka.h>. */
#ifndef CELLS_TEST_SKIP_H
#define CELLS_TEST_SKIP_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static inline bool test_under_ci(void)
{
	const char *ci = getenv("CI");
	return ci && !strcmp(ci, "true");
}

#define SKIP_OR_FAIL(why)                                                                          \
	do {                                                                                       \
		if (test_under_ci())                                                               \
			fail_msg("would skip under CI=true: %s", why);                             \
		skip();                                                                            \
	} while (0)

#endif
