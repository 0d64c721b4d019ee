/* pol_json.c - policy JSON <-> protobuf Policy (strict). */
#include "pol_json.h"
#include "cjson.h"
#include "cleanup.h"
#include "pol_model.h"
#include "pol_policy.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Every allocation of the Policy being built, freed together after packing. */
struct arena {
	void **p;
	size_t n, cap;
	bool oom;
};

static void *arena_alloc(struct arena *a, size_t n)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		void **np = realloc(a->p, cap * sizeof *np);
		if (!np) {
			a->oom = true;
			return NULL;
		}
		a->p = np;
		a->cap = cap;
	}
	void *m = calloc(1, n ? n : 1);
	if (!m) {
		a->oom = true;
		return NULL;
	}
	a->p[a->n++] = m;
	return m;
}

static char *arena_strdup(struct arena *a, const char *s)
{
	size_t n = strlen(s);
	char *d = arena_alloc(a, n + 1);
	if (d)
		memcpy(d, s, n + 1);
	return d;
}

static void arena_free(struct arena *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->p[i]);
	free(a->p);
}

/* The policy's booleans are protobuf-c's type. */
static int get_bool(json_object *o, const char *path, const char *k, protobuf_c_boolean *out,
		    cells_err_t *err)
{
	bool b;
	int rc = cj_bool(o, path, k, &b, err);
	if (rc > 0)
		*out = b;
	return rc;
}

static const char *const expiry_names[] = {"keep-noncompliant", "keep-noncompliant", "lock-vp"};
static const char *const upload_names[] = {"metadata", "none", "metadata", "full"};

static int parse_name(const char *s, const char *const *names, int n, const char *path,
		      const char *k, int *out, cells_err_t *err)
{
	for (int i = 1; i < n; i++)
		if (!strcmp(s, names[i])) {
			*out = i;
			return 0;
		}
	return cells_err_set(err, EINVAL, "%s.%s: unknown value '%s'", path, k, s);
}

