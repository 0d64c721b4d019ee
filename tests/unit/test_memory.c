/* test_memory.c - KSM (prctl inheritance, the ksmd run/stop policy on a copy of the
 * sysfs directory) and the low-memory order: under a real memory cgroup limit created
 * for this test, a background VP's process dies before the foreground VP's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "ksm.h"
#include "memory.h"
#include "oom.h"
#include "util.h"

static bool ci(void)
{
	return getenv("CI") && !strcmp(getenv("CI"), "true");
}

static int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, s, strlen(s));
	close(fd);
	return n == (ssize_t)strlen(s) ? 0 : -1;
}

static void test_ksm_prctl_inherited(void **state)
{
	if (!ksm_prctl_supported()) {
		if (ci())
			fail_msg("kernel without PR_SET_MEMORY_MERGE");
		skip();
	}
	int pfd[2];
	assert_int_equal(pipe(pfd), 0);
	pid_t c = fork();
	if (c == 0) {
		/* as cellsd does: mark, then a child execs (the VP init) */
		if (ksm_merge_self(true, NULL) < 0)
			_exit(2);
		dup2(pfd[1], 1);
		execl("/bin/cat", "cat", "/proc/self/ksm_stat", (char *)NULL);
		_exit(3);
	}
	close(pfd[1]);
	char buf[1024] = {0};
	ssize_t n = 0, r;
	while ((r = read(pfd[0], buf + n, sizeof buf - 1 - (size_t)n)) > 0)
		n += r;
	close(pfd[0]);
	int st;
	waitpid(c, &st, 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_non_null(strstr(buf, "ksm_merge_any: yes"));
}

static void test_ksmd_policy(void **state)
{
	char dir[] = "/tmp/cells-ksm.XXXXXX";
	assert_non_null(mkdtemp(dir));
	char p[300];
	snprintf(p, sizeof p, "%s/run", dir);
	write_str(p, "0");
	snprintf(p, sizeof p, "%s/pages_sharing", dir);
	write_str(p, "0");
	struct memory_cfg cfg;
	memory_cfg_defaults(&cfg);
	cfg.ksm = true;
	snprintf(cfg.ksm_dir, sizeof cfg.ksm_dir, "%s", dir);
	cfg.ksm_threshold = 100;
	cfg.ksm_min_run_ms = 1000;
	struct memory m;
	memory_init(&m, &cfg);
	cells_err_t err;
	uint64_t run;
	assert_int_equal(memory_ksm_boot(&m, 0, &err), 0);
	assert_int_equal(ksm_get(dir, "run", &run, &err), 0);
	assert_int_equal(run, 1);
	/* merging fast: keeps running */
	snprintf(p, sizeof p, "%s/pages_sharing", dir);
	write_str(p, "5000");
	assert_int_equal(memory_ksm_sample(&m, 2000, &err), 1);
	assert_int_equal(m.rate, 2500);
	/* slow merging, but within the minimum run time of a new boot: keeps running */
	assert_int_equal(memory_ksm_boot(&m, 2500, &err), 0);
	write_str(p, "5010");
	assert_int_equal(memory_ksm_sample(&m, 3000, &err), 1);
	/* slow merging after the minimum run time: stops */
	write_str(p, "5020");
	assert_int_equal(memory_ksm_sample(&m, 4000, &err), 0);
	assert_int_equal(ksm_get(dir, "run", &run, &err), 0);
	assert_int_equal(run, 0);
	assert_false(m.ksmd_on);
	/* KSM off: ksmd never touched */
	cfg.ksm = false;
	memory_init(&m, &cfg);
	assert_int_equal(memory_ksm_boot(&m, 0, &err), 0);
	assert_int_equal(ksm_get(dir, "run", &run, &err), 0);
	assert_int_equal(run, 0);
	cells_rm_rf(dir, NULL);
}

/* A stand-in VP: an init (pid 1 of a new pid namespace) whose child allocates memory in
 * steps when told to. The init reports how the child ended. */
struct fake_vp {
	pid_t init;	/* host pid of the init */
	int go, report; /* pipes */
};

static void fake_init(int go, int report, size_t mb)
{
	pid_t app = fork();
	if (app == 0) {
		char c;
		if (read(go, &c, 1) != 1)
			_exit(4);
		for (size_t i = 0; i < mb; i++) {
			char *b = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (b == MAP_FAILED)
				_exit(5);
			memset(b, (int)i + 1, 1 << 20);
			usleep(20000);
		}
		sleep(2); /* hold it while the other one grows */
		_exit(0);
	}
	close(go);
	int st = 0;
	while (waitpid(app, &st, 0) < 0 && errno == EINTR)
		;
	if (write(report, &st, sizeof st) < 0)
		_exit(6);
	_exit(0);
}

