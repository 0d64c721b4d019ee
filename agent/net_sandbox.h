/* net_sandbox.h - cellsd-net's own confinement: a seccomp allowlist (libseccomp) of the
 * system calls TLS websockets need, installed before any network byte is read. The
 * namespaces, the unprivileged uid and no_new_privs are set up by cellsd before exec
 * (agent/mgmt.c); net_sandbox_apply() also checks them. */
#ifndef CELLS_NET_SANDBOX_H
#define CELLS_NET_SANDBOX_H

#include "err.h"

int net_sandbox_apply(cells_err_t *err);

#endif
