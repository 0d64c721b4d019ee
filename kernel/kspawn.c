/* kspawn.c - VP init and exec processes (see kspawn.h). Functions named child_* run
 * between clone and execve: async-signal-safe only (raw syscalls, stack buffers). */
#include "kspawn.h"
#include "cleanup.h"
#include "kidmap.h"
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
#include <sys/uio.h>
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

/* What the init's child receives from its parent (a user-namespace VP): fds the parent
 * opened before clone3 (inherited) and those it made after (idmapped through the
 * child's own user namespace, passed with SCM_RIGHTS). -1: none. */
struct child_fds {
	int dev;	       /* inherited */
	int lower, devcells;   /* received */
	int root, upper, work; /* opened by the child in its mount namespace */
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

/* In a user namespace: become its root (host uid/gid id_base), no supplementary
 * groups. Capabilities in the namespace stay (not root -> root). */
static void child_userns_root(int errfd)
{
	CHECK(syscall(SYS_setresgid, 0, 0, 0), "setresgid in the user namespace", NULL);
	CHECK(syscall(SYS_setgroups, 0, NULL), "setgroups in the user namespace", NULL);
	CHECK(syscall(SYS_setresuid, 0, 0, 0), "setresuid in the user namespace", NULL);
}

/* Receive the fds the parent made after clone3 (lower, then devcells when expected). */
static void child_recv_fds(int errfd, int sock, struct child_fds *f, bool devcells)
{
	char b;
	struct iovec iov = {.iov_base = &b, .iov_len = 1};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(2 * sizeof(int))];
	} u;
	memset(&u, 0, sizeof u);
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
	if (syscall(SYS_recvmsg, sock, &mh, MSG_CMSG_CLOEXEC) != 1)
		_exit(1); /* the parent gave up */
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	size_t want = devcells ? 2 : 1;
	if (!c || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(want * sizeof(int)))
		child_fail(errfd, "receive the idmapped mounts", NULL, EPROTO);
	int fds[2];
	memcpy(fds, CMSG_DATA(c), want * sizeof(int));
	f->lower = fds[0];
	f->devcells = devcells ? fds[1] : -1;
}

/* Open the host directories the VP's root is built from, in the child's own mount
 * namespace (an fd opened by the parent would name the parent's mounts), while its
 * fsuid is still host root's: the agent's directories are root's, mode 0700, and the
 * range cannot search them. */
static void child_open_dirs(int errfd, const struct ksp_init *s, struct child_fds *f)
{
	CHECK(f->root = open(s->root, O_PATH | O_DIRECTORY | O_CLOEXEC), "open", s->root);
	CHECK(f->upper = open(s->upper, O_PATH | O_DIRECTORY | O_CLOEXEC), "open", s->upper);
	CHECK(f->work = open(s->work, O_PATH | O_DIRECTORY | O_CLOEXEC), "open", s->work);
}

/* "/proc/self/fd/N" into buf (at least 32 bytes) */
static const char *child_fd_path(char *buf, int fd)
{
	static const char pre[] = "/proc/self/fd/";
	char digits[12];
	int n = 0;
	do
		digits[n++] = (char)('0' + fd % 10);
	while ((fd /= 10) > 0 && n < 11);
	memcpy(buf, pre, sizeof pre - 1);
	size_t k = sizeof pre - 1;
	while (n > 0)
		buf[k++] = digits[--n];
	buf[k] = 0;
	return buf;
}

/* The VP's root in a user namespace: the idmapped base image is attached over the root
 * dir (where overlayfs can take it as its lower layer), the overlay, mounted by the VP's
 * root (so its copy-ups are done as the range's root), is attached on top; the cwd is
 * the overlay's root afterwards. Paths on the host go through fds the parent opened: the
 * range cannot search the agent's directories. */
