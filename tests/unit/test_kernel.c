/* test_kernel.c - libcells-kernel on the real kernel: the device cgroup (v1
 * devices.allow/deny and the v2 BPF device program, each alone), the seccomp allowlist
 * (refused and allowed calls, argument filters, x32), the mask table and its
 * application on a fresh proc/sysfs, the capability set, process identity by start time. Root only
 * (skipped otherwise; under CI=true a skip is a failure). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_skip.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kcgroup.h"
#include <seccomp.h>
#include "kmask.h"
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
	/* several rules at once (one program on v2): kmsg and null denied, full allowed */
	const struct kcg_dev batch[] = {
	    {'c', 1, ~0u, false}, {'c', 1, 7, true}, {'c', 1, 11, false}};
	assert_int_equal(kcg_dev_apply(&cg, batch, 3, &err), 0);
	assert_int_equal(child_open(&cg, 1, 11), EPERM);
	assert_int_equal(child_open(&cg, 1, 3), EPERM);
	assert_int_equal(child_open(&cg, 1, 7), 0);
	/* a bad rule anywhere in a batch: nothing of it is applied */
	const struct kcg_dev bad[] = {{'c', 1, 11, true}, {'x', 1, 1, true}};
	assert_int_equal(kcg_dev_apply(&cg, bad, 2, &err), -1);
	assert_int_equal(child_open(&cg, 1, 11), EPERM);
	if (which == 2) {
		/* a program the kernel did not take leaves the rule list as it was */
		size_t n0 = cg.ndevs;
		struct kcg_dev last = cg.devs[n0 - 1];
		char keep[sizeof cg.v2];
		memcpy(keep, cg.v2, sizeof keep);
		snprintf(cg.v2, sizeof cg.v2, "/nonexistent/cells-unit-cgroup");
		assert_int_equal(kcg_dev_set(&cg, 'c', 240, 42, true, &err), -1);
		memcpy(cg.v2, keep, sizeof keep);
		assert_int_equal(cg.ndevs, n0);
		assert_memory_equal(&cg.devs[n0 - 1], &last, sizeof last);
		assert_int_equal(kcg_dev_set(&cg, 'c', 1, 3, true, &err), 0);
		for (size_t i = 0; i < cg.ndevs; i++)
			assert_false(cg.devs[i].major == 240 && cg.devs[i].minor == 42);
	}
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

/* In a child with the VP filter loaded (and in a control child without it), what each
 * call returns: 0 on success, else the errno. Each line names the call. */
#define SC_CHECK(expr, want)                                                                       \
	do {                                                                                       \
		errno = 0;                                                                         \
		long r_ = (long)(expr);                                                            \
		int got_ = r_ < 0 ? errno : 0;                                                     \
		if (got_ != (want)) {                                                              \
			fprintf(stderr, "line %d: %s: errno %d, want %d\n", __LINE__, #expr, got_, \
				(want));                                                           \
			bad++;                                                                     \
		}                                                                                  \
	} while (0)

static int seccomp_child(const struct sock_fprog *prog)
{
	int bad = 0;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_SECCOMP, 2 /* SECCOMP_MODE_FILTER */, prog, 0, 0) < 0)
		return 90;
	/* allowed */
	SC_CHECK(syscall(SYS_getpid), 0);
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	SC_CHECK(fd, 0);
	SC_CHECK(close(fd), 0);
	SC_CHECK(personality(0xffffffff), 0);
	SC_CHECK(personality(PER_LINUX), 0);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	SC_CHECK(s, 0);
	close(s);
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	SC_CHECK(s, 0);
	close(s);
	pid_t k = fork(); /* glibc's fork is clone(SIGCHLD | ...) */
	if (k == 0)
		_exit(0);
	SC_CHECK(k, 0);
	SC_CHECK(waitpid(k, NULL, 0), 0);
	/* a FIFO is not a device node: allowed */
	char fifo[64];
	snprintf(fifo, sizeof fifo, "/tmp/cells-unit-fifo-%d", (int)getpid());
	SC_CHECK(mknod(fifo, S_IFIFO | 0600, 0), 0);
	unlink(fifo);
	/* the terminal ioctls around the denied ones, also as musl passes them (a negative
	 * int, sign-extended) */
	int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	SC_CHECK(m, 0);
	struct winsize ws;
	int n = 0;
	unsigned ptn = 0;
	SC_CHECK(ioctl(m, TIOCGWINSZ, &ws), 0);
	SC_CHECK(ioctl(m, FIONREAD, &n), 0);
	SC_CHECK(syscall(SYS_ioctl, m, (long)(int)TIOCGPTN, &ptn), 0);
	/* refused with EPERM */
	char c = 'x';
	SC_CHECK(ioctl(m, TIOCSTI, &c), EPERM);
	SC_CHECK(syscall(SYS_ioctl, m, 0x100000000L | TIOCSTI, &c), EPERM);
	SC_CHECK(syscall(SYS_ioctl, m, 0xffffffff00000000L | TIOCSTI, &c), EPERM);
	SC_CHECK(ioctl(m, TIOCLINUX, &c), EPERM);
	close(m);
	SC_CHECK(unshare(CLONE_NEWNET), EPERM);
	SC_CHECK(mknod("/tmp/cells-unit-never", S_IFCHR | 0600, makedev(1, 3)), EPERM);
	SC_CHECK(syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0), EPERM);
	SC_CHECK(syscall(SYS_io_uring_setup, 1, NULL), EPERM);
	SC_CHECK(personality(PER_LINUX | READ_IMPLIES_EXEC), EPERM);
	SC_CHECK(socket(AF_VSOCK, SOCK_STREAM, 0), EPERM);
	SC_CHECK(socket(AF_ALG, SOCK_SEQPACKET, 0), EPERM);
	SC_CHECK(syscall(SYS_kcmp, getpid(), getpid(), 0, 0, 0), EPERM);
	SC_CHECK(syscall(SYS_set_mempolicy, 0, NULL, 0), EPERM);
	SC_CHECK(syscall(SYS_move_pages, 0, 0, NULL, NULL, NULL, 0), EPERM);
	SC_CHECK(syscall(SYS_memfd_secret, 0), EPERM);
