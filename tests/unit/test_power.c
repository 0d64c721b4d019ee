/* test_power.c - the power rule (only the foreground VP's requests reach the backend),
 * the recording backend, refusal audit aggregation, and the real /dev/cells/power path:
 * a pty slave bind-mounted into a stand-in VP's mount namespace, spoken to by a process
 * inside it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "devnode.h"
#include "power.h"
#include "util.h"

static char audit_log[4096];
static void rec_audit(void *ctx, const char *vp, const char *event, const char *outcome,
		      json_object *details)
{
	size_t l = strlen(audit_log);
	snprintf(audit_log + l, sizeof audit_log - l, "%s %s %s %s\n", vp, event, outcome,
		 json_object_to_json_string_ext(details, JSON_C_TO_STRING_PLAIN));
}

static char tmpdir[64];

static char *read_log(void)
{
	char p[128];
	snprintf(p, sizeof p, "%s/power.log", tmpdir);
	uint8_t *b = NULL;
	size_t n;
	if (cells_read_file(p, 65536, &b, &n, NULL) < 0)
		return strdup("");
	return (char *)b;
}

static int setup(void **state)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/cells-power.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}
static int teardown(void **state)
{
	cells_rm_rf(tmpdir, NULL);
	return 0;
}

static void init_power(struct power *p)
{
	struct power_backend be;
	char log[128];
	snprintf(log, sizeof log, "%s/power.log", tmpdir);
	cells_err_t err;
	assert_int_equal(power_backend_init(&be, "record", "/sys/power", log, &err), 0);
	power_init(p, &be);
	p->audit = rec_audit;
	audit_log[0] = 0;
}

static bool deny_personal(void *ctx, const char *vp)
{
	(void)ctx;
	return strcmp(vp, "personal") != 0;
}

static void test_power_rule(void **state)
{
	struct power p;
	init_power(&p);
	cells_err_t err;
	char r[160];
	assert_int_equal(power_set_foreground(&p, "personal", &err), 0);
	/* BVP: refused and audited */
	assert_int_equal(power_request(&p, "work", "suspend", r, sizeof r), -1);
	assert_string_equal(r, "refused: not the foreground VP");
	assert_non_null(strstr(audit_log, "work power.refused refused {\"request\":\"suspend\""));
	assert_int_equal(power_request(&p, "work", "wake_lock sync", r, sizeof r), -1);
	/* the second refusal within the minute is aggregated, not a new record */
	assert_null(strstr(audit_log, "wake_lock"));
	cleanup_free char *l0 = read_log();
	assert_null(strstr(l0, "suspend"));
	/* FVP: reaches the backend */
	assert_int_equal(power_request(&p, "personal", "suspend", r, sizeof r), 0);
	assert_string_equal(r, "ok");
	assert_int_equal(power_request(&p, "personal", "wake_lock music", r, sizeof r), 0);
	cleanup_free char *l1 = read_log();
	assert_non_null(strstr(l1, " suspend\n"));
	assert_non_null(strstr(l1, " wake_lock cells-personal-music\n"));
	/* the switch: personal's lock no longer holds the device awake; roles flip */
	assert_int_equal(power_set_foreground(&p, "work", &err), 0);
	cleanup_free char *l2 = read_log();
	assert_non_null(strstr(l2, " wake_unlock cells-personal-music\n"));
	assert_int_equal(power_request(&p, "personal", "suspend", r, sizeof r), -1);
	assert_int_equal(power_request(&p, "work", "suspend", r, sizeof r), 0);
	/* back to the front: the lock is taken again */
	assert_int_equal(power_set_foreground(&p, "personal", &err), 0);
	cleanup_free char *l3 = read_log();
	assert_non_null(strstr(l3 + strlen(l2), " wake_lock cells-personal-music\n"));
	/* bad requests */
	assert_int_equal(power_request(&p, "personal", "wake_lock ../x", r, sizeof r), -1);
	assert_int_equal(power_request(&p, "personal", "reboot", r, sizeof r), -1);
	assert_non_null(strstr(r, "unknown request"));
	assert_int_equal(power_request(&p, "personal", "wake_unlock nothere", r, sizeof r), -1);
	assert_int_equal(power_request(&p, "personal", "wake_unlock music", r, sizeof r), 0);
	/* a VP the policy gives no power access: refused also in front; its own lock can
	 * still be released */
	assert_int_equal(power_request(&p, "personal", "wake_lock keep", r, sizeof r), 0);
	p.vp_allowed = deny_personal;
	assert_int_equal(power_request(&p, "personal", "suspend", r, sizeof r), -1);
	assert_string_equal(r, "refused: no power access for this VP (policy)");
	assert_int_equal(power_request(&p, "personal", "wake_lock more", r, sizeof r), -1);
	assert_int_equal(power_request(&p, "personal", "wake_unlock keep", r, sizeof r), 0);
	assert_int_equal(power_request(&p, "work", "wake_lock w", r, sizeof r), -1);
	assert_string_equal(r, "refused: not the foreground VP");
	p.vp_allowed = NULL;
	/* auto never picks sysfs on a host without wake locks */
	struct power_backend be;
	assert_int_equal(power_backend_init(&be, "auto", tmpdir, "/dev/null", &err), 0);
	assert_int_equal(be.kind, POWER_BACKEND_RECORD);
}

