/* ksec.h - the confinement a VP's processes get before exec: a seccomp filter built
 * with libseccomp (exported to a classic BPF program once, in the parent, so the child
 * between clone and exec only calls prctl), the capability set computed with libcap,
 * and the SELinux context (libselinux; logged once when SELinux is disabled). */
#ifndef CELLS_KSEC_H
#define CELLS_KSEC_H

#include <linux/filter.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* The VP seccomp filter: an allowlist after Docker's default profile (ksec.c, one table
 * with a comment per group); anything else fails with EPERM. Argument filters: clone
 * without namespace flags, socket for AF_UNIX/INET/INET6/NETLINK/PACKET only,
 * personality PER_LINUX/PER_LINUX32/query only, mknod(at) of no device node, ioctl
 * except TIOCSTI/TIOCLINUX. clone3 fails with ENOSYS (so libc falls back to clone,
 * whose flags can be checked). Only the native ABI: x32, i386 and arm compat calls
 * fail with ENOSYS. *prog is owned (ksec_filter_free). */
int ksec_filter_build(struct sock_fprog *prog, cells_err_t *err);
/* The same filter for another architecture (an SCMP_ARCH_* token, 0: native), for the
 * tests: a phone is aarch64, CI is x86-64. */
int ksec_filter_build_arch(uint32_t arch, struct sock_fprog *prog, cells_err_t *err);
/* How many names of the allowlist table exist on arch (0: native). */
size_t ksec_allowlist_count(uint32_t arch);
void ksec_filter_free(struct sock_fprog *prog);

/* Capabilities a VP keeps (bitmask of CAP_*): a container-default set without
 * CAP_SYS_ADMIN, CAP_MKNOD, CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SYS_PTRACE,
 * CAP_SYS_TIME, CAP_SYS_BOOT, CAP_NET_ADMIN, ... Checked against libcap's names. */
uint64_t ksec_caps_keep(void);
/* The highest capability number of this kernel. */
int ksec_cap_last(void);

/* SELinux: when enabled, the context for VP number `category` (a distinct MCS
 * category c<category>) derived from the current context, into buf; returns 1. When
 * disabled returns 0 (and logs once via the callback). -1 on error. */
int ksec_selinux_context(unsigned category, char *buf, size_t n, cells_err_t *err);

#endif
