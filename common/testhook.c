/* testhook.c - the test-only failure injection and crash points (testhook.h). Compiled
 * only in a build configured with -DCELLS_TEST_HOOKS=ON; a release build has none of it. */
#include "testhook.h"
#include "log.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef CELLS_TEST_HOOKS
static struct {
	char fail_op[32], fail_when[128], crash_at[64], pause_at[64], pause_file[256];
	int fail_errno;
	unsigned long calls;
} th;

static int errno_parse(const char *s)
{
	static const struct {
		const char *name;
		int code;
	} names[] = {{"EPERM", EPERM},	 {"EIO", EIO},	   {"ENOSPC", ENOSPC}, {"ENOMEM", ENOMEM},
		     {"EACCES", EACCES}, {"EBUSY", EBUSY}, {"EINVAL", EINVAL}, {"ENOENT", ENOENT}};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (!strcmp(s, names[i].name))
			return names[i].code;
	char *end;
	long v = strtol(s, &end, 10);
	return *s && !*end && v > 0 && v < 4096 ? (int)v : -1;
}

int testhook_option(const char *name, const char *value, cells_err_t *err)
{
	if (!strcmp(name, "test-pause-at")) {
		const char *c = strchr(value, ':');
		if (!c || c == value || (size_t)(c - value) >= sizeof th.pause_at || c[1] != '/' ||
		    strlen(c + 1) >= sizeof th.pause_file)
			return cells_err_set(err, EINVAL, "--test-pause-at: POINT:/ABSOLUTE/FILE");
		snprintf(th.pause_at, sizeof th.pause_at, "%.*s", (int)(c - value), value);
		snprintf(th.pause_file, sizeof th.pause_file, "%s", c + 1);
		return 0;
	}
	if (!strcmp(name, "test-crash-at")) {
		if (!*value || strlen(value) >= sizeof th.crash_at)
			return cells_err_set(err, EINVAL, "--test-crash-at: a crash point name");
		snprintf(th.crash_at, sizeof th.crash_at, "%s", value);
		return 0;
	}
	if (strcmp(name, "test-fail"))
		return cells_err_set(err, EINVAL, "unknown option --%s", name);
	const char *a = strchr(value, ':'), *b = a ? strchr(a + 1, ':') : NULL;
	char en[32];
	if (!a || !b || a == value || (size_t)(a - value) >= sizeof th.fail_op ||
	    (size_t)(b - a - 1) >= sizeof en || !b[1] || strlen(b + 1) >= sizeof th.fail_when)
		return cells_err_set(err, EINVAL, "--test-fail: OP:ERRNO:WHEN");
	snprintf(en, sizeof en, "%.*s", (int)(b - a - 1), a + 1);
	if ((th.fail_errno = errno_parse(en)) < 0)
		return cells_err_set(err, EINVAL, "--test-fail: unknown errno '%s'", en);
	snprintf(th.fail_op, sizeof th.fail_op, "%.*s", (int)(a - value), value);
	snprintf(th.fail_when, sizeof th.fail_when, "%s", b + 1);
	return 0;
}

int testhook_fail(const char *op, const char *what, cells_err_t *err)
{
	if (!th.fail_op[0] || strcmp(op, th.fail_op))
		return 0;
	th.calls++;
	char *end;
	unsigned long n = strtoul(th.fail_when, &end, 10);
	bool hit = *end ? !strcmp(what, th.fail_when) : n == th.calls;
	if (!hit)
		return 0;
	log_warn("test failure injected: %s %s (call %lu): %s", op, what, th.calls,
		 strerror(th.fail_errno));
	return cells_err_sys(err, th.fail_errno, "%s %s (injected by --test-fail)", op, what);
}

void testhook_point(const char *where)
{
	if (th.crash_at[0] && !strcmp(th.crash_at, where)) {
		log_warn("test crash point %s: killing %s", where, program_invocation_short_name);
		raise(SIGKILL);
	}
	if (th.pause_at[0] && !strcmp(th.pause_at, where)) {
		th.pause_at[0] = 0; /* once */
		log_warn("test pause point %s: waiting for %s", where, th.pause_file);
		for (int i = 0; i < 6000 && access(th.pause_file, F_OK) < 0; i++)
			usleep(10000);
		log_warn("test pause point %s: going on", where);
	}
}
#else
/* ISO C wants a translation unit to declare something */
typedef int testhook_unused;
#endif