static void test_power_pty_in_vp(void **state)
{
	if (geteuid() != 0) {
		if (getenv("CI") && !strcmp(getenv("CI"), "true"))
			fail_msg("needs root");
		skip();
	}
	struct power p;
	init_power(&p);
	cells_err_t err;
	assert_int_equal(power_set_foreground(&p, "personal", &err), 0);
	int go[2], res[2];
	assert_int_equal(pipe2(go, O_CLOEXEC), 0);
	assert_int_equal(pipe2(res, O_CLOEXEC), 0);
	pid_t c = fork();
	if (c == 0) {
		/* a stand-in VP: own mount namespace with a tmpfs /dev and /dev/cells */
		if (unshare(CLONE_NEWNS) < 0 ||
		    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
		    mount("tmpfs", "/dev", "tmpfs", 0, "mode=0755,size=64k") < 0 ||
		    mkdir("/dev/cells", 0755) < 0)
			_exit(3);
		char ch = 0;
		if (write(res[1], &ch, 1) != 1 || read(go[0], &ch, 1) != 1)
			_exit(4);
		int fd = open("/dev/cells/power", O_RDWR | O_NOCTTY);
		if (fd < 0)
			_exit(5);
		const char *reqs = "suspend\nwake_lock x\n";
		if (write(fd, reqs, strlen(reqs)) < 0)
			_exit(6);
		char buf[256] = {0};
		size_t n = 0;
		int lines = 0;
		while (n < sizeof buf - 1 && lines < 2) {
			ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
			if (r <= 0)
				_exit(7);
			for (ssize_t i = 0; i < r; i++)
				lines += buf[n + (size_t)i] == '\n';
			n += (size_t)r;
		}
		if (write(res[1], buf, n) < 0)
			_exit(8);
		_exit(0);
	}
	char ch;
	assert_int_equal(read(res[0], &ch, 1), 1);
	const char *slave;
	unsigned maj, min;
	assert_int_equal(power_vp_open(&p, "work", &slave, &maj, &min, &err), 0);
	assert_int_equal(maj, 136);
	if (devnode_bind_in_ns(c, slave, "/dev/cells/power", &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(write(go[1], "g", 1), 1);
	struct pollfd pf = {.fd = power_vp_master(&p, "work"), .events = POLLIN};
	for (int i = 0; i < 50 && p.vps[0].refused < 2; i++)
		if (poll(&pf, 1, 100) > 0)
			power_vp_input(&p, "work");
	char buf[256] = {0};
	assert_true(read(res[0], buf, sizeof buf - 1) > 0);
	int st;
	waitpid(c, &st, 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_string_equal(buf,
			    "refused: not the foreground VP\nrefused: not the foreground VP\n");
	power_vp_close(&p, "work");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_power_rule),
	    cmocka_unit_test(test_power_pty_in_vp),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