#ifdef SYS_modify_ldt
	SC_CHECK(syscall(SYS_modify_ldt, 0, NULL, 0), EPERM);
#endif
	/* clone3: ENOSYS, so libc falls back to clone */
	SC_CHECK(syscall(SYS_clone3, NULL, 0), ENOSYS);
#if defined(__x86_64__)
	/* the x32 ABI (bit 30 of the number) is not the native one: refused */
	SC_CHECK(syscall(0x40000000 | SYS_getpid), ENOSYS);
#endif
	return bad;
}

static void test_seccomp_filter(void **state)
{
	struct sock_fprog prog;
	cells_err_t err;
	assert_int_equal(ksec_filter_build(&prog, &err), 0);
	assert_true(prog.len > 200);
	assert_true(prog.len <= BPF_MAXINSNS);
	pid_t pid = fork();
	if (pid == 0)
		_exit(seccomp_child(&prog));
	int st;
	waitpid(pid, &st, 0);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	ksec_filter_free(&prog);
}

/* The same table builds for x86-64 and aarch64 (a phone), each program checks its own
 * architecture first, and most of the table exists on each. */
static void test_seccomp_arches(void **state)
{
	const uint32_t arches[] = {SCMP_ARCH_X86_64, SCMP_ARCH_AARCH64};
	const uint32_t audit[] = {0xc000003e /* AUDIT_ARCH_X86_64 */,
				  0xc00000b7 /* AUDIT_ARCH_AARCH64 */};
	for (size_t i = 0; i < 2; i++) {
		struct sock_fprog prog;
		cells_err_t err;
		int rc = ksec_filter_build_arch(arches[i], &prog, &err);
		if (rc < 0)
			print_message("build for %#x: %s\n", (unsigned)arches[i], err.msg);
		assert_int_equal(rc, 0);
		assert_true(prog.len > 200);
		/* ld arch; jeq AUDIT_ARCH_* */
		assert_int_equal(prog.filter[1].k, audit[i]);
		size_t n = ksec_allowlist_count(arches[i]);
		print_message("arch %#x: %zu allowlisted syscalls, %u instructions\n",
			      (unsigned)arches[i], n, (unsigned)prog.len);
		assert_true(n >= 250);
		if (arches[i] == SCMP_ARCH_X86_64) {
			/* x32 shares x86-64's architecture token: the program must send numbers
			 * with bit 30 to the bad-architecture action (this kernel may have no x32,
			 * so the call alone does not show it) */
			bool x32_check = false;
			for (unsigned j = 0; j < prog.len; j++)
				x32_check |= prog.filter[j].code == (BPF_JMP | BPF_JGE | BPF_K) &&
					     prog.filter[j].k == 0x40000000;
			assert_true(x32_check);
		}
		ksec_filter_free(&prog);
	}
}

/* The mask table holds at least what runc/crun/Docker mask and make read-only. */
static void test_mask_table(void **state)
{
	static const char *const hide[] = {"/proc/acpi",
					   "/proc/asound",
					   "/proc/kcore",
					   "/proc/keys",
					   "/proc/latency_stats",
					   "/proc/timer_list",
					   "/proc/timer_stats",
					   "/proc/sched_debug",
					   "/proc/scsi",
					   "/sys/firmware",
					   "/sys/devices/virtual/powercap"};
	static const char *const ro[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
					 "/proc/sysrq-trigger"};
	for (size_t i = 0; i < sizeof hide / sizeof hide[0]; i++) {
		bool found = false;
		for (size_t j = 0; j < kmask_count; j++)
			found |= !strcmp(kmask_table[j].path, hide[i]) &&
				 kmask_table[j].kind == KMASK_HIDE;
		if (!found)
			print_message("not masked: %s\n", hide[i]);
		assert_true(found);
	}
	for (size_t i = 0; i < sizeof ro / sizeof ro[0]; i++) {
		bool found = false;
		for (size_t j = 0; j < kmask_count; j++)
			found |= !strcmp(kmask_table[j].path, ro[i]) &&
				 kmask_table[j].kind == KMASK_READONLY;
		assert_true(found);
	}
}