static int parse_vp(struct arena *a, json_object *o, const char *path, Cells__V1__VpRule *r,
		    cells_err_t *err)
{
	static const char *const keys[] = {"name",
					   "vp",
					   "devices",
					   "net",
					   "foreground",
					   "calls",
					   "password",
					   "audit_upload",
					   "encrypted",
					   "lock_on_expiry",
					   "wifi_status_allowed",
					   "lock_after_offline_s",
					   "wipe_after_offline_s",
					   "image",
					   NULL};
	if (!json_object_is_type(o, json_type_object))
		return cells_err_set(err, EINVAL, "%s: not an object", path);
	if (cj_only_keys(o, path, keys, err) < 0)
		return -1;
	const char *s = NULL;
	if (cj_str(o, path, "name", 0, &s, err) < 0)
		return -1;
	if (cj_get(o, "vp")) { /* the protobuf field's name, accepted as an alias */
		if (s)
			return cells_err_set(err, EINVAL, "%s: give name or vp, not both", path);
		if (cj_str(o, path, "vp", 0, &s, err) < 0)
			return -1;
	}
	if (!s)
		return cells_err_set(err, EINVAL, "%s.name: missing", path);
	r->vp = arena_strdup(a, s);
	json_object *devs = NULL;
	if (cj_obj(o, path, "devices", &devs, err) < 0)
		return -1;
	if (devs) {
		size_t n = (size_t)json_object_object_length(devs);
		if (n > POL_MAX_DEVICE_RULES)
			return cells_err_set(err, EINVAL, "%s.devices: too many classes", path);
		r->devices = arena_alloc(a, n * sizeof *r->devices);
		json_object_object_foreach(devs, cls, mode)
		{
			if (!r->devices)
				break;
			Cells__V1__AccessMode m;
			if (!pol_device_class_valid(cls))
				return cells_err_set(
				    err, EINVAL, "%s.devices.%s: unknown device class", path, cls);
			if (!json_object_is_type(mode, json_type_string) ||
			    pol_access_parse(json_object_get_string(mode), &m) < 0)
				return cells_err_set(
				    err, EINVAL,
				    "%s.devices.%s: mode must be no-access, shared "
				    "or exclusive",
				    path, cls);
			Cells__V1__DeviceRule *d = arena_alloc(a, sizeof *d);
			if (!d)
				break;
			cells__v1__device_rule__init(d);
			d->device_class = arena_strdup(a, cls);
			d->mode = m;
			r->devices[r->n_devices++] = d;
		}
	}
	if (cj_str(o, path, "net", 0, &s, err) < 0)
		return -1;
	if (cj_get(o, "net")) {
		Cells__V1__NetMode nm;
		if (pol_net_parse(s, &nm) < 0)
			return cells_err_set(err, EINVAL, "%s.net: must be none or nat", path);
		r->net = nm;
	}
	json_object *sub = NULL;
	char p2[96];
	if (cj_obj(o, path, "foreground", &sub, err) < 0)
		return -1;
	if (sub) {
		static const char *const k2[] = {"may_be_foreground", "incoming_call_switches",
						 NULL};
		snprintf(p2, sizeof p2, "%s.foreground", path);
		r->foreground = arena_alloc(a, sizeof *r->foreground);
		if (!r->foreground)
			return cells_err_sys(err, ENOMEM, "policy JSON");
		cells__v1__foreground_rule__init(r->foreground);
		if (cj_only_keys(sub, p2, k2, err) < 0 ||
		    get_bool(sub, p2, k2[0], &r->foreground->may_be_foreground, err) < 0 ||
		    get_bool(sub, p2, k2[1], &r->foreground->incoming_call_switches, err) < 0)
			return -1;
	}
	sub = NULL;
	if (cj_obj(o, path, "calls", &sub, err) < 0)
		return -1;
	if (sub) {
		static const char *const k2[] = {"allow_incoming", "allow_outgoing", NULL};
		snprintf(p2, sizeof p2, "%s.calls", path);
		r->calls = arena_alloc(a, sizeof *r->calls);
		if (!r->calls)
			return cells_err_sys(err, ENOMEM, "policy JSON");
		cells__v1__call_rule__init(r->calls);
		if (cj_only_keys(sub, p2, k2, err) < 0 ||
		    get_bool(sub, p2, k2[0], &r->calls->allow_incoming, err) < 0 ||
		    get_bool(sub, p2, k2[1], &r->calls->allow_outgoing, err) < 0)
			return -1;
	}
	sub = NULL;
	if (cj_obj(o, path, "password", &sub, err) < 0)
		return -1;
	if (sub) {
		static const char *const k2[] = {"required", "min_length", "max_failed_attempts",
						 "wipe_on_limit", NULL};
		snprintf(p2, sizeof p2, "%s.password", path);
		r->password = arena_alloc(a, sizeof *r->password);
		if (!r->password)
			return cells_err_sys(err, ENOMEM, "policy JSON");
		cells__v1__password_rule__init(r->password);
		int64_t v = 0;
		if (cj_only_keys(sub, p2, k2, err) < 0 ||
		    get_bool(sub, p2, k2[0], &r->password->required, err) < 0 ||
		    get_bool(sub, p2, k2[3], &r->password->wipe_on_limit, err) < 0)
			return -1;
		int g = cj_int(sub, p2, k2[1], 0, POL_MAX_PASSWORD_LEN, &v, err);
		if (g < 0)
			return -1;
		r->password->min_length = (uint32_t)(g ? v : 0);
		v = 0;
		g = cj_int(sub, p2, k2[2], 0, POL_MAX_FAILED_ATTEMPTS, &v, err);
		if (g < 0)
			return -1;
		r->password->max_failed_attempts = (uint32_t)(g ? v : 0);
	}
	if (cj_get(o, "audit_upload")) {
		int u = 0;
		if (cj_str(o, path, "audit_upload", 0, &s, err) < 0 ||
		    parse_name(s, upload_names, 4, path, "audit_upload", &u, err) < 0)
			return -1;
		r->audit = arena_alloc(a, sizeof *r->audit);
		if (!r->audit)
			return cells_err_sys(err, ENOMEM, "policy JSON");
		cells__v1__audit_rule__init(r->audit);
		r->audit->upload = (Cells__V1__AuditUpload)u;
	}
	if (get_bool(o, path, "encrypted", &r->encrypted, err) < 0 ||
	    get_bool(o, path, "lock_on_expiry", &r->lock_on_expiry, err) < 0)
		return -1;
	int64_t lock_s = 0, wipe_s = 0;
	if (cj_int(o, path, "lock_after_offline_s", 0, POL_MAX_OFFLINE_S, &lock_s, err) < 0 ||
	    cj_int(o, path, "wipe_after_offline_s", 0, POL_MAX_OFFLINE_S, &wipe_s, err) < 0)
		return -1;
	if (lock_s && wipe_s && wipe_s < lock_s)
		return cells_err_set(
		    err, EINVAL,
		    "%s: wipe_after_offline_s (%lld) is before lock_after_offline_s "
		    "(%lld)",
		    path, (long long)wipe_s, (long long)lock_s);
	r->lock_after_offline_s = (uint32_t)lock_s;
	r->wipe_after_offline_s = (uint32_t)wipe_s;
	const char *img = NULL;
	if (cj_str(o, path, "image", 0, &img, err) < 0)
		return -1;
	if (img) {
		cells_err_t e2;
		if (pol_image_ref_parse(img, NULL, NULL, &e2) < 0)
			return cells_err_set(err, EINVAL, "%s.image: %s", path, e2.msg);
		r->image = arena_strdup(a, img);
	}
	json_object *w = cj_get(o, "wifi_status_allowed");
	if (w) {
		if (!json_object_is_type(w, json_type_array) || json_object_array_length(w) > 16)
			return cells_err_set(err, EINVAL,
					     "%s.wifi_status_allowed: not an array of at most 16 "
					     "strings",
					     path);
		size_t n = json_object_array_length(w);
		r->wifi_status_allowed = arena_alloc(a, n * sizeof(char *));
		for (size_t i = 0; i < n && r->wifi_status_allowed; i++) {
			json_object *e = json_object_array_get_idx(w, i);
			if (!json_object_is_type(e, json_type_string))
				return cells_err_set(err, EINVAL,
						     "%s.wifi_status_allowed[%zu]: not a string",
						     path, i);
			r->wifi_status_allowed[r->n_wifi_status_allowed++] =
			    arena_strdup(a, json_object_get_string(e));
		}
	}
	return 0;
}

