/* ksec.c - seccomp filter, capability set, SELinux context for VPs (see ksec.h). */
#include "ksec.h"
#include "cleanup.h"

#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <selinux/context.h>
#include <selinux/selinux.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* The VP seccomp allowlist, after Docker's default profile (moby
 * profiles/seccomp/default.json) without its capability-gated entries: whatever is not
 * here fails with EPERM. One name per syscall; a name this architecture does not have
 * (x86-64 "open", "fork", ...; aarch64 has only the *at forms) is skipped. The syscalls
 * with argument filters (clone, ioctl, mknod, personality, socket) are below, not here.
 * Deliberately absent: mount and the new mount API, pivot_root, unshare, setns,
 * keyctl/add_key/request_key, bpf, perf_event_open, kexec_*, *_module, reboot,
 * swapon/off, acct, quotactl, open_by_handle_at/name_to_handle_at, iopl/ioperm,
 * modify_ldt, syslog, the clock setters, io_uring_*, userfaultfd, kcmp,
 * process_vm_readv/writev, pidfd_getfd, fanotify_init, lookup_dcookie, vhangup,
 * memfd_secret, the NUMA policy calls (mbind, set_mempolicy, migrate_pages,
 * move_pages), sethostname/setdomainname (the VP's hostname is set before the
 * filter), uselib, nfsservctl. (Not clang-formatted: one line per group.) */
/* clang-format off */
static const char *const allowed[] = {
	/* files and directories */
	"open", "openat", "openat2", "creat", "close", "close_range", "read", "write", "readv",
	"writev", "pread64", "pwrite64", "preadv", "preadv2", "pwritev", "pwritev2", "lseek",
	"_llseek", "dup", "dup2", "dup3", "fcntl", "fcntl64", "flock", "fsync", "fdatasync", "sync",
	"syncfs", "sync_file_range", "truncate", "truncate64", "ftruncate", "ftruncate64",
	"fallocate", "fadvise64", "fadvise64_64", "readahead", "sendfile", "sendfile64", "splice",
	"tee", "vmsplice", "copy_file_range", "stat", "stat64", "lstat", "lstat64", "fstat",
	"fstat64", "newfstatat", "fstatat64", "statx", "statfs", "statfs64", "fstatfs", "fstatfs64",
	"access", "faccessat", "faccessat2", "getdents", "getdents64", "chroot", "getcwd", "chdir",
	"fchdir", "mkdir", "mkdirat", "rmdir", "rename", "renameat", "renameat2", "link", "linkat",
	"unlink", "unlinkat", "symlink", "symlinkat", "readlink", "readlinkat", "chmod", "fchmod",
	"fchmodat", "fchmodat2", "chown", "chown32", "fchown", "fchown32", "fchownat", "lchown",
	"lchown32", "umask", "utime", "utimes", "utimensat", "utimensat_time64", "futimesat",
	"setxattr", "lsetxattr", "fsetxattr", "getxattr", "lgetxattr", "fgetxattr", "listxattr",
	"llistxattr", "flistxattr", "removexattr", "lremovexattr", "fremovexattr", "inotify_init",
	"inotify_init1", "inotify_add_watch", "inotify_rm_watch", "fanotify_mark", "cachestat",
	/* polling and event descriptors */
	"select", "_newselect", "pselect6", "pselect6_time64", "poll", "ppoll", "ppoll_time64",
	"epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2",
	"eventfd", "eventfd2", "signalfd", "signalfd4", "timerfd_create", "timerfd_settime",
	"timerfd_settime64", "timerfd_gettime", "timerfd_gettime64", "pipe", "pipe2",
	/* asynchronous I/O (not io_uring) */
	"io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents",
	"io_pgetevents_time64", "ioprio_get", "ioprio_set",
	/* memory */
	"brk", "mmap", "mmap2", "munmap", "mremap", "mprotect", "madvise", "mincore", "msync",
	"mlock", "mlock2", "munlock", "mlockall", "munlockall", "remap_file_pages", "memfd_create",
	"membarrier", "pkey_alloc", "pkey_free", "pkey_mprotect", "map_shadow_stack", "mseal",
	"process_mrelease",
	/* System V and POSIX IPC (the VP's own IPC namespace) */
	"shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semtimedop_time64",
	"semctl", "msgget", "msgsnd", "msgrcv", "msgctl", "mq_open", "mq_unlink", "mq_timedsend",
	"mq_timedsend_time64", "mq_timedreceive", "mq_timedreceive_time64", "mq_notify",
	"mq_getsetattr",
	/* signals */
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigreturn", "rt_sigpending",
	"rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_sigqueueinfo",
	"rt_tgsigqueueinfo", "sigaltstack", "sigprocmask", "kill", "tkill", "tgkill", "pause",
	"pidfd_open", "pidfd_send_signal",
	/* time and timers (reading only: no clock setters) */
	"time", "gettimeofday", "clock_gettime", "clock_gettime64", "clock_getres",
	"clock_getres_time64", "clock_nanosleep", "clock_nanosleep_time64", "nanosleep", "alarm",
	"getitimer", "setitimer", "timer_create", "timer_settime", "timer_settime64",
	"timer_gettime", "timer_gettime64", "timer_getoverrun", "timer_delete", "times",
	/* processes and threads (clone: flag filter below; clone3: ENOSYS below) */
	"fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid", "waitpid",
	"set_tid_address", "set_robust_list", "get_robust_list", "rseq", "futex", "futex_time64",
	"futex_waitv", "futex_wake", "futex_wait", "futex_requeue", "arch_prctl", "set_thread_area",
	"get_thread_area", "prctl", "ptrace", "seccomp", "restart_syscall", "getpid", "getppid",
	"gettid", "getpgid", "setpgid", "getpgrp", "getsid", "setsid", "getpriority", "setpriority",
	"sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getparam", "sched_setparam",
	"sched_getscheduler", "sched_setscheduler", "sched_getattr", "sched_setattr",
	"sched_get_priority_max", "sched_get_priority_min", "sched_rr_get_interval",
	"sched_rr_get_interval_time64", "getrlimit", "ugetrlimit", "setrlimit", "prlimit64",
	"getrusage", "getcpu", "landlock_create_ruleset", "landlock_add_rule",
	"landlock_restrict_self",
	/* credentials (inside the VP's own capability set) */
	"getuid", "getuid32", "geteuid", "geteuid32", "getgid", "getgid32", "getegid", "getegid32",
	"getresuid", "getresuid32", "getresgid", "getresgid32", "getgroups", "getgroups32",
	"setuid", "setuid32", "setgid", "setgid32", "setreuid", "setreuid32", "setregid",
	"setregid32", "setresuid", "setresuid32", "setresgid", "setresgid32", "setfsuid",
	"setfsuid32", "setfsgid", "setfsgid32", "setgroups", "setgroups32", "capget", "capset",
	/* sockets (socket: family filter below) */
	"socketpair", "bind", "listen", "accept", "accept4", "connect", "shutdown", "getsockname",
	"getpeername", "getsockopt", "setsockopt", "send", "sendto", "sendmsg", "sendmmsg", "recv",
	"recvfrom", "recvmsg", "recvmmsg", "recvmmsg_time64",
	/* system information */
	"uname", "sysinfo", "getrandom",
};
/* clang-format on */

