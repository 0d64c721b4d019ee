#include "ctl_server.h"
#include "audit.h"
#include "cjson.h"
#include "cleanup.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* The request table, set by the program (ctl_server_set_routes) before the start. */
static const struct ctl_route *routes;
static size_t nroutes;

void ctl_server_set_routes(const struct ctl_route *r, size_t n)
{
	routes = r;
	nroutes = n;
}

/* Connections are handled in the event loop without ever waiting for a peer: a request
 * frame is gathered as its bytes arrive, the response leaves as the peer reads it. A
 * peer that stops half-way is closed after CTL_REQUEST_TIMEOUT_MS without slowing
 * anyone else; at most CTL_MAX_CONNS connections are open at once. */
#define CTL_MAX_CONNS 128
#define CTL_REQUEST_TIMEOUT_MS 3000   /* a whole request, from the wait's start */
#define CTL_RESPONSE_TIMEOUT_MS 10000 /* a whole response read by the peer */
#define CTL_ACCEPT_BURST 32	      /* connections taken per wake-up */

enum conn_state {
	CN_READ,  /* gathering a request frame */
	CN_BUSY,  /* a handler is pending (vp exec): only a hang-up is noticed */
	CN_WRITE, /* the response is leaving */
};

struct ctl_conn {
	struct cellsd *d;
	int fd;
	struct ucred cred;
	enum conn_state state;
	struct ctl_rx rx;
	uint64_t timer;	       /* the deadline of the current read or write */
	struct ctl_call *busy; /* a pending call; further requests wait */
	uint8_t *out;	       /* the response frame being sent (owned) */
	size_t out_len, out_off;
	bool close_after; /* close once the response is out (a refused request) */
	struct ctl_conn *prev, *next;
};

static struct {
	struct ctl_conn *head;
	size_t n;
	int64_t full_audited_ns; /* last "too many connections" record (once per second) */
	unsigned long full_dropped;
} conns;

static void conn_actor(const struct ctl_conn *cn, char actor[32])
{
	snprintf(actor, 32, "uid:%u", (unsigned)cn->cred.uid);
}

static void conn_close(struct ctl_conn *cn)
{
	loop_del_fd(cn->d->loop, cn->fd);
	if (cn->timer)
		loop_cancel_timer(cn->d->loop, cn->timer);
	close(cn->fd);
	ctl_rx_reset(&cn->rx);
	free(cn->out);
	if (cn->busy)
		cn->busy->conn = NULL;
	if (cn->prev)
		cn->prev->next = cn->next;
	else
		conns.head = cn->next;
	if (cn->next)
		cn->next->prev = cn->prev;
	conns.n--;
	free(cn);
}

static void call_free(struct ctl_call *c)
{
	for (size_t i = 0; i < c->nfds; i++)
		if (c->fds[i] >= 0)
			close(c->fds[i]);
	if (c->result)
		json_object_put(c->result);
	if (c->req)
		cells__ctl__v1__ctl_request__free_unpacked((Cells__Ctl__V1__CtlRequest *)c->req,
							   NULL);
	free(c);
}

int ctl_call_take_fd(struct ctl_call *c, size_t i)
{
	if (i >= c->nfds)
		return -1;
	return take_fd(&c->fds[i]);
}

static void on_conn_timeout(struct loop *l, void *data);

static void conn_arm(struct ctl_conn *cn, uint64_t ms)
{
	if (cn->timer)
		loop_cancel_timer(cn->d->loop, cn->timer);
	cn->timer = ms ? loop_add_timer(cn->d->loop, ms, on_conn_timeout, cn) : 0;
}

/* Wait for the next request (EPOLLIN), with its deadline. */
static void conn_read_next(struct ctl_conn *cn)
{
	cn->state = CN_READ;
	ctl_rx_reset(&cn->rx);
	loop_mod_fd(cn->d->loop, cn->fd, EPOLLIN | EPOLLRDHUP);
	conn_arm(cn, CTL_REQUEST_TIMEOUT_MS);
}

