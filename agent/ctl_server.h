/* ctl_server.h - cellsd's control socket (RUN_DIR/control.sock) and its request table.
 *
 * Each request type has one row {case, name, permitted states, handler} in
 * ctl_server.c (after bubblewrap's/OpenSSH monitor's tables). The peer's credentials
 * are checked with SO_PEERCRED on accept (root, or the configured group). A request of
 * an unknown type, or one not permitted in the daemon's current state, is refused,
 * audited, and the connection is closed.
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

int ctl_server_start(struct cellsd *d, cells_err_t *err);
void ctl_server_stop(struct cellsd *d);
/* Complete a pending call: rc 0 sends call->result, otherwise err. Frees the call. */
void ctl_call_finish(struct ctl_call *c, int rc, const cells_err_t *err);
/* Take a received fd out of the call (ownership moves to the caller); -1 if absent. */
int ctl_call_take_fd(struct ctl_call *c, size_t i);

#endif
