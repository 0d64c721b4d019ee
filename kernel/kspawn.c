/* kspawn.c - VP init and exec processes (see kspawn.h). Functions named child_* run
 * between clone and execve: async-signal-safe only (raw syscalls, stack buffers). */
#include "kspawn.h"
#include "cleanup.h"
#include "kmask.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

struct ksp_clone_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
	    set_tid_size, cgroup;
};

/* The message a failing child sends on the error pipe. */
struct child_err {
	int code;
	char step[120];
};

/* Read a child's setup report from fd (closed here): 0 at EOF (it exec'd, or its setup
 * went through), 1 with *m filled (a step failed), -1 when it died mid-report. */
static int read_report(int fd, struct child_err *m)
{
	ssize_t n;
	do
		n = read(fd, m, sizeof *m);
	while (n < 0 && errno == EINTR);
	close(fd);
	if (n == (ssize_t)sizeof *m) {
		m->step[sizeof m->step - 1] = 0;
		return 1;
	}
	return n == 0 ? 0 : -1;
}

static size_t child_strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

static void child_fail(int errfd, const char *step, const char *arg, int code)
{
	struct child_err m;
	memset(&m, 0, sizeof m);
	m.code = code;
	size_t k = 0;
	for (size_t i = 0; step[i] && k < sizeof m.step - 1; i++)
		m.step[k++] = step[i];
	if (arg && k < sizeof m.step - 2) {
		m.step[k++] = ' ';
		for (size_t i = 0; arg[i] && k < sizeof m.step - 1; i++)
			m.step[k++] = arg[i];
	}
	if (errfd >= 0)
		(void)!write(errfd, &m, sizeof m);
	_exit(127);
}

#define CHECK(expr, step, arg)                                                                     \
	do {                                                                                       \
		if ((expr) < 0)                                                                    \
			child_fail(errfd, step, arg, errno);                                       \
	} while (0)

static void child_mkdir(const char *p)
{
	(void)mkdir(p, 0755);
}

static void child_node(int errfd, const char *p, unsigned ma, unsigned mi)
{
	(void)unlink(p);
	CHECK(mknod(p, S_IFCHR | 0666, makedev(ma, mi)), "mknod", p);
}

/* Bring the loopback interface of the new network namespace up. */
static void child_lo_up(int errfd)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	memcpy(ifr.ifr_name, "lo", 3);
	if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		child_fail(errfd, "loopback", NULL, errno);
	ifr.ifr_flags |= IFF_UP;
	CHECK(ioctl(s, SIOCSIFFLAGS, &ifr), "loopback up", NULL);
	close(s);
}

/* Mount the VP's root at s->root and pivot into it. cwd is the new root afterwards. */
static void child_mounts(int errfd, const struct ksp_init *s)
{
	CHECK(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), "make / private", NULL);
	CHECK(mount("overlay", s->root, "overlay", MS_NOSUID | MS_NODEV, s->overlay_opts),
	      "mount overlay on", s->root);
	CHECK(chdir(s->root), "chdir", s->root);
	child_mkdir("proc");
	child_mkdir("sys");
	child_mkdir("dev");
	child_mkdir("tmp");
	CHECK(mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL), "mount",
	      "/proc");
	CHECK(mount("sysfs", "sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL),
	      "mount", "/sys");
	CHECK(mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=1024k"), "mount",
	      "/dev");
	child_node(errfd, "dev/null", 1, 3);
	child_node(errfd, "dev/zero", 1, 5);
	child_node(errfd, "dev/full", 1, 7);
	child_node(errfd, "dev/random", 1, 8);
	child_node(errfd, "dev/urandom", 1, 9);
	child_node(errfd, "dev/tty", 5, 0);
	child_mkdir("dev/pts");
	CHECK(mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
		    "newinstance,ptmxmode=0666,mode=0620,gid=5"),
	      "mount", "/dev/pts");
	CHECK(symlink("pts/ptmx", "dev/ptmx"), "symlink", "/dev/ptmx");
	CHECK(symlink("/proc/self/fd", "dev/fd"), "symlink", "/dev/fd");
	CHECK(symlink("/proc/self/fd/0", "dev/stdin"), "symlink", "/dev/stdin");
	CHECK(symlink("/proc/self/fd/1", "dev/stdout"), "symlink", "/dev/stdout");
	CHECK(symlink("/proc/self/fd/2", "dev/stderr"), "symlink", "/dev/stderr");
	child_mkdir("dev/shm");
	CHECK(mount("tmpfs", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		    "mode=1777,size=65536k"),
	      "mount", "/dev/shm");
	if (s->devcells) {
		child_mkdir("dev/cells");
		CHECK(mount(s->devcells, "dev/cells", NULL, MS_BIND, NULL), "bind", "/dev/cells");
		CHECK(mount(NULL, "dev/cells", NULL, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NOEXEC,
			    NULL),
		      "remount", "/dev/cells");
	}
	/* /proc and /sys: what would reach the host masked or read-only (kmask.c) */
	const char *step = NULL, *path = NULL;
	if (kmask_apply("dev/null", &step, &path) < 0)
		child_fail(errfd, step, path, errno);
	/* pivot_root(".", "."): the old root ends up on top; detach it */
	CHECK(syscall(SYS_pivot_root, ".", "."), "pivot_root", NULL);
	CHECK(umount2(".", MNT_DETACH), "detach old root", NULL);
	CHECK(chdir("/"), "chdir", "/");
}