/* Send what the socket takes of the response. Returns -1 when cn was closed. */
static int conn_flush(struct ctl_conn *cn)
{
	while (cn->out_off < cn->out_len) {
		ssize_t w = send(cn->fd, cn->out + cn->out_off, cn->out_len - cn->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			loop_mod_fd(cn->d->loop, cn->fd, EPOLLOUT);
			return 0;
		}
		if (w < 0) {
			log_debug("control: send: %s", strerror(errno));
			conn_close(cn);
			return -1;
		}
		cn->out_off += (size_t)w;
	}
	free(cn->out);
	cn->out = NULL;
	cn->out_len = cn->out_off = 0;
	if (cn->close_after) {
		conn_close(cn);
		return -1;
	}
	conn_read_next(cn);
	return 0;
}

/* Queue one response frame on cn and start sending it. Returns -1 when cn was closed. */
static int send_response(struct ctl_conn *cn, int rc, const cells_err_t *err, json_object *result,
			 int exit_code)
{
	Cells__Ctl__V1__CtlResponse r = CELLS__CTL__V1__CTL_RESPONSE__INIT;
	r.status = rc < 0 ? (err && err->code ? err->code : EIO) : 0;
	r.error = rc < 0 ? (char *)(err && err->msg[0] ? err->msg : "failed") : "";
	r.result = rc < 0 || !result
		       ? "{}"
		       : (char *)json_object_to_json_string_ext(result, JSON_C_TO_STRING_PLAIN);
	r.exit_code = exit_code;
	size_t n = cells__ctl__v1__ctl_response__get_packed_size(&r);
	uint8_t *b = n <= CELLS_MAX_CTL_RESPONSE ? malloc(4 + n) : NULL;
	if (!b) {
		log_warn("control: cannot send a response of %zu bytes", n);
		conn_close(cn);
		return -1;
	}
	b[0] = (uint8_t)(n >> 24), b[1] = (uint8_t)(n >> 16), b[2] = (uint8_t)(n >> 8);
	b[3] = (uint8_t)n;
	cells__ctl__v1__ctl_response__pack(&r, b + 4);
	free(cn->out);
	cn->out = b;
	cn->out_len = 4 + n;
	cn->out_off = 0;
	cn->state = CN_WRITE;
	conn_arm(cn, CTL_RESPONSE_TIMEOUT_MS);
	return conn_flush(cn);
}

void ctl_call_finish(struct ctl_call *c, int rc, const cells_err_t *err)
{
	struct ctl_conn *cn = c->conn;
	if (cn) {
		cn->busy = NULL;
		c->conn = NULL;
		send_response(cn, rc, err, c->result, c->exit_code);
	}
	call_free(c);
}

static void audit_refusal(struct ctl_conn *cn, const char *what, const char *reason)
{
	cleanup_json json_object *det = json_object_new_object();
	json_object_object_add(det, "request", json_object_new_string(what));
	json_object_object_add(det, "reason", json_object_new_string(reason));
	json_object_object_add(det, "pid", json_object_new_int(cn->cred.pid));
	char actor[32];
	conn_actor(cn, actor);
	cellsd_audit(cn->d, "", actor, "control.refused", "refused", det, NULL);
}

/* Refused frames (truncated, stalled, oversized, malformed) cost a peer one connection
 * each, and an audit record is a synchronous write: one record per second at most, the
 * rest counted into one summary record at the end of that second (naming the last
 * reason), so that a burst of stalled peers cannot stall the loop on the audit log. */
#define CTL_FRAME_AUDIT_NS 1000000000LL
static struct {
	struct cellsd *d;
	int64_t last_ns; /* when the last record was written */
	unsigned long held;
	char actor[32];
	char reason[200];
	uint64_t timer;
} frame_audit;

static void frame_audit_flush(struct loop *l, void *data)
{
	(void)l;
	(void)data;
	frame_audit.timer = 0;
	if (!frame_audit.held)
		return;
	char reason[300];
	snprintf(reason, sizeof reason,
		 "%lu more refused requests since the last record; the last: %s", frame_audit.held,
		 frame_audit.reason);
	cleanup_json json_object *det = json_object_new_object();
	json_object_object_add(det, "request", json_object_new_string("request"));
	json_object_object_add(det, "reason", json_object_new_string(reason));
	json_object_object_add(det, "count", json_object_new_int64((int64_t)frame_audit.held));
	cellsd_audit(frame_audit.d, "", frame_audit.actor, "control.refused", "refused", det, NULL);
	frame_audit.held = 0;
	frame_audit.last_ns = cells_mono_ns();
}

