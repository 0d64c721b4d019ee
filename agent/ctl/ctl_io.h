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

/* Server side: one request frame read from a non-blocking socket in pieces, as bytes
 * arrive (cellsd's event loop never waits for a peer). Only the bytes of the current
 * frame are read, so the fds of a following frame stay with it. */
struct ctl_rx {
	uint8_t hdr[4];
	size_t got;	      /* bytes of this frame received so far (header included) */
	size_t len;	      /* the body's length, once the header is in (got >= 4) */
	uint8_t *body;	      /* owned */
	int fds[CTL_MAX_FDS]; /* owned, O_CLOEXEC; received with any byte of this frame */
	size_t nfds;
};
/* Read what the socket holds of the current frame. Returns 1 when the frame is complete
 * (rx->body holds rx->len bytes), 0 when the socket has nothing more now (EAGAIN), -1
 * with err: ECONNRESET when the peer closed (err says after how many bytes), EMSGSIZE
 * when the header announces more than max (rx->len says how much), EBADMSG for more
 * than CTL_MAX_FDS fds, or the socket's errno. */
int ctl_rx_read(struct ctl_rx *rx, int sock, size_t max, cells_err_t *err);
/* Forget the frame: free the body, close the fds not taken. rx is ready for the next. */
void ctl_rx_reset(struct ctl_rx *rx);

/* Client side: connect to RUN_DIR/control.sock. */
int ctl_connect(const char *run_dir, cells_err_t *err);
/* Client side: send a request and wait for its response (owned by the caller). */
int ctl_call(int sock, Cells__Ctl__V1__CtlRequest *req, const int *fds, size_t nfds,
	     Cells__Ctl__V1__CtlResponse **resp, cells_err_t *err);

#endif
