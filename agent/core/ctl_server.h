/* ctl_server.h - cellsd's control socket (RUN_DIR/control.sock).
 *
 * Each request type has one row {case, name, permitted states, handler} in the table
 * the program sets (routes.c, after bubblewrap's/OpenSSH monitor's tables). The peer is checked on
 * accept: SO_PEERCRED (root, or the configured group as primary group) and SO_PEERGROUPS
 * (the group as a supplementary one; both taken by the kernel at connect(), never from
 * /proc/PID). A request of an unknown type, or one not permitted in the daemon's current
 * state, is refused, audited, and the connection is closed.
 *
 * Connections never make the event loop wait: a request frame is gathered as its bytes
 * (and SCM_RIGHTS fds) arrive, the response is sent as the peer reads it. A request must
 * arrive whole within 3 s and a response be read within 10 s, else the connection is
 * closed (a truncated request is audited); at most 128 connections are open, the oldest
 * one still waiting for its request making room for a new one. Refused frames are
 * audited one record per second, the rest of that second in one counted summary.
 *
 * A handler fills call->result (a JSON object, created for it) and returns 0, or
 * returns -1 with err set. A handler that must wait (vp exec) sets call->pending and
 * later finishes the call with ctl_call_finish(). */
#ifndef CELLS_CTL_SERVER_H
#define CELLS_CTL_SERVER_H

#include <stdbool.h>
#include <sys/socket.h>

#include <json-c/json.h>

#include "cellsd.h"
#include "ctl_io.h"
#include "wire.h"

struct ctl_conn;

struct ctl_call {
	struct cellsd *d;
	struct ctl_conn *conn;
	const Cells__Ctl__V1__CtlRequest *req; /* borrowed, valid until finished */
	int fds[CTL_MAX_FDS];		       /* received fds, owned by the call */
	size_t nfds;
	struct ucred cred;
	char actor[32];	     /* "uid:N" for audit records */
	json_object *result; /* owned */
	int exit_code;
	bool pending;
};

typedef int (*ctl_handler_fn)(struct ctl_call *c, cells_err_t *err);

/* A row of the request table (routes.c). */
struct ctl_route {
	Cells__Ctl__V1__CtlRequest__ReqCase req;
	const char *name;
	unsigned permitted; /* CELLSD_ST_* */
	ctl_handler_fn fn;
};
/* The request table (borrowed, lives as long as the server); before ctl_server_start. */
void ctl_server_set_routes(const struct ctl_route *r, size_t n);

int ctl_server_start(struct cellsd *d, cells_err_t *err);
void ctl_server_stop(struct cellsd *d);
/* Complete a pending call: rc 0 sends call->result, otherwise err. Frees the call. */
void ctl_call_finish(struct ctl_call *c, int rc, const cells_err_t *err);
/* Take a received fd out of the call (ownership moves to the caller); -1 if absent. */
int ctl_call_take_fd(struct ctl_call *c, size_t i);

#endif