static void audit_frame_refusal(struct ctl_conn *cn, const char *reason)
{
	int64_t now = cells_mono_ns();
	frame_audit.d = cn->d;
	if (!frame_audit.held &&
	    (!frame_audit.last_ns || now - frame_audit.last_ns >= CTL_FRAME_AUDIT_NS)) {
		audit_refusal(cn, "request", reason);
		frame_audit.last_ns = now;
		return;
	}
	frame_audit.held++;
	conn_actor(cn, frame_audit.actor);
	snprintf(frame_audit.reason, sizeof frame_audit.reason, "%s", reason);
	if (!frame_audit.timer) {
		int64_t left = frame_audit.last_ns + CTL_FRAME_AUDIT_NS - now;
		frame_audit.timer =
		    loop_add_timer(cn->d->loop, left > 1000000 ? (uint64_t)(left / 1000000) : 1,
				   frame_audit_flush, NULL);
	}
}

/* Refuse a request: audited, answered with one line, the connection closed after. A
 * frame that never became a request is audited through the per-second summary. */
static void refuse(struct ctl_conn *cn, const char *what, const char *reason, bool frame)
{
	cells_err_t e;
	cells_err_set(&e, EPERM, "%s: %s", what, reason);
	if (frame)
		audit_frame_refusal(cn, reason);
	else
		audit_refusal(cn, what, reason);
	cn->close_after = true;
	send_response(cn, -1, &e, NULL, 0);
}

static void on_conn_timeout(struct loop *l, void *data)
{
	(void)l;
	struct ctl_conn *cn = data;
	cn->timer = 0;
	if (cn->state == CN_WRITE) {
		log_warn("control: uid %u did not read its response within %d ms; closed",
			 (unsigned)cn->cred.uid, CTL_RESPONSE_TIMEOUT_MS);
		conn_close(cn);
		return;
	}
	if (cn->state != CN_READ)
		return;
	if (cn->rx.got) {
		/* half a request, then nothing: a truncated request (SECURITY.md) */
		char reason[160];
		if (cn->rx.got < 4)
			snprintf(reason, sizeof reason,
				 "truncated request: %zu bytes of a frame header, then nothing for "
				 "%d ms",
				 cn->rx.got, CTL_REQUEST_TIMEOUT_MS);
		else
			snprintf(reason, sizeof reason,
				 "truncated request: %zu of %zu bytes, then nothing for %d ms",
				 cn->rx.got, cn->rx.len + 4, CTL_REQUEST_TIMEOUT_MS);
		log_warn("control: uid %u: %s; closed", (unsigned)cn->cred.uid, reason);
		audit_frame_refusal(cn, reason);
	} else {
		log_debug("control: uid %u sent nothing for %d ms; closed", (unsigned)cn->cred.uid,
			  CTL_REQUEST_TIMEOUT_MS);
	}
	conn_close(cn);
}

/* A whole frame is in cn->rx: decode, look up, run. */
static void dispatch(struct ctl_conn *cn)
{
	conn_arm(cn, 0);
	struct ctl_call *c = calloc(1, sizeof *c);
	cells_err_t err = {0};
	if (!c) {
		conn_close(cn);
		return;
	}
	memcpy(c->fds, cn->rx.fds, sizeof c->fds);
	c->nfds = cn->rx.nfds;
	cn->rx.nfds = 0; /* the call owns them now */
	Cells__Ctl__V1__CtlRequest *req = NULL;
	int dr = cells_ctl_request_decode(cn->rx.body, cn->rx.len, &req, &err);
	ctl_rx_reset(&cn->rx);
	if (dr < 0) {
		refuse(cn, "request", err.msg, true);
		call_free(c);
		return;
	}
	c->req = req;
	c->d = cn->d;
	c->conn = cn;
	c->cred = cn->cred;
	conn_actor(cn, c->actor);
	const struct ctl_route *rt = NULL;
	for (size_t i = 0; i < nroutes; i++)
		if (routes[i].req == req->req_case)
			rt = &routes[i];
	if (!rt) {
		c->conn = NULL;
		refuse(cn, "request", "this agent does not implement that request", false);
		call_free(c);
		return;
	}
	if (!(rt->permitted & cn->d->state)) {
		c->conn = NULL;
		refuse(cn, rt->name,
		       cn->d->state & CELLSD_ST_AUDIT_CLOSED
			   ? "refused while the audit log cannot be written (fail closed)"
			   : "not permitted in the agent's current state",
		       false);
		call_free(c);
		return;
	}
	c->result = json_object_new_object();
	cn->state = CN_BUSY;
	loop_mod_fd(cn->d->loop, cn->fd, EPOLLRDHUP);
	int rc = rt->fn(c, &err);
	if (rc == 0 && c->pending) {
		cn->busy = c;
		return;
	}
	if (rc < 0)
		log_debug("control %s: %s", rt->name, err.msg);
	ctl_call_finish(c, rc, &err);
}

