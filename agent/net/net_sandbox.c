/* net_sandbox.c - the confinement of cellsd-net (see net_sandbox.h). */
#include "net_sandbox.h"
#include "cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <seccomp.h>

static const char *const allowed[] = {
    /* I/O and the event loop */
    "read", "write", "readv", "writev", "pread64", "close", "lseek", "fcntl", "ioctl", "poll",
    "ppoll", "select", "pselect6", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait",
    "eventfd2", "pipe2", "dup", "dup3",
    /* sockets (socket() itself is filtered by family below): TCP to the MDM, the
     * socketpair to cellsd, the resolver */
    "connect", "getsockopt", "setsockopt", "getsockname", "getpeername", "sendto", "recvfrom",
    "sendmsg", "recvmsg", "sendmmsg", "shutdown", "bind",
    /* the resolver's files (the only ones in its view) */
    "openat", "newfstatat", "fstat", "stat", "lstat", "access", "faccessat", "faccessat2",
    "readlink", "getdents64", "statx", "uname",
    /* memory, time, randomness, threads' basics */
    "mmap", "munmap", "mprotect", "mremap", "madvise", "brk", "clock_gettime", "gettimeofday",
    "time", "clock_nanosleep", "nanosleep", "getrandom", "futex", "sched_yield", "getpid", "gettid",
    "getuid", "geteuid", "getgid", "getegid", "prlimit64", "getrlimit", "sysinfo", "rt_sigaction",
    "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "restart_syscall", "exit", "exit_group",
    "tgkill", "set_robust_list", "rseq", "sched_getaffinity"};

/* The resolver's files, bound read-only into the empty root when they exist. */
static const char *const etc_files[] = {"hosts", "resolv.conf", "nsswitch.conf", "gai.conf",
					"host.conf"};

static int write_file(const char *path, const char *s, cells_err_t *err)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return cells_err_sys(err, errno, "%s", path);
	ssize_t n = write(fd, s, strlen(s));
	int e = errno;
	close(fd);
	if (n != (ssize_t)strlen(s))
		return cells_err_sys(err, n < 0 ? e : EIO, "%s", path);
	return 0;
}

/* A user+mount namespace of our own (our uid as its root), then pivot_root into an empty
 * tmpfs holding only the resolver's files; the host's tree is detached. */
static int fs_empty(cells_err_t *err)
{
	char map[64];
	uid_t uid = getuid();
	gid_t gid = getgid();
	if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
		return cells_err_sys(err, errno, "unshare user+mount namespace");
	snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
	if (write_file("/proc/self/setgroups", "deny", err) < 0 ||
	    write_file("/proc/self/uid_map", map, err) < 0)
		return -1;
	snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
	if (write_file("/proc/self/gid_map", map, err) < 0)
		return -1;
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return cells_err_sys(err, errno, "make / private");
	if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  "mode=0755,size=64k") < 0)
		return cells_err_sys(err, errno, "mount the empty root");
	if (mkdir("/tmp/etc", 0755) < 0)
		return cells_err_sys(err, errno, "mkdir etc");
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(etc_files); i++) {
		char src[64], dst[64];
		snprintf(src, sizeof src, "/etc/%s", etc_files[i]);
		snprintf(dst, sizeof dst, "/tmp/etc/%s", etc_files[i]);
		if (access(src, R_OK) < 0)
			continue;
		int fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0)
			return cells_err_sys(err, errno, "create %s", dst);
		close(fd);
		if (mount(src, dst, NULL, MS_BIND, NULL) < 0)
			return cells_err_sys(err, errno, "bind %s", src);
		/* best effort: the host's file is not ours to write anyway */
		(void)mount(NULL, dst, NULL,
			    MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
			    NULL);
	}
	if (chdir("/tmp") < 0)
		return cells_err_sys(err, errno, "chdir to the empty root");
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		return cells_err_sys(err, errno, "pivot_root");
	if (umount2(".", MNT_DETACH) < 0)
		return cells_err_sys(err, errno, "detach the host's tree");
	if (chdir("/") < 0)
		return cells_err_sys(err, errno, "chdir /");
	if (mount(NULL, "/", NULL,
		  MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		return cells_err_sys(err, errno, "remount the root read-only");
	return 0;
}

/* No capability left, not even in our own user namespace. */
static int drop_caps(cells_err_t *err)
{
	for (int cap = 0; cap <= 63; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
			return cells_err_sys(err, errno, "drop capability %d", cap);
	(void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2];
	memset(d, 0, sizeof d);
	if (syscall(SYS_capset, &h, d) < 0)
		return cells_err_sys(err, errno, "capset");
	return 0;
}

static int add(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned n,
	       const struct scmp_arg_cmp *cmp, cells_err_t *err)
{
	int nr = seccomp_syscall_resolve_name(name);
	if (nr == __NR_SCMP_ERROR)
		return 0; /* not on this architecture */
	if (seccomp_rule_add_array(ctx, action, nr, n, cmp) < 0)
		return cells_err_set(err, EINVAL, "seccomp rule %s", name);
	return 0;
}

static int load_seccomp(cells_err_t *err)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
	if (!ctx)
		return cells_err_set(err, ENOMEM, "seccomp_init");
	int r = 0;
	for (size_t i = 0; r == 0 && i < CELLS_ARRAY_SIZE(allowed); i++)
		r = add(ctx, SCMP_ACT_ALLOW, allowed[i], 0, NULL, err);
	static const int ok_af[] = {AF_INET, AF_INET6};
	static const int probed_af[] = {AF_UNIX, AF_NETLINK};
	for (size_t i = 0; r == 0 && i < CELLS_ARRAY_SIZE(ok_af); i++) {
		struct scmp_arg_cmp c = {
		    .arg = 0, .op = SCMP_CMP_EQ, .datum_a = (scmp_datum_t)ok_af[i], .datum_b = 0};
		r = add(ctx, SCMP_ACT_ALLOW, "socket", 1, &c, err);
	}
	for (size_t i = 0; r == 0 && i < CELLS_ARRAY_SIZE(probed_af); i++) {
		struct scmp_arg_cmp c = {.arg = 0,
					 .op = SCMP_CMP_EQ,
					 .datum_a = (scmp_datum_t)probed_af[i],
					 .datum_b = 0};
		r = add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), "socket", 1, &c, err);
	}
	static const int ok_prctl[] = {PR_SET_NAME, PR_GET_NAME, PR_GET_DUMPABLE};
	for (size_t i = 0; r == 0 && i < CELLS_ARRAY_SIZE(ok_prctl); i++) {
		struct scmp_arg_cmp c = {.arg = 0,
					 .op = SCMP_CMP_EQ,
					 .datum_a = (scmp_datum_t)ok_prctl[i],
					 .datum_b = 0};
		r = add(ctx, SCMP_ACT_ALLOW, "prctl", 1, &c, err);
	}
	if (r == 0) {
		int l = seccomp_load(ctx);
		if (l < 0)
			r = cells_err_sys(err, -l, "seccomp_load");
	}
	seccomp_release(ctx);
	return r;
}

int net_sandbox_apply(cells_err_t *err)
{
	if (getuid() == 0 || geteuid() == 0)
		return cells_err_set(err, EPERM, "running as root");
	if (fs_empty(err) < 0 || drop_caps(err) < 0)
		return -1;
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return cells_err_sys(err, errno, "not dumpable");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return cells_err_sys(err, errno, "no_new_privs");
	return load_seccomp(err);
}