/* kmask_apply on a fresh proc and sysfs in a private mount namespace: masked files read
 * empty, masked directories are empty, read-only paths refuse writes; a mask that fails
 * for another reason than a missing path stops with its name. */
static int mask_child(const char *dir)
{
	int bad = 0;
	char p[256];
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    chdir(dir) < 0)
		return 80;
	mkdir("proc", 0755);
	mkdir("sys", 0755);
	mkdir("dev", 0755);
	if (mount("proc", "proc", "proc", 0, NULL) < 0 ||
	    mount("sysfs", "sys", "sysfs", MS_RDONLY, NULL) < 0 ||
	    mknod("dev/null", S_IFCHR | 0666, makedev(1, 3)) < 0)
		return 81;
	const char *step = NULL, *path = NULL;
	/* no null device: the first file mask fails, and names itself */
	if (kmask_apply("dev/nonexistent", &step, &path) != -1 || strcmp(step, "mask") != 0 ||
	    strncmp(path, "/proc/", 6) != 0) {
		fprintf(stderr, "a failing mask did not stop: %s %s\n", step ? step : "-",
			path ? path : "-");
		bad++;
	}
	if (umount2("proc", MNT_DETACH) < 0 || umount2("sys", MNT_DETACH) < 0 ||
	    mount("proc", "proc", "proc", 0, NULL) < 0 ||
	    mount("sysfs", "sys", "sysfs", MS_RDONLY, NULL) < 0)
		return 82;
	/* what exists on the host before masking */
	bool had[64] = {false};
	for (size_t i = 0; i < kmask_count && i < 64; i++)
		had[i] = access(kmask_table[i].path + 1, F_OK) == 0;
	if (kmask_apply("dev/null", &step, &path) < 0) {
		fprintf(stderr, "kmask_apply: %s %s: %s\n", step, path, strerror(errno));
		return 83;
	}
	for (size_t i = 0; i < kmask_count && i < 64; i++) {
		const char *q = kmask_table[i].path + 1;
		struct stat st;
		if (!had[i] || stat(q, &st) < 0)
			continue;
		if (kmask_table[i].kind == KMASK_HIDE && S_ISDIR(st.st_mode)) {
			snprintf(p, sizeof p, "%s/x", q);
			DIR *d = opendir(q);
			int entries = 0;
			for (struct dirent *e; d && (e = readdir(d));)
				entries += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
			if (d)
				closedir(d);
			if (!d || entries || mkdir(p, 0700) == 0 || errno != EROFS) {
				fprintf(stderr, "%s: not an empty read-only directory\n", q);
				bad++;
			}
		} else if (kmask_table[i].kind == KMASK_HIDE) {
			char b[16];
			int fd = open(q, O_RDONLY | O_CLOEXEC);
			if (fd < 0 || read(fd, b, sizeof b) != 0 || !S_ISCHR(st.st_mode)) {
				fprintf(stderr, "%s: not the null device\n", q);
				bad++;
			}
			if (fd >= 0)
				close(fd);
		} else {
			int fd = open(S_ISDIR(st.st_mode) ? "proc/sys/kernel/ns_last_pid" : q,
				      O_WRONLY | O_CLOEXEC);
			if (fd >= 0 || errno != EROFS) {
				fprintf(stderr, "%s: writable\n", q);
				bad++;
			}
			if (fd >= 0)
				close(fd);
		}
	}
	return bad;
}

static void test_mask_apply(void **state)
{
	if (getuid() != 0) {
		SKIP_OR_FAIL("the mask test needs root");
		return;
	}
	char dir[64];
	snprintf(dir, sizeof dir, "/tmp/cells-unit-mask-%d", (int)getpid());
	assert_int_equal(mkdir(dir, 0700), 0);
	pid_t pid = fork();
	if (pid == 0)
		_exit(mask_child(dir));
	int st;
	waitpid(pid, &st, 0);
	char p[128];
	snprintf(p, sizeof p, "%s/dev/null", dir);
	unlink(p);
	static const char *const sub[] = {"proc", "sys", "dev"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof p, "%s/%s", dir, sub[i]);
		rmdir(p);
	}
	rmdir(dir);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
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
	    cmocka_unit_test(test_bpf_build_limits), cmocka_unit_test(test_devices_v1),
	    cmocka_unit_test(test_devices_v2_bpf),   cmocka_unit_test(test_seccomp_filter),
	    cmocka_unit_test(test_seccomp_arches),   cmocka_unit_test(test_mask_table),
	    cmocka_unit_test(test_mask_apply),	     cmocka_unit_test(test_caps),
	    cmocka_unit_test(test_start_time),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	rmdir(node_dir);
	return rc;
}
