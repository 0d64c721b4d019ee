#include "ctl_server.h"
#include "cleanup.h"
#include "handlers.h"
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

#define R(c) CELLS__CTL__V1__CTL_REQUEST__REQ_##c

/* The request table. Every row's handler says in a comment why it is safe. */
static const struct ctl_route {
	Cells__Ctl__V1__CtlRequest__ReqCase req;
	const char *name;
	unsigned permitted; /* CELLSD_ST_* */
	ctl_handler_fn fn;
} routes[] = {
    {R(PING), "ping", CELLSD_ST_ANY, h_ping},
    {R(STATUS), "status", CELLSD_ST_ANY, h_status},
    {R(DEVICE_ID), "device id", CELLSD_ST_ANY, h_device_id},
    {R(TEL_STATUS), "tel status", CELLSD_ST_ANY, h_tel_status},
    {R(TRUST_PIN), "trust pin", CELLSD_ST_READY, h_trust_pin},
    {R(POLICY_APPLY), "policy apply", CELLSD_ST_READY, h_policy_apply},
    {R(POLICY_SHOW), "policy show", CELLSD_ST_ANY, h_policy_show},
    {R(POLICY_VERIFY), "policy verify", CELLSD_ST_ANY, h_policy_verify},
    {R(VP_PASSWORD), "vp password", CELLSD_ST_READY, h_vp_password},
    {R(VP_CONFIG), "vp config", CELLSD_ST_READY, h_vp_config},
    {R(VP_CREATE), "vp create", CELLSD_ST_READY, h_vp_create},
    {R(VP_LIST), "vp list", CELLSD_ST_ANY, h_vp_list},
    {R(VP_STATUS), "vp status", CELLSD_ST_ANY, h_vp_status},
    {R(VP_START), "vp start", CELLSD_ST_READY, h_vp_start},
    {R(VP_STOP), "vp stop", CELLSD_ST_READY, h_vp_stop},
    {R(VP_DESTROY), "vp destroy", CELLSD_ST_READY, h_vp_destroy},
    {R(VP_EXEC), "vp exec", CELLSD_ST_READY, h_vp_exec},
    {R(VP_RUN), "vp run", CELLSD_ST_READY, h_vp_run},
    {R(AUDIT_QUERY), "audit query", CELLSD_ST_ANY, h_audit_query},
    {R(AUDIT_VERIFY), "audit verify", CELLSD_ST_ANY, h_audit_verify},
    {R(AUDIT_EXPORT), "audit export", CELLSD_ST_READY, h_audit_export},
    {R(ENROLL), "enroll", CELLSD_ST_READY, h_enroll},
    {R(MGMT_STATUS), "mgmt status", CELLSD_ST_ANY, h_mgmt_status},
    {R(SWITCH_TO), "switch", CELLSD_ST_READY, h_switch_to},
    {R(INPUT), "input", CELLSD_ST_READY, h_input},
    {R(SCREENSHOT), "screenshot", CELLSD_ST_READY, h_screenshot},
    {R(DISPLAY_STATUS), "display status", CELLSD_ST_ANY, h_display_status},
    {R(VP_WIPE), "vp wipe", CELLSD_ST_READY, h_vp_wipe},
    {R(WIPE_STATUS), "wipe status", CELLSD_ST_ANY, h_wipe_status},
    {R(WIPE_PREPARE), "wipe prepare", CELLSD_ST_READY, h_wipe_prepare},
    {R(DEVICE_LIST), "device list", CELLSD_ST_ANY, h_device_list},
    /* locking only removes access: permitted also while the audit log fails closed */
    {R(VP_LOCK), "vp lock", CELLSD_ST_ANY, h_vp_lock},
    {R(VP_UNLOCK), "vp unlock", CELLSD_ST_READY, h_vp_unlock},
};

struct ctl_conn {
	struct cellsd *d;
	int fd;
	struct ucred cred;
	struct ctl_call *busy; /* a pending call; further requests wait */
};