/* Syscalls newer than some libseccomp releases know by name, with their number, which
 * is the same on every architecture from 5.1 on (the unified table from 424). Used only
 * when the name does not resolve. */
static const struct {
	const char *name;
	int nr;
} allowed_new[] = {
    {"cachestat", 451},	 {"fchmodat2", 452},  {"map_shadow_stack", 453},
    {"futex_wake", 454}, {"futex_wait", 455}, {"futex_requeue", 456},
    {"mseal", 462},
};

/* Address families a VP may open: local, IP, netlink (ip, ifconfig), packet (ping,
 * DHCP with CAP_NET_RAW). The others (AF_VSOCK, which is not namespaced, AF_ALG,
 * AF_BLUETOOTH, ...) fail with EPERM. */
static const int allowed_af[] = {AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, AF_PACKET};

/* personality: Linux or 32-bit Linux, and the query; never READ_IMPLIES_EXEC,
 * ADDR_NO_RANDOMIZE, ... */
static const unsigned allowed_persona[] = {PER_LINUX, PER_LINUX32, 0xffffffffu};

/* ioctl: everything but TIOCSTI (push input into a terminal) and TIOCLINUX. */
static const unsigned denied_ioctl[] = {TIOCSTI, TIOCLINUX};

/* mknod/mknodat: files, FIFOs and sockets; not character or block devices. */
static const unsigned allowed_node[] = {0, S_IFREG, S_IFIFO, S_IFSOCK};

/* The filter being built: for one architecture only (the native one in cellsd; another
 * one in the tests). */
struct fbuild {
	scmp_filter_ctx ctx;
	uint32_t arch;
};

/* The number of name on arch, __NR_SCMP_ERROR when it has none. */
static int resolve(uint32_t arch, const char *name)
{
	int nr = seccomp_syscall_resolve_name_arch(arch, name);
	if (nr < 0) /* unknown, or a pseudo number: not on this architecture */
		nr = __NR_SCMP_ERROR;
	if (nr == __NR_SCMP_ERROR)
		for (size_t j = 0; j < CELLS_ARRAY_SIZE(allowed_new); j++)
			if (!strcmp(allowed_new[j].name, name))
				nr = allowed_new[j].nr;
	return nr;
}