static void fake_vp_start(struct fake_vp *v, const char *cg, size_t mb)
{
	int g[2], r[2], s[2];
	assert_int_equal(pipe(g), 0);
	assert_int_equal(pipe(r), 0);
	assert_int_equal(pipe(s), 0);
	pid_t c = fork();
	if (c == 0) {
		/* the intermediate: enter the memory cgroup, new pid ns, fork the init */
		char pid[32], p[300];
		snprintf(pid, sizeof pid, "%d", (int)getpid());
		snprintf(p, sizeof p, "%s/cgroup.procs", cg);
		if (write_str(p, pid) < 0 || unshare(CLONE_NEWPID) < 0)
			_exit(7);
		pid_t init = fork();
		if (init == 0) {
			close(g[1]);
			close(r[0]);
			fake_init(g[0], r[1], mb);
		}
		if (write(s[1], &init, sizeof init) < 0)
			_exit(8);
		_exit(0);
	}
	close(g[0]);
	close(r[1]);
	close(s[1]);
	assert_int_equal(read(s[0], &v->init, sizeof v->init), sizeof v->init);
	close(s[0]);
	waitpid(c, NULL, 0);
	v->go = g[1];
	v->report = r[0];
	usleep(100000); /* the app exists */
}

/* The init's only child (the app). */
static pid_t app_of(pid_t init)
{
	char p[96], b[64] = {0};
	snprintf(p, sizeof p, "/proc/%d/task/%d/children", (int)init, (int)init);
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_true(read(fd, b, sizeof b - 1) > 0);
	close(fd);
	return (pid_t)atoi(b);
}

static void test_bvp_dies_first(void **state)
{
	char cg[256];
	snprintf(cg, sizeof cg, "/sys/fs/cgroup/memory/cells-ut-oom-%d", (int)getpid());
	if (geteuid() != 0 || mkdir(cg, 0755) < 0) {
		if (ci())
			fail_msg("needs root and the v1 memory cgroup");
		skip();
	}
	char p[300];
	snprintf(p, sizeof p, "%s/memory.limit_in_bytes", cg);
	assert_int_equal(write_str(p, "100M"), 0);
	snprintf(p, sizeof p, "%s/memory.swappiness", cg);
	write_str(p, "0");
	struct fake_vp fvp, bvp;
	fake_vp_start(&fvp, cg, 60);
	fake_vp_start(&bvp, cg, 60);
	struct memory_cfg cfg;
	memory_cfg_defaults(&cfg);
	struct memory m;
	memory_init(&m, &cfg);
	const char *names[] = {"personal", "work"};
	pid_t inits[] = {fvp.init, bvp.init};
	cells_err_t err;
	/* work in front first, then a switch to personal: the roles flip */
	if (memory_oom_apply(&m, "work", names, inits, 2, &err) < 0)
		fail_msg("%s", err.msg);
	int adj;
	assert_int_equal(oom_get_adj(bvp.init, &adj, &err), 0);
	assert_true(adj <= 0); /* -1000 with CAP_SYS_RESOURCE */
	int app_adj = -1;
	assert_int_equal(oom_get_adj(app_of(bvp.init), &app_adj, &err), 0);
	assert_int_equal(app_adj, 0); /* work in front */
	assert_int_equal(oom_get_adj(app_of(fvp.init), &app_adj, &err), 0);
	assert_int_equal(app_adj, 500);
	assert_int_equal(memory_oom_apply(&m, "personal", names, inits, 2, &err), 0);
	assert_int_equal(oom_get_adj(fvp.init, &adj, &err), 0);
	assert_true(adj <= 0);
	assert_int_equal(oom_get_adj(app_of(fvp.init), &app_adj, &err), 0);
	assert_int_equal(app_adj, 0); /* back from 500: the roles flipped */
	assert_int_equal(oom_get_adj(app_of(bvp.init), &app_adj, &err), 0);
	assert_int_equal(app_adj, 500);
	/* both grow together to 120 MB > 100 MB */
	assert_int_equal(write(fvp.go, "g", 1), 1);
	assert_int_equal(write(bvp.go, "g", 1), 1);
	int fst = -1, bst = -1;
	assert_int_equal(read(bvp.report, &bst, sizeof bst), sizeof bst);
	assert_int_equal(read(fvp.report, &fst, sizeof fst), sizeof fst);
	/* the background app was OOM-killed, the foreground app finished */
	assert_true(WIFSIGNALED(bst) && WTERMSIG(bst) == SIGKILL);
	assert_true(WIFEXITED(fst) && WEXITSTATUS(fst) == 0);
	close(fvp.go);
	close(bvp.go);
	close(fvp.report);
	close(bvp.report);
	for (int i = 0; i < 50 && rmdir(cg) < 0; i++)
		usleep(100000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ksm_prctl_inherited),
	    cmocka_unit_test(test_ksmd_policy),
	    cmocka_unit_test(test_bvp_dies_first),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