static void conn_close(struct ctl_conn *cn)
{
	loop_del_fd(cn->d->loop, cn->fd);
	close(cn->fd);
	if (cn->busy)
		cn->busy->conn = NULL;
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

static void send_response(int fd, int rc, const cells_err_t *err, json_object *result,
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
	cleanup_free uint8_t *b = malloc(n ? n : 1);
	if (!b)
		return;
	cells__ctl__v1__ctl_response__pack(&r, b);
	cells_err_t e2;
	if (ctl_send_frame(fd, b, n, NULL, 0, &e2) < 0)
		log_warn("control: %s", e2.msg);
}

void ctl_call_finish(struct ctl_call *c, int rc, const cells_err_t *err)
{
	if (c->conn) {
		send_response(c->conn->fd, rc, err, c->result, c->exit_code);
		c->conn->busy = NULL;
		loop_mod_fd(c->d->loop, c->conn->fd, EPOLLIN);
	}
	call_free(c);
}

static void refuse(struct ctl_conn *cn, const char *what, const char *reason)
{
	cells_err_t e;
	cells_err_set(&e, EPERM, "%s: %s", what, reason);
	json_object *det = json_object_new_object();
	json_object_object_add(det, "request", json_object_new_string(what));
	json_object_object_add(det, "reason", json_object_new_string(reason));
	char actor[32];
	snprintf(actor, sizeof actor, "uid:%u", (unsigned)cn->cred.uid);
	cellsd_audit(cn->d, "", actor, "control.refused", "refused", det, NULL);
	json_object_put(det);
	send_response(cn->fd, -1, &e, NULL, 0);
}

static void on_conn(struct loop *l, int fd, uint32_t events, void *data)
{
	struct ctl_conn *cn = data;
	if (cn->busy) {
		/* a call is pending: only notice a hang-up */
		if (events & (EPOLLHUP | EPOLLERR))
			conn_close(cn);
		return;
	}
	cleanup_free uint8_t *b = NULL;
	size_t n;
	struct ctl_call *c = calloc(1, sizeof *c);
	cells_err_t err = {0};
	if (!c) {
		conn_close(cn);
		return;
	}
	if (ctl_recv_frame(fd, CELLS_MAX_CTL_REQUEST, &b, &n, c->fds, &c->nfds, &err) < 0) {
		if (err.code != ECONNRESET)
			log_warn("control: %s", err.msg);
		call_free(c);
		conn_close(cn);
		return;
	}
	Cells__Ctl__V1__CtlRequest *req = NULL;
	if (cells_ctl_request_decode(b, n, &req, &err) < 0) {
		refuse(cn, "request", err.msg);
		call_free(c);
		conn_close(cn);
		return;
	}
	c->req = req;
	c->d = cn->d;
	c->conn = cn;
	c->cred = cn->cred;
	snprintf(c->actor, sizeof c->actor, "uid:%u", (unsigned)cn->cred.uid);
	const struct ctl_route *rt = NULL;
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(routes); i++)
		if (routes[i].req == req->req_case)
			rt = &routes[i];
	if (!rt) {
		refuse(cn, "request", "this agent does not implement that request");
		call_free(c);
		conn_close(cn);
		return;
	}
	if (!(rt->permitted & cn->d->state)) {
		refuse(cn, rt->name,
		       cn->d->state & CELLSD_ST_AUDIT_CLOSED
			   ? "refused while the audit log cannot be written (fail closed)"
			   : "not permitted in the agent's current state");
		call_free(c);
		conn_close(cn);
		return;
	}
	c->result = json_object_new_object();
	int rc = rt->fn(c, &err);
	if (rc == 0 && c->pending) {
		cn->busy = c;
		loop_mod_fd(l, fd, EPOLLRDHUP);
		return;
	}
	if (rc < 0)
		log_debug("control %s: %s", rt->name, err.msg);
	ctl_call_finish(c, rc, &err);
}

static bool peer_allowed(struct cellsd *d, const struct ucred *cr)
{
	if (cr->uid == 0)
		return true;
	if (!d->ctl_gid_set)
		return false;
	if (cr->gid == d->ctl_gid)
		return true;
	/* supplementary groups of the peer, from /proc */
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/status", (int)cr->pid);
	cleanup_file FILE *f = fopen(path, "re");
	char line[1024];
	while (f && fgets(line, sizeof line, f)) {
		if (strncmp(line, "Groups:", 7))
			continue;
		char *save = NULL;
		for (char *t = strtok_r(line + 7, " \t\n", &save); t;
		     t = strtok_r(NULL, " \t\n", &save))
			if ((gid_t)strtoul(t, NULL, 10) == d->ctl_gid)
				return true;
	}
	return false;
}

static void on_accept(struct loop *l, int fd, uint32_t events, void *data)
{
	struct cellsd *d = data;
	int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0)
		return;
	struct ucred cr;
	socklen_t len = sizeof cr;
	if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || !peer_allowed(d, &cr)) {
		char actor[32];
		snprintf(actor, sizeof actor, "uid:%u", (unsigned)cr.uid);
		json_object *det = json_object_new_object();
		json_object_object_add(det, "pid", json_object_new_int(cr.pid));
		cellsd_audit(d, "", actor, "control.denied", "refused", det, NULL);
		json_object_put(det);
		close(c);
		return;
	}
	struct timeval tv = {10, 0};
	setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	struct ctl_conn *cn = calloc(1, sizeof *cn);
	if (!cn) {
		close(c);
		return;
	}
	cn->d = d;
	cn->fd = c;
	cn->cred = cr;
	cells_err_t err;
	if (loop_add_fd(l, c, EPOLLIN, on_conn, cn, &err) < 0) {
		close(c);
		free(cn);
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
	if (d->ctl_fd >= 0) {
		loop_del_fd(d->loop, d->ctl_fd);
		close(d->ctl_fd);
		d->ctl_fd = -1;
		char p[PATH_MAX + 16];
		snprintf(p, sizeof p, "%s/control.sock", d->run_dir);
		unlink(p);
	}
}
