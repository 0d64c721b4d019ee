/* handlers_mgmt.c - control requests of the management channel. */
#include "handlers_mgmt.h"
#include "audit.h"
#include "cjson.h"
#include "mgmt.h"
#include "netipc.h"

#include <errno.h>
#include <string.h>

/* Safe: the device key never leaves cellsd (only a CSR signed with it goes out); the
 * server is authenticated by the CA the (root or control-group) caller pins, the
 * result is checked against that CA and this device's key before anything is stored,
 * and the enrollment is audited (fail closed). A new enrollment needs a new one-time
 * token, which the server enforces. */
int h_enroll(struct ctl_call *c, cells_err_t *err)
{
	const Cells__Ctl__V1__Enroll *e = c->req->enroll;
	size_t ul = strnlen(e->url, NETIPC_MAX_URL + 1), tl = strnlen(e->token, 129);
	if (ul > NETIPC_MAX_URL || strncmp(e->url, "wss://", 6) || ul < 8)
		return cells_err_set(err, EINVAL, "the URL must be wss://HOST:PORT");
	for (size_t i = 0; i < ul; i++)
		if ((unsigned char)e->url[i] <= 0x20 || (unsigned char)e->url[i] >= 0x7f)
			return cells_err_set(err, EINVAL, "the URL has a bad character");
	if (tl == 0 || tl > 128 || strspn(e->token, "0123456789abcdefABCDEF-_.") != tl)
		return cells_err_set(err, EINVAL, "malformed enrollment token");
	if (!e->ca_pem.len || e->ca_pem.len > NETIPC_MAX_PEM)
		return cells_err_set(err, EINVAL, "--ca: missing or too large");
	cleanup_json json_object *det = json_object_new_object();
	json_object_object_add(det, "url", json_object_new_string(e->url));
	int a = cellsd_audit(c->d, "", c->actor, "mgmt.enroll.requested", "ok", det, err);
	if (a < 0)
		return -1;
	return mgmt_enroll_start(c->d, c, e->url, e->token, e->ca_pem.data, e->ca_pem.len, err);
}

/* Safe: read-only summary of the channel (no keys, no certificates). */
int h_mgmt_status(struct ctl_call *c, cells_err_t *err)
{
	mgmt_status_json(c->d, c->result);
	return 0;
}
