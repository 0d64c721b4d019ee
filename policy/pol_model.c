/* pol_model.c - a policy's model (see pol_model.h). */
#include "pol_model.h"
#include "cleanup.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int copy_name(char *dst, size_t n, const char *src, const char *what, cells_err_t *err)
{
	if (!src || strlen(src) >= n)
		return cells_err_set(err, EINVAL, "policy: %s is missing or over %zu bytes", what,
				     n - 1);
	memcpy(dst, src, strlen(src) + 1);
	return 0;
}

int pol_model_from(const Cells__V1__Policy *p, struct pol_model *m, cells_err_t *err)
{
	memset(m, 0, sizeof *m);
	if (p->n_vps > POL_MAX_VPS)
		return cells_err_set(err, EINVAL, "policy names %zu VPs (at most %d)", p->n_vps,
				     POL_MAX_VPS);
	m->version = p->version;
	m->issued_at = p->issued_at;
	m->expires_at = p->expires_at;
	if (copy_name(m->device_id, sizeof m->device_id, p->device_id ? p->device_id : "",
		      "device id", err) < 0)
		return -1;
	m->audit_upload_interval_s = p->audit_upload_interval_s;
	m->on_expiry = p->on_expiry;
	m->bvp_wifi_status_allowed = p->bvp_wifi_status_allowed;
	for (size_t i = 0; i < p->n_vps; i++) {
		const Cells__V1__VpRule *r = p->vps[i];
		struct pol_vp_rule *v = &m->vps[m->nvps++];
		if (copy_name(v->vp, sizeof v->vp, r->vp, "a VP name", err) < 0)
			return -1;
		v->net = r->net;
		v->may_be_foreground = r->foreground && r->foreground->may_be_foreground;
		v->incoming_call_switches = r->foreground && r->foreground->incoming_call_switches;
		v->allow_incoming = r->calls && r->calls->allow_incoming;
		v->allow_outgoing = r->calls && r->calls->allow_outgoing;
		v->password_required = r->password && r->password->required;
		v->password_min_length = r->password ? r->password->min_length : 0;
		v->max_failed_attempts = r->password ? r->password->max_failed_attempts : 0;
		v->wipe_on_limit = r->password && r->password->wipe_on_limit;
		v->audit_upload =
		    r->audit ? r->audit->upload : CELLS__V1__AUDIT_UPLOAD__AUDIT_UPLOAD_UNSPECIFIED;
		v->encrypted = r->encrypted;
		v->lock_on_expiry = r->lock_on_expiry;
		v->lock_after_offline_s = r->lock_after_offline_s;
		v->wipe_after_offline_s = r->wipe_after_offline_s;
		if (r->image && r->image[0] &&
		    copy_name(v->image, sizeof v->image, r->image, "an image reference", err) < 0)
			return -1;
		if (r->n_devices > POL_MAX_DEVICE_RULES ||
		    r->n_wifi_status_allowed > POL_MODEL_WIFI)
			return cells_err_set(err, EINVAL, "VP %s has too many device or wifi rules",
					     v->vp);
		for (size_t k = 0; k < r->n_devices; k++) {
			struct pol_dev_rule *dr = &v->devices[v->ndevices++];
			if (copy_name(dr->cls, sizeof dr->cls, r->devices[k]->device_class,
				      "a device class", err) < 0)
				return -1;
			dr->mode = r->devices[k]->mode;
		}
		for (size_t k = 0; k < r->n_wifi_status_allowed; k++)
			if (copy_name(v->wifi[v->nwifi++], POL_MODEL_WIFI_LEN,
				      r->wifi_status_allowed[k], "a wifi_status_allowed entry",
				      err) < 0)
				return -1;
	}
	return 0;
}

void pol_model_tighten(struct pol_model *m, const struct pol_local *l, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		struct pol_vp_rule *r = (struct pol_vp_rule *)pol_model_vp(m, l[k].vp);
		if (!r || !l[k].key || !l[k].value)
			continue;
		Cells__V1__NetMode nm;
		Cells__V1__AccessMode am;
		if (!strcmp(l[k].key, "net") && pol_net_parse(l[k].value, &nm) == 0) {
			if (pol_net_rank(nm) < pol_net_rank(r->net))
				r->net = nm;
		} else if (!strncmp(l[k].key, "device.", 7) &&
			   pol_access_parse(l[k].value, &am) == 0) {
			for (size_t j = 0; j < r->ndevices; j++)
				if (!strcmp(r->devices[j].cls, l[k].key + 7) &&
				    pol_access_rank(am) < pol_access_rank(r->devices[j].mode))
					r->devices[j].mode = am;
		}
	}
}

const struct pol_vp_rule *pol_model_vp(const struct pol_model *m, const char *vp)
{
	for (size_t i = 0; m && vp && i < m->nvps; i++)
		if (!strcmp(m->vps[i].vp, vp))
			return &m->vps[i];
	return NULL;
}

Cells__V1__AccessMode pol_model_device_mode(const struct pol_vp_rule *r, const char *cls)
{
	for (size_t i = 0; r && i < r->ndevices; i++)
		if (!strcmp(r->devices[i].cls, cls))
			return r->devices[i].mode == CELLS__V1__ACCESS_MODE__ACCESS_MODE_UNSPECIFIED
				   ? CELLS__V1__ACCESS_MODE__ACCESS_NO_ACCESS
				   : r->devices[i].mode;
	return CELLS__V1__ACCESS_MODE__ACCESS_NO_ACCESS;
}