static int parse_policy(struct arena *a, json_object *o, Cells__V1__Policy *p, cells_err_t *err)
{
	static const char *const keys[] = {"version",
					   "device",
					   "issued_at",
					   "expires_at",
					   "on_expiry",
					   "audit_upload_interval_s",
					   "bvp_wifi_status_allowed",
					   "vps",
					   NULL};
	if (!json_object_is_type(o, json_type_object))
		return cells_err_set(err, EINVAL, "policy JSON is not an object");
	if (cj_only_keys(o, "", keys, err) < 0)
		return -1;
	int64_t v = 0;
	int g = cj_int(o, "", "version", 1, INT64_MAX, &v, err);
	if (g <= 0)
		return g < 0 ? -1 : cells_err_set(err, EINVAL, "version: missing");
	p->version = (uint64_t)v;
	const char *s = NULL;
	if (cj_str(o, "", "device", 0, &s, err) < 0)
		return -1;
	p->device_id = arena_strdup(a, s ? s : ""); /* absent: a template (see pol_json.h) */
	v = 0;
	if (cj_int(o, "", "issued_at", 0, INT64_MAX, &v, err) < 0)
		return -1;
	p->issued_at = v;
	v = 0;
	if (cj_int(o, "", "expires_at", 0, INT64_MAX, &v, err) < 0)
		return -1;
	p->expires_at = v;
	v = 0;
	if (cj_int(o, "", "audit_upload_interval_s", 0, UINT32_MAX, &v, err) < 0)
		return -1;
	p->audit_upload_interval_s = (uint32_t)v;
	if (get_bool(o, "", "bvp_wifi_status_allowed", &p->bvp_wifi_status_allowed, err) < 0)
		return -1;
	if (cj_get(o, "on_expiry")) {
		int e = 0;
		if (cj_str(o, "", "on_expiry", 0, &s, err) < 0 ||
		    parse_name(s, expiry_names, 3, "policy", "on_expiry", &e, err) < 0)
			return -1;
		p->on_expiry = (Cells__V1__ExpiryMode)e;
	}
	json_object *vps = cj_get(o, "vps");
	if (!vps || !json_object_is_type(vps, json_type_array))
		return cells_err_set(err, EINVAL, "vps: missing or not an array");
	size_t n = json_object_array_length(vps);
	if (n > POL_MAX_VPS)
		return cells_err_set(err, EINVAL, "vps: at most %d VPs", POL_MAX_VPS);
	p->vps = arena_alloc(a, n * sizeof *p->vps);
	for (size_t i = 0; i < n && p->vps; i++) {
		char path[32];
		snprintf(path, sizeof path, "vps[%zu]", i);
		Cells__V1__VpRule *r = arena_alloc(a, sizeof *r);
		if (!r)
			break;
		cells__v1__vp_rule__init(r);
		if (parse_vp(a, json_object_array_get_idx(vps, i), path, r, err) < 0)
			return -1;
		p->vps[p->n_vps++] = r;
	}
	return 0;
}

