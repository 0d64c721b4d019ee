#include "ctl_io.h"
#include "cleanup.h"
#include "util.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int ctl_send_frame(int sock, const uint8_t *p, size_t n, const int *fds, size_t nfds,
		   cells_err_t *err)
{
	if (nfds > CTL_MAX_FDS)
		return cells_err_set(err, EINVAL, "too many fds");
	uint8_t hdr[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
	struct iovec iov[2] = {{hdr, 4}, {(void *)p, n}};
	union {
		char buf[CMSG_SPACE(sizeof(int) * CTL_MAX_FDS)];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
	if (nfds) {
		memset(&u, 0, sizeof u);
		msg.msg_control = u.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	ssize_t w;
	do
		w = sendmsg(sock, &msg, MSG_NOSIGNAL);
	while (w < 0 && errno == EINTR);
	if (w < 0)
		return cells_err_sys(err, errno, "send");
	size_t sent = (size_t)w;
	if (sent < 4 + n) {
		/* the rest without fds */
		size_t off = sent;
		while (off < 4 + n) {
			const uint8_t *src = off < 4 ? hdr + off : p + (off - 4);
			size_t len = off < 4 ? 4 - off : n - (off - 4);
			ssize_t r = send(sock, src, len, MSG_NOSIGNAL);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return cells_err_sys(err, errno, "send");
			off += (size_t)r;
		}
	}
	return 0;
}

static int recv_all(int sock, uint8_t *p, size_t n, int *fds, size_t *nfds, cells_err_t *err)
{
	size_t off = 0;
	while (off < n) {
		union {
			char buf[CMSG_SPACE(sizeof(int) * CTL_MAX_FDS)];
			struct cmsghdr align;
		} u;
		struct iovec iov = {p + off, n - off};
		struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
		if (fds) {
			msg.msg_control = u.buf;
			msg.msg_controllen = sizeof u.buf;
		}
		ssize_t r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return cells_err_sys(err, errno, "receive");
		if (r == 0)
			return cells_err_set(err, ECONNRESET, "connection closed");
		if (fds) {
			for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
				if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
					continue;
				size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
				int tmp[CTL_MAX_FDS];
				memcpy(tmp, CMSG_DATA(c), k * sizeof(int));
				for (size_t i = 0; i < k; i++) {
					if (*nfds < CTL_MAX_FDS)
						fds[(*nfds)++] = tmp[i];
					else
						close(tmp[i]);
				}
			}
			if (msg.msg_flags & MSG_CTRUNC)
				return cells_err_set(err, EMSGSIZE, "too many fds in message");
		}
		off += (size_t)r;
	}
	return 0;
}

int ctl_recv_frame(int sock, size_t max, uint8_t **out, size_t *n, int *fds, size_t *nfds,
		   cells_err_t *err)
{
	uint8_t hdr[4];
	if (nfds)
		*nfds = 0;
	if (recv_all(sock, hdr, 4, fds, nfds, err) < 0)
		return -1;
	size_t len = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
	if (len > max)
		return cells_err_set(err, EMSGSIZE, "message of %zu bytes is over the limit of %zu",
				     len, max);
	cleanup_free uint8_t *b = malloc(len ? len : 1);
	if (!b)
		return cells_err_sys(err, ENOMEM, "receive");
	if (recv_all(sock, b, len, NULL, NULL, err) < 0)
		return -1;
	*out = steal_pointer(&b);
	*n = len;
	return 0;
}

void ctl_rx_reset(struct ctl_rx *rx)
{
	free(rx->body);
	for (size_t i = 0; i < rx->nfds; i++)
		if (rx->fds[i] >= 0)
			close(rx->fds[i]);
	memset(rx, 0, sizeof *rx);
}

int ctl_rx_read(struct ctl_rx *rx, int sock, size_t max, cells_err_t *err)
{
	for (;;) {
		uint8_t *dst;
		size_t want;
		if (rx->got < 4) {
			dst = rx->hdr + rx->got;
			want = 4 - rx->got;
		} else {
			if (rx->got - 4 == rx->len)
				return 1;
			dst = rx->body + (rx->got - 4);
			want = rx->len - (rx->got - 4);
		}
		union {
			char buf[CMSG_SPACE(sizeof(int) * CTL_MAX_FDS)];
			struct cmsghdr align;
		} u;
		struct iovec iov = {dst, want};
		struct msghdr msg = {.msg_iov = &iov,
				     .msg_iovlen = 1,
				     .msg_control = u.buf,
				     .msg_controllen = sizeof u.buf};
		ssize_t r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (r < 0)
			return cells_err_sys(err, errno, "receive");
		bool too_many = (msg.msg_flags & MSG_CTRUNC) != 0;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			int tmp[CTL_MAX_FDS];
			memcpy(tmp, CMSG_DATA(c), k * sizeof(int));
			for (size_t i = 0; i < k; i++) {
				if (rx->nfds < CTL_MAX_FDS) {
					rx->fds[rx->nfds++] = tmp[i];
				} else {
					close(tmp[i]);
					too_many = true;
				}
			}
		}
		if (too_many)
			return cells_err_set(err, EBADMSG, "more than %d fds with a request",
					     CTL_MAX_FDS);
		if (r == 0)
			return rx->got ? cells_err_set(err, ECONNRESET,
						       "connection closed after %zu of %s%zu bytes "
						       "of a request (truncated)",
						       rx->got, rx->got < 4 ? "at least " : "",
						       rx->got < 4 ? (size_t)4 : rx->len + 4)
				       : cells_err_set(err, ECONNRESET, "connection closed");
		rx->got += (size_t)r;
		if (rx->got == 4 && !rx->body) {
			rx->len = (size_t)rx->hdr[0] << 24 | (size_t)rx->hdr[1] << 16 |
				  (size_t)rx->hdr[2] << 8 | rx->hdr[3];
			if (rx->len > max)
				return cells_err_set(
				    err, EMSGSIZE, "request of %zu bytes is over the limit of %zu",
				    rx->len, max);
			rx->body = malloc(rx->len ? rx->len : 1);
			if (!rx->body)
				return cells_err_sys(err, ENOMEM, "receive");
		}
	}
}

int ctl_connect(const char *run_dir, cells_err_t *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (snprintf(sa.sun_path, sizeof sa.sun_path, "%s/control.sock", run_dir) >=
	    (int)sizeof sa.sun_path)
		return cells_err_set(err, ENAMETOOLONG, "run dir path too long: %s", run_dir);
	cleanup_close int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return cells_err_sys(err, errno, "socket");
	if (connect(s, (struct sockaddr *)&sa, sizeof sa) < 0)
		return cells_err_sys(err, errno, "cannot reach cellsd at %s (is it running?)",
				     sa.sun_path);
	return take_fd(&s);
}

int ctl_call(int sock, Cells__Ctl__V1__CtlRequest *req, const int *fds, size_t nfds,
	     Cells__Ctl__V1__CtlResponse **resp, cells_err_t *err)
{
	req->version = CELLS_PROTOCOL_VERSION;
	size_t n = cells__ctl__v1__ctl_request__get_packed_size(req);
	if (n > CELLS_MAX_CTL_REQUEST)
		return cells_err_set(err, EMSGSIZE, "request of %zu bytes is over the limit", n);
	cleanup_free uint8_t *b = malloc(n ? n : 1);
	if (!b)
		return cells_err_sys(err, ENOMEM, "request");
	cells__ctl__v1__ctl_request__pack(req, b);
	if (ctl_send_frame(sock, b, n, fds, nfds, err) < 0)
		return -1;
	cleanup_free uint8_t *rb = NULL;
	size_t rn;
	if (ctl_recv_frame(sock, CELLS_MAX_CTL_RESPONSE, &rb, &rn, NULL, NULL, err) < 0)
		return cells_err_prefix(err, "cellsd");
	return cells_ctl_response_decode(rb, rn, resp, err);
}
