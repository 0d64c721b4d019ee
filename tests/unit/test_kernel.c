/* test_kernel.c - libcells-kernel on the real kernel: the device cgroup (v1
 * devices.allow/deny and the v2 BPF device program, each alone), the seccomp filter,
 * the capability set, process identity by start time. Root only (skipped otherwise; under CI=true a
 * skip is a failure). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_skip.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kcgroup.h"
#include "ksec.h"
#include "kspawn.h"

static char node_dir[64];

/* In a child moved into cg: can it open the char device major:minor? Returns 0 when
 * it can, the errno otherwise. */
static int child_open(struct kcg *cg, unsigned ma, unsigned mi)
{
	char path[128];
	snprintf(path, sizeof path, "%s/n-%u-%u", node_dir, ma, mi);
	unlink(path);
	if (mknod(path, S_IFCHR | 0600, makedev(ma, mi)) < 0)
		return -1000 - errno;
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	if (pid == 0) {
		char b;
		close(p[1]);
		if (read(p[0], &b, 1) != 1)
			_exit(99);
		int fd = open(path, O_RDONLY);
		_exit(fd >= 0 ? 0 : errno);
	}
	close(p[0]);
	cells_err_t err;
	int rc = kcg_attach(cg, pid, true, &err);
	if (rc < 0)
		print_message("attach: %s\n", err.msg);
	assert_int_equal(rc, 0);
	assert_int_equal(write(p[1], "g", 1), 1);
	close(p[1]);
	int st;
	waitpid(pid, &st, 0);
	unlink(path);
	return WEXITSTATUS(st);
}

/* which: 1 = v1 devices only, 2 = v2 BPF program only */
static void device_control(int which)
{
	if (getuid() != 0) {
		SKIP_OR_FAIL("the device cgroup tests need root");
		return;
	}
	struct kcg cg;
	cells_err_t err;
	char name[64];
	snprintf(name, sizeof name, "cells-unit-%d-%d", (int)getpid(), which);
	assert_int_equal(kcg_init(&cg, name, &err), 0);
	if (which == 1) {
		if (!cg.v1_devices) {
			SKIP_OR_FAIL("no v1 devices controller");
			return;
		}
		cg.v2[0] = 0; /* v1 alone */
	} else {
		if (!cg.v2[0]) {
			SKIP_OR_FAIL("no cgroup v2 hierarchy");
			return;
		}
		cg.nv1 = 0; /* the BPF program alone */
		cg.v1_devices = false;
	}
	struct kcg_limits lim = {.pids = 64};
	int rc = kcg_create(&cg, &lim, &err);
	if (rc < 0)
		print_message("create: %s\n", err.msg);
	assert_int_equal(rc, 0);
	assert_int_equal(child_open(&cg, 1, 3), 0);	 /* null: allowed by default */
	assert_int_equal(child_open(&cg, 1, 11), EPERM); /* kmsg: denied by default */
	assert_int_equal(kcg_dev_set(&cg, 'c', 1, 11, true, &err), 0);
	assert_int_equal(child_open(&cg, 1, 11), 0);
	assert_int_equal(kcg_dev_set(&cg, 'c', 1, 11, false, &err), 0);
	assert_int_equal(child_open(&cg, 1, 11), EPERM);
	assert_int_equal(kcg_dev_set(&cg, 'c', 1, 3, false, &err), 0);
	assert_int_equal(child_open(&cg, 1, 3), EPERM); /* a default can be revoked */
	assert_int_equal(kcg_dev_set(&cg, 'c', 1, ~0u, true, &err), 0);
	assert_int_equal(child_open(&cg, 1, 11), 0); /* wildcard minor */
	assert_int_equal(kcg_dev_set(&cg, 'x', 1, 1, true, &err), -1);
	assert_int_equal(kcg_destroy(&cg, &err), 0);
	assert_false(kcg_exists(&cg));
}

static void test_devices_v1(void **state)
{
	device_control(1);
}

static void test_devices_v2_bpf(void **state)
{
	device_control(2);
}

static void test_bpf_build_limits(void **state)
{
	struct kcg_dev rules[3] = {{'c', 1, 3, true}, {'b', 8, ~0u, true}, {'c', ~0u, ~0u, false}};
	struct bpf_insn insns[64];
	/* 4 loads + rule blocks (3+2, 3+1, 3) + final 2 */
	int n = kcg_bpf_build(rules, 3, insns, 64);
	assert_int_equal(n, 4 + 5 + 4 + 3 + 2);
	assert_int_equal(insns[n - 1].code, BPF_JMP | BPF_EXIT);
	assert_int_equal(kcg_bpf_build(rules, 3, insns, 10), -1); /* too small: refused */
}

static void test_seccomp_filter(void **state)
{
	struct sock_fprog prog;
	cells_err_t err;
	assert_int_equal(ksec_filter_build(&prog, &err), 0);
	assert_true(prog.len > 20);
	pid_t pid = fork();
	if (pid == 0) {
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
		    prctl(PR_SET_SECCOMP, 2 /* SECCOMP_MODE_FILTER */, &prog, 0, 0) < 0)
			_exit(90);
		if (unshare(CLONE_NEWNET) == 0 || errno != EPERM)
			_exit(91);
		if (mknod("/tmp/cells-unit-never", S_IFCHR | 0600, makedev(1, 3)) == 0 ||
		    errno != EPERM)
			_exit(92);
		/* a FIFO is not a device node: allowed */
		char fifo[64];
		snprintf(fifo, sizeof fifo, "/tmp/cells-unit-fifo-%d", (int)getpid());
		if (mknod(fifo, S_IFIFO | 0600, 0) < 0)
			_exit(93);
		unlink(fifo);
		_exit(0);
	}
	int st;
	waitpid(pid, &st, 0);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	ksec_filter_free(&prog);
}

static void test_caps(void **state)
{
	uint64_t keep = ksec_caps_keep();
	const int never[] = {CAP_SYS_ADMIN,  CAP_MKNOD,	   CAP_SYS_MODULE, CAP_SYS_RAWIO,
			     CAP_SYS_PTRACE, CAP_SYS_TIME, CAP_SYS_BOOT,   CAP_NET_ADMIN};
	for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
		assert_false(keep & (1ull << never[i]));
	assert_true(keep & (1ull << CAP_CHOWN));
	assert_true(ksec_cap_last() >= CAP_AUDIT_READ);
}

static void test_start_time(void **state)
{
	assert_true(ksp_start_time(getpid()) > 0);
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	int st;
	waitpid(pid, &st, 0);
	assert_int_equal(ksp_start_time(pid), 0); /* gone */
}

int main(void)
{
	snprintf(node_dir, sizeof node_dir, "/tmp/cells-unit-nodes-%d", (int)getpid());
	mkdir(node_dir, 0700);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bpf_build_limits),
	    cmocka_unit_test(test_devices_v1),
	    cmocka_unit_test(test_devices_v2_bpf),
	    cmocka_unit_test(test_seccomp_filter),
	    cmocka_unit_test(test_caps),
	    cmocka_unit_test(test_start_time),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	rmdir(node_dir);
	return rc;
}
