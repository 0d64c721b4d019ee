/* ctl_io.h - framing of the local control protocol (proto/control.proto): a 4-byte
 * big-endian length, then the message; file descriptors ride on the first byte with
 * SCM_RIGHTS. Shared by cellctl (client) and cellsd (server). */
#ifndef CELLS_CTL_IO_H
#define CELLS_CTL_IO_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "wire.h"

#define CTL_MAX_FDS 4

/* Send one frame with up to CTL_MAX_FDS fds (borrowed). Blocking. */
int ctl_send_frame(int sock, const uint8_t *p, size_t n, const int *fds, size_t nfds,
		   cells_err_t *err);
/* Receive one whole frame of at most max bytes (blocking). *out is owned by the caller;
 * received fds are stored in fds (owned by the caller, O_CLOEXEC). */
int ctl_recv_frame(int sock, size_t max, uint8_t **out, size_t *n, int *fds, size_t *nfds,
		   cells_err_t *err);

/* Client side: connect to RUN_DIR/control.sock. */
int ctl_connect(const char *run_dir, cells_err_t *err);
/* Client side: send a request and wait for its response (owned by the caller). */
int ctl_call(int sock, Cells__Ctl__V1__CtlRequest *req, const int *fds, size_t nfds,
	     Cells__Ctl__V1__CtlResponse **resp, cells_err_t *err);

#endif
