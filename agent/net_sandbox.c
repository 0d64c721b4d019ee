/* net_sandbox.c - the seccomp allowlist of cellsd-net (see net_sandbox.h). */
#include "net_sandbox.h"
#include "cleanup.h"

#include <errno.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <seccomp.h>

static const char *const allowed[] = {
    /* I/O and the event loop */
    "read", "write", "readv", "writev", "pread64", "close", "lseek", "fcntl", "ioctl", "poll",
    "ppoll", "select", "pselect6", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait",
    "eventfd2", "pipe2", "dup", "dup3",
    /* sockets: TCP to the MDM, the socketpair to cellsd, the resolver */
    "socket", "connect", "getsockopt", "setsockopt", "getsockname", "getpeername", "sendto",
    "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "shutdown", "bind",
    /* files the resolver and OpenSSL read (/etc/hosts, openssl.cnf) */
    "openat", "newfstatat", "fstat", "stat", "lstat", "access", "faccessat", "faccessat2",
    "readlink", "getdents64", "statx", "uname",
    /* memory, time, randomness, threads' basics */
    "mmap", "munmap", "mprotect", "mremap", "madvise", "brk", "clock_gettime", "gettimeofday",
    "time", "clock_nanosleep", "nanosleep", "getrandom", "futex", "sched_yield", "getpid", "gettid",
    "getuid", "geteuid", "getgid", "getegid", "prlimit64", "getrlimit", "sysinfo", "rt_sigaction",
    "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "restart_syscall", "exit", "exit_group",
    "tgkill", "set_robust_list", "rseq", "sched_getaffinity", "prctl"};

int net_sandbox_apply(cells_err_t *err)
{
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return cells_err_sys(err, errno, "no_new_privs");
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
	if (!ctx)
		return cells_err_set(err, ENOMEM, "seccomp_init");
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(allowed); i++) {
		int nr = seccomp_syscall_resolve_name(allowed[i]);
		if (nr == __NR_SCMP_ERROR)
			continue; /* not on this architecture */
		if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) < 0) {
			seccomp_release(ctx);
			return cells_err_set(err, EINVAL, "seccomp rule %s", allowed[i]);
		}
	}
	int r = seccomp_load(ctx);
	seccomp_release(ctx);
	if (r < 0)
		return cells_err_sys(err, -r, "seccomp_load");
	return 0;
}