static void child_root_userns(int errfd, const struct child_fds *f)
{
	char lower[32], upper[32], work[32];
	CHECK(syscall(SYS_move_mount, f->lower, "", f->root, "",
		      MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH),
	      "attach the base image", NULL);
	int fs = (int)syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC);
	CHECK(fs, "fsopen", "overlay");
	CHECK(syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "lowerdir",
		      child_fd_path(lower, f->lower), 0),
	      "overlay lowerdir", NULL);
	CHECK(syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "upperdir",
		      child_fd_path(upper, f->upper), 0),
	      "overlay upperdir", NULL);
	CHECK(syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "workdir",
		      child_fd_path(work, f->work), 0),
	      "overlay workdir", NULL);
	/* trusted.* xattrs need host privilege: overlayfs keeps its state in user.* */
	CHECK(syscall(SYS_fsconfig, fs, FSCONFIG_SET_FLAG, "userxattr", NULL, 0),
	      "overlay userxattr", NULL);
	CHECK(syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0), "mount overlay", NULL);
	int m =
	    (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
	CHECK(m, "fsmount", "overlay");
	CHECK(syscall(SYS_move_mount, m, "", f->root, "",
		      MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH),
	      "attach the overlay", NULL);
	CHECK(fchdir(m), "chdir", "into the overlay");
	close(m);
	close(fs);
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
static void child_mounts(int errfd, const struct ksp_init *s, const struct child_fds *f)
{
	bool userns = s->c.id_base != 0;
	CHECK(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), "make / private", NULL);
	if (userns) {
		child_root_userns(errfd, f);
	} else {
		CHECK(mount("overlay", s->root, "overlay", MS_NOSUID | MS_NODEV, s->overlay_opts),
		      "mount overlay on", s->root);
		CHECK(chdir(s->root), "chdir", s->root);
	}
	child_mkdir("proc");
	child_mkdir("sys");
	child_mkdir("dev");
	child_mkdir("tmp");
	CHECK(mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL), "mount",
	      "/proc");
	CHECK(mount("sysfs", "sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL),
	      "mount", "/sys");
	if (userns) {
		/* made by the parent: a file system of the user namespace could hold no
		 * usable device node */
		CHECK(syscall(SYS_move_mount, f->dev, "", AT_FDCWD, "dev", MOVE_MOUNT_F_EMPTY_PATH),
		      "attach", "/dev");
	} else {
		CHECK(mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=1024k"),
		      "mount", "/dev");
		child_node(errfd, "dev/null", 1, 3);
		child_node(errfd, "dev/zero", 1, 5);
		child_node(errfd, "dev/full", 1, 7);
		child_node(errfd, "dev/random", 1, 8);
		child_node(errfd, "dev/urandom", 1, 9);
		child_node(errfd, "dev/tty", 5, 0);
		child_mkdir("dev/pts");
	}
	CHECK(mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
		    "newinstance,ptmxmode=0666,mode=0620,gid=5"),
	      "mount", "/dev/pts");
	if (!userns) {
		CHECK(symlink("pts/ptmx", "dev/ptmx"), "symlink", "/dev/ptmx");
		CHECK(symlink("/proc/self/fd", "dev/fd"), "symlink", "/dev/fd");
		CHECK(symlink("/proc/self/fd/0", "dev/stdin"), "symlink", "/dev/stdin");
		CHECK(symlink("/proc/self/fd/1", "dev/stdout"), "symlink", "/dev/stdout");
		CHECK(symlink("/proc/self/fd/2", "dev/stderr"), "symlink", "/dev/stderr");
		child_mkdir("dev/shm");
	}
	CHECK(mount("tmpfs", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		    "mode=1777,size=65536k"),
	      "mount", "/dev/shm");
	if (s->devcells && userns) {
		CHECK(syscall(SYS_move_mount, f->devcells, "", AT_FDCWD, "dev/cells",
			      MOVE_MOUNT_F_EMPTY_PATH),
		      "attach", "/dev/cells");
	} else if (s->devcells) {
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

/* The VP's /dev as a detached tmpfs made here, by real root (a tmpfs mounted inside
 * the user namespace could hold no usable device node): owned by the range, with the
 * standard nodes, the mount points (pts, shm, cells) and the links. */
static int dev_tree(uint32_t base, int *out, cells_err_t *err)
{
	char id[16];
	snprintf(id, sizeof id, "%u", base);
	cleanup_close int fs = (int)syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC);
	if (fs < 0)
		return cells_err_sys(err, errno, "fsopen tmpfs");
	static const char *const kv[][2] = {{"mode", "755"}, {"size", "1024k"}};
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(kv); i++)
		if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, kv[i][0], kv[i][1], 0) < 0)
			return cells_err_sys(err, errno, "/dev tmpfs: %s", kv[i][0]);
	if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "uid", id, 0) < 0 ||
	    syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "gid", id, 0) < 0 ||
	    syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		return cells_err_sys(err, errno, "/dev tmpfs");
	cleanup_close int m =
	    (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
	if (m < 0)
		return cells_err_sys(err, errno, "fsmount /dev tmpfs");
	static const struct {
		const char *name;
		unsigned ma, mi;
	} nodes[] = {{"null", 1, 3},   {"zero", 1, 5},	  {"full", 1, 7},
		     {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(nodes); i++)
		if (mknodat(m, nodes[i].name, S_IFCHR | 0666, makedev(nodes[i].ma, nodes[i].mi)) <
			0 ||
		    fchmodat(m, nodes[i].name, 0666, 0) < 0)
			return cells_err_sys(err, errno, "mknod /dev/%s", nodes[i].name);
	static const char *const dirs[] = {"pts", "shm", "cells"};
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(dirs); i++)
		if (mkdirat(m, dirs[i], 0755) < 0)
			return cells_err_sys(err, errno, "mkdir /dev/%s", dirs[i]);
	static const char *const links[][2] = {{"pts/ptmx", "ptmx"},
					       {"/proc/self/fd", "fd"},
					       {"/proc/self/fd/0", "stdin"},
					       {"/proc/self/fd/1", "stdout"},
					       {"/proc/self/fd/2", "stderr"}};
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(links); i++)
		if (symlinkat(links[i][0], m, links[i][1]) < 0)
			return cells_err_sys(err, errno, "symlink /dev/%s", links[i][1]);
	const char *all[CELLS_ARRAY_SIZE(nodes) + CELLS_ARRAY_SIZE(dirs) + CELLS_ARRAY_SIZE(links)];
	size_t n = 0;
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(nodes); i++)
		all[n++] = nodes[i].name;
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(dirs); i++)
		all[n++] = dirs[i];
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(links); i++)
		all[n++] = links[i][1];
	for (size_t i = 0; i < n; i++)
		if (fchownat(m, all[i], base, base, AT_SYMLINK_NOFOLLOW) < 0)
			return cells_err_sys(err, errno, "chown /dev/%s", all[i]);
	*out = take_fd(&m);
	return 0;
}