/* Exec path or search PATH (fixed list: the child cannot read the environment). */
static void child_execvp(char *const argv[], char *const envp[])
{
	const char *cmd = argv[0];
	for (const char *p = cmd; *p; p++)
		if (*p == '/') {
			execve(cmd, argv, envp);
			return;
		}
	static const char *const dirs[] = {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin",
					   "/usr/bin",	      "/sbin",		"/bin"};
	int saved = ENOENT;
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(dirs); i++) {
		char buf[4096];
		size_t a = child_strlen(dirs[i]), b = child_strlen(cmd);
		if (a + b + 2 > sizeof buf)
			continue;
		memcpy(buf, dirs[i], a);
		buf[a] = '/';
		memcpy(buf + a + 1, cmd, b + 1);
		execve(buf, argv, envp);
		if (errno != ENOENT)
			saved = errno;
	}
	errno = saved;
}

/* In a child before exec: every signal back to SIG_DFL and none blocked (cellsd blocks
 * SIGTERM/SIGINT for its signalfd and ignores SIGPIPE). Raw syscalls: no sanitizer
 * interceptors between clone and exec. */
static void child_signals_default(int errfd)
{
	struct {
		void *handler;
		unsigned long flags;
		void *restorer;
		uint64_t mask;
	} ksa;
	memset(&ksa, 0, sizeof ksa); /* SIG_DFL */
	for (int sig = 1; sig <= 64; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			(void)syscall(SYS_rt_sigaction, sig, &ksa, NULL, 8);
	uint64_t none = 0;
	CHECK(syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, 8), "sigprocmask", NULL);
}

/* Confine the current process and exec. Never returns. */
static void child_confine_exec(int errfd, const struct ksp_confine *c, bool report_to_stderr)
{
	child_signals_default(errfd);
	int t[3];
	for (int i = 0; i < 3; i++) {
		if (c->stdio[i] >= 0)
			t[i] = fcntl(c->stdio[i], F_DUPFD_CLOEXEC, 3);
		else
			t[i] = open("/dev/null", (i ? O_WRONLY : O_RDONLY) | O_CLOEXEC);
		if (t[i] < 0)
			child_fail(errfd, "stdio", NULL, errno);
	}
	for (int i = 0; i < 3; i++)
		CHECK(dup2(t[i], i), "dup2", NULL);
	/* everything else is closed at exec (the error pipe too, which tells the parent
	 * that exec succeeded) */
	CHECK(syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC), "close_range", NULL);
	if (c->cwd && chdir(c->cwd) < 0)
		child_fail(errfd, "chdir inside the VP to", c->cwd, errno);
	if (c->selinux_exec) {
		int fd = open("/proc/thread-self/attr/exec", O_WRONLY | O_CLOEXEC);
		size_t n = child_strlen(c->selinux_exec);
		if (fd < 0 || write(fd, c->selinux_exec, n) != (ssize_t)n)
			child_fail(errfd, "selinux exec context", c->selinux_exec, errno);
		close(fd);
	}
	/* capabilities: bounding set, then effective/permitted/inheritable, ambient */
	for (int cap = 0; cap <= c->cap_last; cap++)
		if (!(c->caps_keep & (1ull << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 &&
		    errno != EINVAL)
			child_fail(errfd, "drop capability from the bounding set", NULL, errno);
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2];
	memset(d, 0, sizeof d);
	d[0].effective = d[0].permitted = d[0].inheritable = (uint32_t)c->caps_keep;
	d[1].effective = d[1].permitted = d[1].inheritable = (uint32_t)(c->caps_keep >> 32);
	CHECK(syscall(SYS_capset, &h, d), "capset", NULL);
	(void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs", NULL);
	if (c->seccomp)
		CHECK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, c->seccomp, 0, 0), "seccomp",
		      NULL);
	child_execvp(c->argv, c->envp);
	if (errno == ENOENT && c->fallback) {
		char *const fb[] = {(char *)c->fallback, NULL};
		execve(c->fallback, fb, c->envp);
	}
	int e = errno;
	if (report_to_stderr) {
		static const char nf[] = "cells: command not found\n",
				  ne[] = "cells: cannot execute command\n";
		if (e == ENOENT)
			(void)!write(2, nf, sizeof nf - 1);
		else
			(void)!write(2, ne, sizeof ne - 1);
		_exit(e == ENOENT ? 127 : 126);
	}
	child_fail(errfd, "exec", c->argv[0], e);
}