/* A rule for name when b's architecture has it. libseccomp takes the native number and
 * translates it to the filter's architecture (the same one, except in the tests). */
static int rule(const struct fbuild *b, uint32_t action, const char *name, unsigned n,
		const struct scmp_arg_cmp *cmp, cells_err_t *err)
{
	int nr = resolve(seccomp_arch_native(), name);
	if (resolve(b->arch, name) == __NR_SCMP_ERROR || nr == __NR_SCMP_ERROR)
		return 0; /* not on this architecture */
	if (b->arch != seccomp_arch_native() && seccomp_syscall_resolve_name(name) < 0)
		return 0; /* a number libseccomp does not know cannot be translated */
	int rc = seccomp_rule_add_array(b->ctx, action, nr, n, cmp);
	if (rc < 0)
		return cells_err_sys(err, -rc, "seccomp rule for %s", name);
	return 0;
}

static int allow_masked(const struct fbuild *b, const char *name, unsigned arg, uint64_t mask,
			uint64_t value, cells_err_t *err)
{
	struct scmp_arg_cmp c = {
	    .arg = arg, .op = SCMP_CMP_MASKED_EQ, .datum_a = mask, .datum_b = value};
	return rule(b, SCMP_ACT_ALLOW, name, 1, &c, err);
}

/* Allow name when its argument arg (all 64 bits) lies in [lo, hi]: one masked equality
 * per aligned block (a rule takes one comparison per argument). */
static int allow_range(const struct fbuild *b, const char *name, unsigned arg, uint64_t lo,
		       uint64_t hi, cells_err_t *err)
{
	while (lo <= hi) {
		uint64_t size = lo ? lo & -lo : UINT64_C(1) << 63;
		while (size > 1 && lo + size - 1 > hi)
			size >>= 1;
		if (allow_masked(b, name, arg, ~(size - 1), lo, err) < 0)
			return -1;
		if (lo + size - 1 == hi)
			break;
		lo += size;
	}
	return 0;
}

/* ioctl's request is an unsigned int to the kernel, which drops the upper half: allow
 * requests whose upper half is zero (or the sign extension of a negative int, as musl
 * passes them) and whose lower half is not denied. */
static int allow_ioctl(const struct fbuild *b, cells_err_t *err)
{
	uint64_t from = 0;
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(denied_ioctl); i++) {
		if (denied_ioctl[i] > from &&
		    allow_range(b, "ioctl", 1, from, denied_ioctl[i] - 1, err) < 0)
			return -1;
		from = (uint64_t)denied_ioctl[i] + 1;
	}
	if (allow_range(b, "ioctl", 1, from, UINT32_MAX, err) < 0)
		return -1;
	return allow_range(b, "ioctl", 1, UINT64_C(0xffffffff80000000), UINT64_MAX, err);
}

static int build_rules(const struct fbuild *b, cells_err_t *err)
{
	/* only this ABI: x32 (x86-64 numbers with bit 30), i386 and arm compat calls get
	 * ENOSYS from the bad-architecture action */
	int rc = seccomp_attr_set(b->ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_ERRNO(ENOSYS));
	if (rc < 0)
		return cells_err_sys(err, -rc, "seccomp bad-architecture action");
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(allowed); i++)
		if (rule(b, SCMP_ACT_ALLOW, allowed[i], 0, NULL, err) < 0)
			return -1;
	/* clone without namespace flags; clone3 (whose flags sit in memory, out of a
	 * filter's reach) fails with ENOSYS so that libc falls back to clone */
	const uint64_t nsflags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |
				 CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP;
	if (allow_masked(b, "clone", 0, nsflags, 0, err) < 0 ||
	    rule(b, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL, err) < 0)
		return -1;
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(allowed_af); i++)
		if (allow_masked(b, "socket", 0, UINT32_MAX, (uint64_t)allowed_af[i], err) < 0)
			return -1;
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(allowed_persona); i++)
		if (allow_masked(b, "personality", 0, UINT32_MAX, allowed_persona[i], err) < 0)
			return -1;
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(allowed_node); i++)
		if (allow_masked(b, "mknod", 1, S_IFMT, allowed_node[i], err) < 0 ||
		    allow_masked(b, "mknodat", 2, S_IFMT, allowed_node[i], err) < 0)
			return -1;
	return allow_ioctl(b, err);
}

size_t ksec_allowlist_count(uint32_t arch)
{
	size_t n = 0;
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(allowed); i++)
		n += resolve(arch ? arch : seccomp_arch_native(), allowed[i]) != __NR_SCMP_ERROR;
	return n;
}

