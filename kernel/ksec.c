/* ksec.c - seccomp filter, capability set, SELinux context for VPs (see ksec.h). */
#include "ksec.h"
#include "cleanup.h"

#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <selinux/context.h>
#include <selinux/selinux.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const denied[] = {
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "unshare",
    "setns",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "open_by_handle_at",
    "name_to_handle_at",
    "perf_event_open",
    "reboot",
    "swapon",
    "swapoff",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "acct",
    "quotactl",
    "lookup_dcookie",
    "userfaultfd",
    "iopl",
    "ioperm",
    "syslog",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "vhangup",
    "nfsservctl",
    "uselib",
    "process_vm_writev",
    "fanotify_init",
    "pidfd_getfd",
};

int ksec_filter_build(struct sock_fprog *prog, cells_err_t *err)
{
	memset(prog, 0, sizeof *prog);
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (!ctx)
		return cells_err_set(err, ENOMEM, "seccomp_init");
	int rc = 0;
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(denied) && rc == 0; i++) {
		int nr = seccomp_syscall_resolve_name(denied[i]);
		if (nr == __NR_SCMP_ERROR)
			continue; /* not on this architecture */
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
	}
	/* device nodes: mknod(path, mode, dev) / mknodat(fd, path, mode, dev) with a
	 * character or block type */
	const unsigned types[] = {S_IFCHR, S_IFBLK};
	for (size_t i = 0; i < 2 && rc == 0; i++) {
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(mknod), 1,
				      SCMP_A1(SCMP_CMP_MASKED_EQ, S_IFMT, types[i]));
		if (rc == 0)
			rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(mknodat), 1,
					      SCMP_A2(SCMP_CMP_MASKED_EQ, S_IFMT, types[i]));
	}
	/* clone with namespace flags */
	const unsigned long nsflags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |
				      CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP;
	unsigned long f = nsflags;
	for (unsigned long bit = 1; bit && rc == 0; bit <<= 1)
		if (f & bit)
			rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
					      SCMP_A0(SCMP_CMP_MASKED_EQ, bit, bit));
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	/* ioctl TIOCSTI (inject input into a terminal) */
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
				      SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, 0x5412u));
	if (rc < 0) {
		seccomp_release(ctx);
		return cells_err_sys(err, -rc, "seccomp rule");
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
	if (len <= 0 || len % (off_t)sizeof(struct sock_filter) || len > 65536)
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