static pid_t do_clone3(uint64_t flags, int *pidfd, int cgroup_fd)
{
	struct ksp_clone_args a;
	memset(&a, 0, sizeof a);
	a.flags = flags | CLONE_PIDFD;
	a.pidfd = (uint64_t)(uintptr_t)pidfd;
	a.exit_signal = SIGCHLD;
	if (cgroup_fd >= 0) {
		a.flags |= CLONE_INTO_CGROUP;
		a.cgroup = (uint64_t)cgroup_fd;
	}
	return (pid_t)syscall(SYS_clone3, &a, sizeof a);
}

int ksp_spawn_init(const struct ksp_init *s, pid_t *pid, int *pidfd, int *go_fd, int *err_fd,
		   cells_err_t *err)
{
	int go[2], ep[2];
	if (pipe2(go, O_CLOEXEC) < 0)
		return cells_err_sys(err, errno, "pipe");
	if (pipe2(ep, O_CLOEXEC) < 0) {
		close(go[0]);
		close(go[1]);
		return cells_err_sys(err, errno, "pipe");
	}
	int pfd = -1;
	pid_t p = do_clone3(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC,
			    &pfd, s->cgroup_fd);
	if (p == 0) {
		/* child */
		int errfd = ep[1];
		char b;
		close(go[1]);
		close(ep[0]);
		if (read(go[0], &b, 1) != 1)
			_exit(1); /* the parent gave up */
		close(go[0]);
		(void)prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
		umask(0);
		/* the cgroup namespace is rooted at the VP's cgroups, joined by now */
		CHECK(unshare(CLONE_NEWCGROUP), "unshare cgroup namespace", NULL);
		child_lo_up(errfd);
		child_mounts(errfd, s);
		umask(022);
		if (s->hostname)
			CHECK(sethostname(s->hostname, child_strlen(s->hostname)), "sethostname",
			      NULL);
		child_confine_exec(errfd, &s->c, false);
	}
	int e = errno;
	close(go[0]);
	close(ep[1]);
	if (p < 0) {
		close(go[1]);
		close(ep[0]);
		return cells_err_sys(err, e, "clone3");
	}
	*pid = p;
	*pidfd = pfd;
	*go_fd = go[1];
	*err_fd = ep[0];
	return 0;
}

int ksp_release(int go_fd, int err_fd, cells_err_t *err)
{
	if (write(go_fd, "g", 1) != 1) {
		int e = errno;
		close(go_fd);
		close(err_fd);
		return cells_err_sys(err, e, "release the VP's init");
	}
	close(go_fd);
	struct child_err m;
	int r = read_report(err_fd, &m);
	if (r == 1)
		return cells_err_sys(err, m.code, "%s", m.step);
	if (r < 0)
		return cells_err_set(err, EIO, "the VP's init died during setup");
	return 0;
}