int ksec_filter_build(struct sock_fprog *prog, cells_err_t *err)
{
	return ksec_filter_build_arch(0, prog, err);
}

int ksec_filter_build_arch(uint32_t arch, struct sock_fprog *prog, cells_err_t *err)
{
	memset(prog, 0, sizeof *prog);
	struct fbuild b = {.ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM)),
			   .arch = arch ? arch : seccomp_arch_native()};
	if (!b.ctx)
		return cells_err_set(err, ENOMEM, "seccomp_init");
	int rc = 0;
	if (b.arch != seccomp_arch_native()) {
		rc = seccomp_arch_add(b.ctx, b.arch);
		if (rc == 0)
			rc = seccomp_arch_remove(b.ctx, SCMP_ARCH_NATIVE);
		if (rc < 0) {
			seccomp_release(b.ctx);
			return cells_err_sys(err, -rc, "seccomp architecture %#x",
					     (unsigned)b.arch);
		}
	}
	scmp_filter_ctx ctx = b.ctx;
	if (build_rules(&b, err) < 0) {
		seccomp_release(ctx);
		return -1;
	}
	cleanup_close int fd = memfd_create("cells-seccomp", MFD_CLOEXEC);
	if (fd < 0) {
		seccomp_release(ctx);
		return cells_err_sys(err, errno, "memfd_create");
	}
	rc = seccomp_export_bpf(ctx, fd);
	seccomp_release(ctx);
	if (rc < 0)
		return cells_err_sys(err, -rc, "seccomp_export_bpf");
	off_t len = lseek(fd, 0, SEEK_END);
	if (len <= 0 || len % (off_t)sizeof(struct sock_filter) ||
	    len > BPF_MAXINSNS * (off_t)sizeof(struct sock_filter))
		return cells_err_set(err, EINVAL, "seccomp program of %lld bytes", (long long)len);
	struct sock_filter *f2 = malloc((size_t)len);
	if (!f2)
		return cells_err_set(err, ENOMEM, "seccomp program");
	if (pread(fd, f2, (size_t)len, 0) != len) {
		free(f2);
		return cells_err_sys(err, errno, "read seccomp program");
	}
	prog->filter = f2;
	prog->len = (unsigned short)(len / (off_t)sizeof(struct sock_filter));
	return 0;
}

void ksec_filter_free(struct sock_fprog *prog)
{
	free(prog->filter);
	prog->filter = NULL;
	prog->len = 0;
}

uint64_t ksec_caps_keep(void)
{
	static const char *const keep[] = {
	    "cap_chown",   "cap_dac_override", "cap_fsetid",  "cap_fowner",
	    "cap_setgid",  "cap_setuid",       "cap_setpcap", "cap_net_bind_service",
	    "cap_net_raw", "cap_sys_chroot",   "cap_kill",    "cap_audit_write",
	    "cap_setfcap",
	};
	uint64_t m = 0;
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(keep); i++) {
		cap_value_t v;
		if (cap_from_name(keep[i], &v) == 0 && v >= 0 && v < 64)
			m |= 1ull << v;
	}
	/* never any of these, whatever the list above says */
	const cap_value_t never[] = {CAP_SYS_ADMIN,  CAP_MKNOD,	   CAP_SYS_MODULE, CAP_SYS_RAWIO,
				     CAP_SYS_PTRACE, CAP_SYS_TIME, CAP_SYS_BOOT,   CAP_NET_ADMIN};
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(never); i++)
		m &= ~(1ull << never[i]);
	return m;
}

int ksec_cap_last(void)
{
	cleanup_file FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
	int v = 40;
	if (!f || fscanf(f, "%d", &v) != 1)
		v = (int)cap_max_bits() - 1;
	return v < 63 ? v : 63;
}

int ksec_selinux_context(unsigned category, char *buf, size_t n, cells_err_t *err)
{
	if (is_selinux_enabled() <= 0)
		return 0;
	char *cur = NULL;
	if (getcon(&cur) < 0)
		return cells_err_sys(err, errno, "selinux getcon");
	context_t c = context_new(cur);
	freecon(cur);
	if (!c)
		return cells_err_sys(err, errno, "selinux context_new");
	char range[32];
	snprintf(range, sizeof range, "s0:c%u", category % 1024);
	int rc = 1;
	if (context_range_set(c, range) < 0)
		rc = cells_err_sys(err, errno, "selinux context_range_set");
	else if (snprintf(buf, n, "%s", context_str(c)) >= (int)n)
		rc = cells_err_set(err, ENAMETOOLONG, "selinux context too long");
	context_free(c);
	return rc;
}