static void on_conn(struct loop *l, int fd, uint32_t events, void *data)
{
	(void)l;
	(void)fd;
	struct ctl_conn *cn = data;
	switch (cn->state) {
	case CN_BUSY:
		/* a call is pending: only notice a hang-up (a peer that merely shut down its
		 * sending side still gets its answer; stop watching for that) */
		if (events & (EPOLLHUP | EPOLLERR))
			conn_close(cn);
		else if (events & EPOLLRDHUP)
			loop_mod_fd(cn->d->loop, cn->fd, 0);
		return;
	case CN_WRITE:
		if (events & (EPOLLHUP | EPOLLERR)) {
			conn_close(cn);
			return;
		}
		if (events & EPOLLOUT)
			conn_flush(cn);
		return;
	case CN_READ:
		break;
	}
	cells_err_t err = {0};
	int r = ctl_rx_read(&cn->rx, cn->fd, CELLS_MAX_CTL_REQUEST, &err);
	if (r == 0)
		return; /* more later; the deadline runs */
	if (r > 0) {
		dispatch(cn);
		return;
	}
	if (err.code == EMSGSIZE || err.code == EBADMSG) {
		/* oversized, or too many fds: refused before any body is read */
		log_warn("control: uid %u: %s", (unsigned)cn->cred.uid, err.msg);
		refuse(cn, "request", err.msg, true);
		return;
	}
	if (err.code == ECONNRESET && cn->rx.got) {
		/* the peer went away half-way through a request */
		log_warn("control: uid %u: %s", (unsigned)cn->cred.uid, err.msg);
		audit_frame_refusal(cn, err.msg);
	} else if (err.code != ECONNRESET) {
		log_warn("control: %s", err.msg);
	}
	conn_close(cn);
}

/* Is the peer's group list (taken by the kernel at connect(): SO_PEERGROUPS, never
 * /proc/PID, whose pid may have been reused) holding g? */
static bool peer_in_group(int fd, gid_t g)
{
	gid_t small[64];
	cleanup_free gid_t *big = NULL;
	gid_t *gs = small;
	socklen_t len = sizeof small;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, gs, &len) < 0) {
		if (errno != ERANGE || len == 0 || len > 65536 * sizeof(gid_t))
			return false;
		big = malloc(len);
		if (!big)
			return false;
		gs = big;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, gs, &len) < 0)
			return false;
	}
	for (size_t i = 0; i < len / sizeof(gid_t); i++)
		if (gs[i] == g)
			return true;
	return false;
}

static bool peer_allowed(struct cellsd *d, int fd, const struct ucred *cr)
{
	if (cr->uid == 0)
		return true;
	if (!d->ctl_gid_set)
		return false;
	if (cr->gid == d->ctl_gid)
		return true;
	return peer_in_group(fd, d->ctl_gid);
}

/* At CTL_MAX_CONNS: close the oldest connection still waiting for its request (a
 * stalled or idle peer), so that a new caller is served; refuse the new one only when
 * every connection has a call running or a response leaving. One audit record per
 * second of a burst, counting what was dropped since the last one. */