/* After clone3 of a user-namespace init: its maps, then the base image and devcells
 * idmapped through its namespace, sent to it (it waits for them before the go byte). */
static int userns_setup(const struct ksp_init *s, pid_t p, int sock, cells_err_t *err)
{
	if (kidmap_write_maps(p, s->c.id_base, err) < 0)
		return cells_err_prefix(err, "id maps");
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/ns/user", (int)p);
	cleanup_close int ns = open(path, O_RDONLY | O_CLOEXEC);
	if (ns < 0)
		return cells_err_sys(err, errno, "open %s", path);
	cleanup_close int lower = -1;
	cleanup_close int devc = -1;
	if (kidmap_idmapped_tree(s->image, ns,
				 MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, false,
				 &lower, err) < 0 ||
	    (s->devcells &&
	     kidmap_idmapped_tree(s->devcells, ns, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, false,
				  &devc, err) < 0))
		return -1;
	int fds[2] = {lower, devc};
	size_t nfds = s->devcells ? 2 : 1;
	char b = 'm';
	struct iovec iov = {.iov_base = &b, .iov_len = 1};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(2 * sizeof(int))];
	} u;
	memset(&u, 0, sizeof u);
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = u.buf,
			    .msg_controllen = CMSG_SPACE(nfds * sizeof(int))};
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
	memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	if (sendmsg(sock, &mh, MSG_NOSIGNAL) != 1)
		return cells_err_sys(err, errno, "send the idmapped mounts to the VP's init");
	return 0;
}

int ksp_spawn_init(const struct ksp_init *s, pid_t *pid, int *pidfd, int *go_fd, int *err_fd,
		   cells_err_t *err)
{
	bool userns = s->c.id_base != 0;
	struct child_fds f = {-1, -1, -1, -1, -1, -1};
	cleanup_close int dev_fd = -1;
	if (userns) {
		if (!s->image || !s->upper || !s->work)
			return cells_err_set(err, EINVAL, "user namespace: no image/upper/work");
		if (dev_tree(s->c.id_base, &dev_fd, err) < 0)
			return -1;
		f.dev = dev_fd;
	}
	/* the go channel: a socket, so the fds idmapped after clone3 can go over it too */
	int go[2], ep[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, go) < 0)
		return cells_err_sys(err, errno, "socketpair");
	if (pipe2(ep, O_CLOEXEC) < 0) {
		close(go[0]);
		close(go[1]);
		return cells_err_sys(err, errno, "pipe");
	}
	int pfd = -1;
	pid_t p = do_clone3(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS |
				CLONE_NEWIPC | (userns ? CLONE_NEWUSER : 0),
			    &pfd, s->cgroup_fd);
	if (p == 0) {
		/* child */
		int errfd = ep[1];
		char b;
		close(go[1]);
		close(ep[0]);
		if (userns)
			child_recv_fds(errfd, go[0], &f, s->devcells != NULL);
		if (read(go[0], &b, 1) != 1)
			_exit(1); /* the parent gave up */
		close(go[0]);
		(void)prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
		if (userns) {
			child_open_dirs(errfd, s, &f);
			child_userns_root(errfd);
		}
		umask(0);
		/* the cgroup namespace is rooted at the VP's cgroups, joined by now */
		CHECK(unshare(CLONE_NEWCGROUP), "unshare cgroup namespace", NULL);
		child_lo_up(errfd);
		child_mounts(errfd, s, &f);
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
	if (userns && userns_setup(s, p, go[1], err) < 0) {
		syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0);
		siginfo_t si;
		waitid(P_PIDFD, (id_t)pfd, &si, WEXITED);
		close(pfd);
		close(go[1]);
		close(ep[0]);
		return cells_err_prefix(err, "user namespace");
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
		/* the user namespace first (setns does it first from a pidfd): the others
		 * are owned by it */
		CHECK(setns(vp_pidfd, CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWUTS |
					  CLONE_NEWIPC | CLONE_NEWCGROUP |
					  (c->id_base ? CLONE_NEWUSER : 0)),
		      "join the VP's namespaces", NULL);
		if (c->id_base)
			child_userns_root(errfd);
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