int pol_json_to_policy(const char *text, size_t n, uint8_t **payload, size_t *len, cells_err_t *err)
{
	if (n > POL_MAX_JSON)
		return cells_err_set(err, EMSGSIZE,
				     "policy JSON of %zu bytes is over the limit of %d", n,
				     POL_MAX_JSON);
	json_tokener *tok = json_tokener_new_ex(32);
	if (!tok)
		return cells_err_sys(err, ENOMEM, "policy JSON");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	json_object *o = json_tokener_parse_ex(tok, text, (int)n);
	enum json_tokener_error je = json_tokener_get_error(tok);
	size_t off = json_tokener_get_parse_end(tok);
	if (o && off < n) {
		/* trailing bytes: only white space allowed */
		for (size_t i = off; i < n; i++)
			if (text[i] != ' ' && text[i] != '\n' && text[i] != '\t' &&
			    text[i] != '\r') {
				json_object_put(o);
				o = NULL;
				je = json_tokener_error_parse_unexpected;
				break;
			}
	}
	json_tokener_free(tok);
	if (!o)
		return cells_err_set(err, EINVAL, "policy JSON does not parse at byte %zu: %s", off,
				     je == json_tokener_continue ? "unexpected end"
								 : json_tokener_error_desc(je));
	struct arena a = {0};
	Cells__V1__Policy p = CELLS__V1__POLICY__INIT;
	int r = parse_policy(&a, o, &p, err);
	json_object_put(o);
	if (r == 0 && a.oom)
		r = cells_err_sys(err, ENOMEM, "policy JSON");
	if (r == 0 && pol_policy_validate_template(&p, err) < 0)
		r = -1;
	size_t sz = r == 0 ? cells__v1__policy__get_packed_size(&p) : 0;
	if (r == 0 && sz > CELLS_MAX_POLICY)
		r = cells_err_set(err, EMSGSIZE, "policy of %zu bytes is over the limit of %d", sz,
				  CELLS_MAX_POLICY);
	uint8_t *b = r == 0 ? malloc(sz ? sz : 1) : NULL;
	if (r == 0 && !b)
		r = cells_err_sys(err, ENOMEM, "policy JSON");
	if (r == 0) {
		cells__v1__policy__pack(&p, b);
		*payload = b;
		*len = sz;
	}
	arena_free(&a);
	return r;
}

