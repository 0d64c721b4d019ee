/* test_knsrun.c - knsrun on the real kernel: fn runs in the target's mount namespace (it
 * sees a mount the caller does not), with the target's root as / when asked, and its
 * failure (errno and reason) reaches the caller; the caller's namespace is unchanged.
 * Root only (skipped otherwise; under CI=true a skip is a failure). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_skip.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "knsrun.h"

static char dir[64] = "/tmp/knsrun-XXXXXX";
static pid_t target;

/* The target: its own mount namespace with a tmpfs on dir holding "marker". */
static int setup(void **state)
{
	(void)state;
	if (geteuid() != 0)
		return 0;
	if (!mkdtemp(dir))
		return -1;
	int p[2];
	if (pipe(p) < 0)
		return -1;
	target = fork();
	if (target == 0) {
		char m[128];
		snprintf(m, sizeof m, "%s/marker", dir);
		if (unshare(CLONE_NEWNS) < 0 ||
		    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
		    mount("tmpfs", dir, "tmpfs", 0, "size=64k") < 0 ||
		    close(open(m, O_CREAT | O_WRONLY, 0600)) < 0)
			_exit(1);
		if (write(p[1], "r", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	close(p[1]);
	char c;
	int ok = read(p[0], &c, 1) == 1;
	close(p[0]);
	return ok ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	if (target > 0) {
		kill(target, SIGKILL);
		waitpid(target, NULL, 0);
	}
	rmdir(dir);
	return 0;
}

static int sees_marker(struct knsrun_ctx *c, void *arg)
{
	char m[128];
	snprintf(m, sizeof m, "%s/marker", (const char *)arg);
	if (access(m, F_OK) < 0)
		knsrun_fail(c, errno, "access", m);
	return 0;
}

static int refuses(struct knsrun_ctx *c, void *arg)
{
	(void)arg;
	knsrun_fail(c, EACCES, "refused", "/x");
}

static void test_runs_inside(void **state)
{
	(void)state;
	if (geteuid() != 0)
		SKIP_OR_FAIL("knsrun needs root (setns)");
	cells_err_t err = {0};
	int mntfd = -1, rootfd = -1;
	assert_int_equal(knsrun_open(target, &mntfd, &rootfd, &err), 0);
	/* inside the target's namespace the marker exists; here it does not */
	assert_int_equal(knsrun(mntfd, -1, sees_marker, dir, &err), 0);
	char m[128];
	snprintf(m, sizeof m, "%s/marker", dir);
	assert_int_equal(access(m, F_OK), -1);
	assert_int_equal(errno, ENOENT);
	/* with the target's root as / too */
	assert_int_equal(knsrun(mntfd, rootfd, sees_marker, dir, &err), 0);
	/* a failure comes back with its errno and reason */
	assert_int_equal(knsrun(mntfd, rootfd, refuses, NULL, &err), -1);
	assert_int_equal(err.code, EACCES);
	assert_non_null(strstr(err.msg, "refused /x"));
	/* the caller's namespace is still its own: the marker is still absent here */
	assert_int_equal(access(m, F_OK), -1);
	close(mntfd);
	close(rootfd);
}

static void test_open_missing(void **state)
{
	(void)state;
	cells_err_t err = {0};
	int mntfd = -1, rootfd = -1;
	assert_int_equal(knsrun_open(0x3ffffff0, &mntfd, &rootfd, &err), -1);
	assert_int_equal(err.code, ENOENT);
	assert_int_equal(mntfd, -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_runs_inside),
	    cmocka_unit_test(test_open_missing),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
