/* handlers_policy.c - control requests of the policy area: trust pin, policy apply /
 * show / verify, vp password, vp config. Authority: the request's signature (policy) or
 * the VP password (local configuration); the peer is root or the control group. */
#include "cleanup.h"
#include "audit.h"
#include "cjson.h"
#include "handlers_core.h"
#include "mgmt.h"
#include "password.h"
#include "policy_engine.h"
#include "util.h"
#include "vplock.h"

#include <errno.h>
#include <string.h>

/* Safe: pins only when nothing is pinned yet (refused and audited afterwards); the
 * bytes are size-checked and parsed by pol_root_parse_any. */
int h_trust_pin(struct ctl_call *c, cells_err_t *err)
{
	const Cells__Ctl__V1__Blob *b = c->req->trust_pin;
	if (policy_trust_pin(c->d, b->data.data, b->data.len, c->actor, err) < 0)
		return -1;
	json_object_object_add(c->result, "pinned", json_object_new_boolean(1));
	cleanup_json json_object *desc = policy_describe(c->d);
	json_object *r = NULL;
	if (json_object_object_get_ex(desc, "trust_root", &r))
		json_object_object_add(c->result, "trust_root", json_object_get(r));
	return 0;
}

/* Safe: policy_install verifies the signature chain to the pinned root, version,
 * expiry and device before it persists or applies anything; rejections are audited. */
int h_policy_apply(struct ctl_call *c, cells_err_t *err)
{
	const Cells__Ctl__V1__Blob *b = c->req->policy_apply;
	char src[48];
	snprintf(src, sizeof src, "cellctl %s", c->actor);
	if (policy_install(c->d, b->data.data, b->data.len, src, err) < 0)
		return -1;
	mgmt_report_status(c->d); /* the MDM hears of the new version and compliance now */
	json_object_object_add(c->result, "version",
			       json_object_new_int64((int64_t)policy_version(c->d)));
	json_object_object_add(c->result, "status", json_object_new_string("in force"));
	return 0;
}

/* Safe: read-only; the policy and the key ids are not secret. */
int h_policy_show(struct ctl_call *c, cells_err_t *err)
{
	json_object_put(c->result);
	c->result = policy_describe(c->d);
	return 0;
}

/* Safe: check only, changes nothing. */
int h_policy_verify(struct ctl_call *c, cells_err_t *err)
{
	const Cells__Ctl__V1__Blob *b = c->req->policy_verify;
	uint64_t v = 0;
	cells_err_t e = {0};
	int r = policy_check(c->d, b->data.data, b->data.len, &v, &e);
	json_object_object_add(c->result, "verdict",
			       json_object_new_string(r == 0 ? "accept" : "reject"));
	if (r == 0)
		json_object_object_add(c->result, "version", json_object_new_int64((int64_t)v));
	else
		json_object_object_add(c->result, "reason", json_object_new_string(e.msg));
	c->exit_code = r == 0 ? 0 : 1;
	return 0;
}

static int check_vp_name(const char *name, cells_err_t *err)
{
	if (!name || cells_valid_name(name, err) < 0)
		return cells_err_prefix(err, "VP name");
	return 0;
}

/* Safe: changing an existing password needs the old one (throttled, counted before the
 * check); the first one may be set by root/the control group on a VP the policy names. */
int h_vp_password(struct ctl_call *c, cells_err_t *err)
{
	const Cells__Ctl__V1__PasswordChange *p = c->req->vp_password;
	if (check_vp_name(p->name, err) < 0)
		return -1;
	if (password_set(c->d, p->name, p->new_password.data, p->new_password.len,
			 p->old_password.data, p->old_password.len, c->actor, err) < 0)
		return -1;
	mgmt_report_status(c->d); /* "password-not-set" may be gone */
	json_object_object_add(c->result, "vp", json_object_new_string(p->name));
	json_object_object_add(c->result, "password", json_object_new_string("set"));
	return 0;
}

/* Safe: needs the VP password (when set or required by the policy) and only tightens
 * within the MDM policy's bounds (policy_set_local validates every setting). */
int h_vp_config(struct ctl_call *c, cells_err_t *err)
{
	const Cells__Ctl__V1__VpConfig *p = c->req->vp_config;
	if (check_vp_name(p->name, err) < 0)
		return -1;
	if (p->n_settings > 64)
		return cells_err_set(err, EINVAL, "too many settings");
	if (vplock_is_locked(c->d, p->name)) {
		cells_err_set(err, EPERM, "vp config %s: the VP is %s", p->name,
			      vplock_is_paused(c->d, p->name) ? "paused" : "locked");
		json_object *det = json_object_new_object();
		json_object_object_add(det, "reason", json_object_new_string(err->msg));
		cellsd_audit(c->d, p->name, c->actor, "vp.config", "refused", det, NULL);
		json_object_put(det);
		return -1;
	}
	if (password_authorize(c->d, p->name, p->password.data, p->password.len, c->actor, err) < 0)
		return -1;
	if (policy_set_local(c->d, p->name, p->settings, p->n_settings, c->actor, err) < 0)
		return -1;
	json_object_object_add(c->result, "vp", json_object_new_string(p->name));
	json_object *arr = json_object_new_array();
	for (size_t i = 0; i < p->n_settings; i++)
		json_object_array_add(arr, json_object_new_string(p->settings[i]));
	json_object_object_add(c->result, "applied", arr);
	return 0;
}