static json_object *jbool(bool b)
{
	return json_object_new_boolean(b ? 1 : 0);
}

json_object *pol_model_to_json(const struct pol_model *p)
{
	json_object *o = json_object_new_object();
	if (!o)
		return NULL;
	json_object_object_add(o, "version", json_object_new_int64((int64_t)p->version));
	json_object_object_add(o, "device", json_object_new_string(p->device_id));
	json_object_object_add(o, "issued_at", json_object_new_int64(p->issued_at));
	json_object_object_add(o, "expires_at", json_object_new_int64(p->expires_at));
	json_object_object_add(
	    o, "on_expiry",
	    json_object_new_string((unsigned)p->on_expiry < 3 ? expiry_names[p->on_expiry] : "?"));
	json_object_object_add(o, "audit_upload_interval_s",
			       json_object_new_int64(p->audit_upload_interval_s));
	json_object_object_add(o, "bvp_wifi_status_allowed", jbool(p->bvp_wifi_status_allowed));
	json_object *vps = json_object_new_array();
	for (size_t i = 0; i < p->nvps; i++) {
		const struct pol_vp_rule *r = &p->vps[i];
		json_object *v = json_object_new_object();
		json_object_object_add(v, "name", json_object_new_string(r->vp));
		json_object *d = json_object_new_object();
		for (size_t k = 0; k < r->ndevices; k++)
			json_object_object_add(
			    d, r->devices[k].cls,
			    json_object_new_string(pol_access_name(r->devices[k].mode)));
		json_object_object_add(v, "devices", d);
		json_object_object_add(v, "net", json_object_new_string(pol_net_name(r->net)));
		json_object *f = json_object_new_object();
		json_object_object_add(f, "may_be_foreground", jbool(r->may_be_foreground));
		json_object_object_add(f, "incoming_call_switches",
				       jbool(r->incoming_call_switches));
		json_object_object_add(v, "foreground", f);
		json_object *c = json_object_new_object();
		json_object_object_add(c, "allow_incoming", jbool(r->allow_incoming));
		json_object_object_add(c, "allow_outgoing", jbool(r->allow_outgoing));
		json_object_object_add(v, "calls", c);
		json_object *pw = json_object_new_object();
		json_object_object_add(pw, "required", jbool(r->password_required));
		json_object_object_add(pw, "min_length",
				       json_object_new_int64(r->password_min_length));
		json_object_object_add(pw, "max_failed_attempts",
				       json_object_new_int64(r->max_failed_attempts));
		json_object_object_add(pw, "wipe_on_limit", jbool(r->wipe_on_limit));
		json_object_object_add(v, "password", pw);
		unsigned u = (unsigned)r->audit_upload;
		json_object_object_add(v, "audit_upload",
				       json_object_new_string(u < 4 ? upload_names[u] : "?"));
		json_object_object_add(v, "encrypted", jbool(r->encrypted));
		json_object_object_add(v, "lock_on_expiry", jbool(r->lock_on_expiry));
		json_object_object_add(v, "lock_after_offline_s",
				       json_object_new_int64(r->lock_after_offline_s));
		json_object_object_add(v, "wipe_after_offline_s",
				       json_object_new_int64(r->wipe_after_offline_s));
		json_object *w = json_object_new_array();
		for (size_t k = 0; k < r->nwifi; k++)
			json_object_array_add(w, json_object_new_string(r->wifi[k]));
		json_object_object_add(v, "wifi_status_allowed", w);
		if (r->image[0])
			json_object_object_add(v, "image", json_object_new_string(r->image));
		json_object_array_add(vps, v);
	}
	json_object_object_add(o, "vps", vps);
	return o;
}

json_object *pol_policy_to_json(const Cells__V1__Policy *p)
{
	struct pol_model *m = malloc(sizeof *m);
	cells_err_t err;
	json_object *o = m && pol_model_from(p, m, &err) == 0 ? pol_model_to_json(m) : NULL;
	free(m);
	return o;
}
