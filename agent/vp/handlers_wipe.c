/* handlers_wipe.c - control requests of the wipe module: vp wipe, wipe status, wipe
 * prepare. */
#include "handlers_vp.h"
#include "audit.h"
#include "password.h"
#include "util.h"
#include "wipe.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* The local password check for `cellctl vp wipe`: the VP's configuration password
 * (agent/vp/password.h: Argon2id, persistent throttling, failures counted and audited). */
static int wipe_password_check(struct ctl_call *c, const char *vp, const uint8_t *pw, size_t n,
			       const char **how, cells_err_t *err)
{
	*how = "vp password";
	if (n == 0)
		return cells_err_set(err, EACCES, "wipe %s: the VP password is required", vp);
	return password_authorize(c->d, vp, pw, n, c->actor, err);
}

/* Safe: destroys only the named VP's data, only with the VP's password (local
 * authority, see wipe_password_check); every attempt and step is audited and the wipe
 * fails closed when the audit log cannot be written. */
int h_vp_wipe(struct ctl_call *c, cells_err_t *err)
{
	const Cells__Ctl__V1__VpWipe *w = c->req->vp_wipe;
	if (!w || cells_valid_name(w->name, err) < 0)
		return cells_err_prefix(err, "vp wipe");
	const char *how = "";
	if (wipe_password_check(c, w->name, w->password.data, w->password.len, &how, err) < 0) {
		json_object *j = json_object_new_object();
		json_object_object_add(j, "reason", json_object_new_string(err->msg));
		cells_err_t e2;
		int rc = cellsd_audit(c->d, w->name, c->actor, "wipe.refused", "refused", j, &e2);
		json_object_put(j);
		if (rc < 0)
			return cells_err_set(err, EIO,
					     "vp wipe: audit log unavailable (fail closed)");
		return -1;
	}
	char id[64];
	snprintf(id, sizeof id, "local:%lld", (long long)cells_now_us());
	if (wipe_start(c->d, w->name, id, w->recreate, err) < 0)
		return -1;
	json_object_object_add(c->result, "vp", json_object_new_string(w->name));
	json_object_object_add(c->result, "command_id", json_object_new_string(id));
	json_object_object_add(c->result, "password_check", json_object_new_string(how));
	return wipe_status_json(c->d, w->name, c->result, err);
}

/* Safe: read-only; shows ops, key identifiers (not keys) and signed receipts, which are
 * meant to be public. */
int h_wipe_status(struct ctl_call *c, cells_err_t *err)
{
	const Cells__Ctl__V1__VpName *n = c->req->wipe_status;
	const char *vp = n && n->name && *n->name ? n->name : NULL;
	if (vp && cells_valid_name(vp, err) < 0)
		return cells_err_prefix(err, "wipe status");
	return wipe_status_json(c->d, vp, c->result, err);
}

/* Safe: creates or unlocks the VP's own storage (never someone else's); idempotent. The
 * key never leaves cellsd. The VP runtime calls the same function directly. */
int h_wipe_prepare(struct ctl_call *c, cells_err_t *err)
{
	const Cells__Ctl__V1__VpName *n = c->req->wipe_prepare;
	char dir[PATH_MAX];
	if (!n || cells_valid_name(n->name, err) < 0)
		return cells_err_prefix(err, "wipe prepare");
	if (wipe_prepare_vp_storage(c->d, n->name, dir, err) < 0)
		return -1;
	json_object_object_add(c->result, "vp", json_object_new_string(n->name));
	json_object_object_add(c->result, "dir", json_object_new_string(dir));
	json_object_object_add(c->result, "encrypted",
			       json_object_new_boolean(wipe_vp_encrypted(c->d, n->name)));
	return 0;
}