static int make_room(struct cellsd *d, const struct ucred *cr)
{
	struct ctl_conn *victim = NULL;
	for (struct ctl_conn *cn = conns.head; cn; cn = cn->next)
		if (cn->state == CN_READ)
			victim = cn; /* the list is newest first: the last one is the oldest */
	conns.full_dropped++;
	int64_t now = cells_mono_ns();
	if (!conns.full_audited_ns || now - conns.full_audited_ns >= 1000000000LL) {
		char actor[32], reason[160];
		snprintf(actor, sizeof actor, "uid:%u",
			 (unsigned)(victim ? victim->cred.uid : cr->uid));
		snprintf(reason, sizeof reason,
			 "too many control connections (%d): %lu %s since the last record",
			 CTL_MAX_CONNS, conns.full_dropped,
			 victim ? "waiting connection(s) closed" : "new connection(s) refused");
		json_object *det = json_object_new_object();
		json_object_object_add(det, "request", json_object_new_string("connect"));
		json_object_object_add(det, "reason", json_object_new_string(reason));
		cellsd_audit(d, "", actor, "control.refused", "refused", det, NULL);
		json_object_put(det);
		log_warn("control: %s", reason);
		conns.full_audited_ns = now;
		conns.full_dropped = 0;
	}
	if (!victim)
		return -1;
	conn_close(victim);
	return 0;
}

static void accept_one(struct cellsd *d, int c)
{
	struct ucred cr = {.pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1};
	socklen_t len = sizeof cr;
	if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || !peer_allowed(d, c, &cr)) {
		char actor[32];
		snprintf(actor, sizeof actor, "uid:%u", (unsigned)cr.uid);
		json_object *det = json_object_new_object();
		json_object_object_add(det, "pid", json_object_new_int(cr.pid));
		cellsd_audit(d, "", actor, "control.denied", "refused", det, NULL);
		json_object_put(det);
		close(c);
		return;
	}
	if (conns.n >= CTL_MAX_CONNS && make_room(d, &cr) < 0) {
		close(c);
		return;
	}
	struct ctl_conn *cn = calloc(1, sizeof *cn);
	if (!cn) {
		close(c);
		return;
	}
	cn->d = d;
	cn->fd = c;
	cn->cred = cr;
	cells_err_t err;
	if (loop_add_fd(d->loop, c, EPOLLIN | EPOLLRDHUP, on_conn, cn, &err) < 0) {
		log_warn("control: %s", err.msg);
		close(c);
		free(cn);
		return;
	}
	cn->next = conns.head;
	if (conns.head)
		conns.head->prev = cn;
	conns.head = cn;
	conns.n++;
	conn_arm(cn, CTL_REQUEST_TIMEOUT_MS);
}

static void on_accept(struct loop *l, int fd, uint32_t events, void *data)
{
	(void)l;
	(void)events;
	struct cellsd *d = data;
	for (int i = 0; i < CTL_ACCEPT_BURST; i++) {
		int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (c < 0)
			return; /* EAGAIN: all taken; other errors: the next wake-up retries */
		accept_one(d, c);
	}
}

int ctl_server_start(struct cellsd *d, cells_err_t *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (snprintf(sa.sun_path, sizeof sa.sun_path, "%s/control.sock", d->run_dir) >=
	    (int)sizeof sa.sun_path)
		return cells_err_set(err, ENAMETOOLONG, "run dir path too long: %s", d->run_dir);
	cleanup_close int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0)
		return cells_err_sys(err, errno, "socket");
	unlink(sa.sun_path);
	mode_t old = umask(0117);
	int r = bind(s, (struct sockaddr *)&sa, sizeof sa);
	umask(old);
	if (r < 0)
		return cells_err_sys(err, errno, "bind %s", sa.sun_path);
	if (d->ctl_gid_set && chown(sa.sun_path, 0, d->ctl_gid) < 0)
		return cells_err_sys(err, errno, "chown %s", sa.sun_path);
	if (listen(s, 64) < 0)
		return cells_err_sys(err, errno, "listen %s", sa.sun_path);
	if (loop_add_fd(d->loop, s, EPOLLIN, on_accept, d, err) < 0)
		return -1;
	d->ctl_fd = take_fd(&s);
	return 0;
}

void ctl_server_stop(struct cellsd *d)
{
	if (frame_audit.timer) {
		loop_cancel_timer(d->loop, frame_audit.timer);
		frame_audit_flush(d->loop, NULL);
	}
	while (conns.head)
		conn_close(conns.head);
	if (d->ctl_fd >= 0) {
		loop_del_fd(d->loop, d->ctl_fd);
		close(d->ctl_fd);
		d->ctl_fd = -1;
		char p[PATH_MAX + 16];
		snprintf(p, sizeof p, "%s/control.sock", d->run_dir);
		unlink(p);
	}
}
