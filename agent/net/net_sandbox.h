/* net_sandbox.h - cellsd-net's own confinement, applied once it has loaded what it needs
 * and before any network byte is read:
 *  - an empty filesystem view: a user+mount namespace of its own, pivot_root into an
 *    empty read-only tmpfs that holds only the resolver's files (/etc/hosts,
 *    resolv.conf, nsswitch.conf, gai.conf, host.conf: read-only binds);
 *  - no capabilities at all (bounding, effective, permitted, inheritable, ambient), also
 *    in that user namespace; not dumpable; no_new_privs;
 *  - a seccomp allowlist (libseccomp) of the system calls TLS websockets need, with
 *    argument filters: socket() only for AF_INET/AF_INET6 (AF_UNIX/AF_NETLINK, which
 *    the resolver probes, fail with EAFNOSUPPORT; anything else kills), prctl() only
 *    for reading/setting its name.
 * cellsd starts it (kernel/kspawn.c ksp_spawn_helper) with its own uid, an empty bounding
 * set, a clean environment, only its fds, in own mount/IPC/UTS namespaces. */
#ifndef CELLS_NET_SANDBOX_H
#define CELLS_NET_SANDBOX_H

#include "err.h"

int net_sandbox_apply(cells_err_t *err);

#endif