int ksp_exec(int vp_pidfd, const int *procs_fds, size_t nprocs, const struct ksp_confine *c,
	     pid_t *pid, int *pidfd, cells_err_t *err)
{
	int ep[2];
	if (pipe2(ep, O_CLOEXEC) < 0)
		return cells_err_sys(err, errno, "pipe");
	int pfd = -1;
	pid_t p = do_clone3(0, &pfd, -1);
	if (p == 0) {
		int errfd = ep[1];
		close(ep[0]);
		for (size_t i = 0; i < nprocs; i++)
			if (procs_fds[i] >= 0)
				CHECK(write(procs_fds[i], "0", 1), "join the VP's cgroup", NULL);
		CHECK(setns(vp_pidfd, CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWUTS |
					  CLONE_NEWIPC | CLONE_NEWCGROUP),
		      "join the VP's namespaces", NULL);
		int gfd = -1;
		pid_t g = do_clone3(0, &gfd, -1);
		if (g == 0) {
			(void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
			child_confine_exec(errfd, c, true);
		}
		if (g < 0)
			child_fail(errfd, "fork inside the VP", NULL, errno);
		close(errfd);
		int st = 0;
		siginfo_t si;
		memset(&si, 0, sizeof si);
		while (waitid(P_PIDFD, (id_t)gfd, &si, WEXITED) < 0)
			if (errno != EINTR)
				_exit(125);
		if (si.si_code == CLD_EXITED)
			st = si.si_status;
		else
			st = 128 + si.si_status;
		_exit(st);
	}
	int e = errno;
	close(ep[1]);
	if (p < 0) {
		close(ep[0]);
		return cells_err_sys(err, e, "clone3");
	}
	/* wait for the setup report: EOF once both helper and command closed it */
	struct child_err m;
	if (read_report(ep[0], &m) == 1) {
		siginfo_t si;
		waitid(P_PIDFD, (id_t)pfd, &si, WEXITED);
		close(pfd);
		return cells_err_sys(err, m.code, "%s", m.step);
	}
	*pid = p;
	*pidfd = pfd;
	return 0;
}

/* The helper's child: fds in place, credentials dropped, exec from the descriptor. */
static void child_helper(int errfd, const struct ksp_helper *h)
{
	child_signals_default(errfd);
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	/* move everything above the final range first (cloexec), then into place */
	int hi = 3 + KSP_HELPER_MAX_FDS + 2, t[3 + KSP_HELPER_MAX_FDS + 1];
	size_t n = h->nfds;
	for (int i = 0; i < 3; i++) {
		if (h->stdio[i] >= 0)
			t[i] = fcntl(h->stdio[i], F_DUPFD_CLOEXEC, hi);
		else
			t[i] = open("/dev/null", (i ? O_WRONLY : O_RDONLY) | O_CLOEXEC);
		if (t[i] < 0)
			child_fail(errfd, "stdio", NULL, errno);
	}
	for (size_t i = 0; i < n; i++)
		CHECK(t[3 + i] = fcntl(h->fds[i], F_DUPFD_CLOEXEC, hi), "dup", NULL);
	int xfd;
	CHECK(xfd = fcntl(h->exec_fd, F_DUPFD_CLOEXEC, hi), "dup", NULL);
	for (int i = 0; i < 3; i++)
		CHECK(dup2(t[i], i), "dup2", NULL);
	for (size_t i = 0; i < n; i++)
		CHECK(dup2(t[3 + i], 3 + (int)i), "dup2", NULL);
	int first_closed = 3 + (int)n;
	if (h->exec_script) {
		CHECK(dup2(xfd, first_closed), "dup2", NULL);
		xfd = first_closed++;
	}
	/* everything else is closed at exec (the error pipe too: it tells the parent that
	 * exec succeeded) */
	CHECK(syscall(SYS_close_range, first_closed, ~0U, CLOSE_RANGE_CLOEXEC), "close_range",
	      NULL);
	/* capabilities: the bounding set while still root, ambient; then the uid drops
	 * effective and permitted; inheritable is cleared last */
	for (int cap = 0; cap <= 63; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
			child_fail(errfd, "drop capability from the bounding set", NULL, errno);
	(void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	CHECK(syscall(SYS_setgroups, 0, NULL), "setgroups", NULL);
	CHECK(syscall(SYS_setresgid, h->gid, h->gid, h->gid), "setresgid", NULL);
	CHECK(syscall(SYS_setresuid, h->uid, h->uid, h->uid), "setresuid", NULL);
	struct __user_cap_header_struct ch = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2];
	memset(d, 0, sizeof d);
	CHECK(syscall(SYS_capset, &ch, d), "capset", NULL);
	CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs", NULL);
	syscall(SYS_execveat, xfd, "", h->argv, h->envp, AT_EMPTY_PATH);
	child_fail(errfd, "exec", h->argv[0], errno);
}

int ksp_spawn_helper(const struct ksp_helper *h, pid_t *pid, int *pidfd, cells_err_t *err)
{
	if (h->nfds > KSP_HELPER_MAX_FDS)
		return cells_err_set(err, EINVAL, "helper: too many fds");
	int ep[2];
	if (pipe2(ep, O_CLOEXEC) < 0)
		return cells_err_sys(err, errno, "pipe");
	int pfd = -1;
	pid_t p = do_clone3(h->clone_flags, &pfd, -1);
	if (p == 0) {
		int errfd = ep[1];
		close(ep[0]);
		child_helper(errfd, h);
	}
	int e = errno;
	close(ep[1]);
	if (p < 0) {
		close(ep[0]);
		return cells_err_sys(err, e, "clone3");
	}
	struct child_err m;
	int r = read_report(ep[0], &m);
	if (r != 0) {
		int st;
		waitpid(p, &st, 0);
		close(pfd);
		if (r == 1)
			return cells_err_sys(err, m.code, "helper: %s", m.step);
		return cells_err_set(err, EIO, "helper: died before exec");
	}
	*pid = p;
	*pidfd = pfd;
	return 0;
}

unsigned long long ksp_start_time(pid_t pid)
{
	char p[64], buf[1024];
	snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
	cleanup_close int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *s = strrchr(buf, ')'); /* comm may contain spaces */
	if (!s)
		return 0;
	/* after ") " come fields 3.. ; starttime is field 22 */
	int field = 2;
	for (char *q = s + 1; *q; q++)
		if (*q == ' ' && ++field == 22)
			return strtoull(q + 1, NULL, 10);
	return 0;
}
