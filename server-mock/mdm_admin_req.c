/* mdm_admin_req.c - parse an admin API request body once into a validated struct
 * (mdm_admin.h). The body is untrusted: its size is checked before anything is parsed,
 * the JSON nesting is bounded, it must be one object of known members of the right
 * types, and anything else is refused with a one-line reason. */
#include "cleanup.h"
#include "mdm_admin.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define BODY_DEPTH 16

void mdm_admin_req_clear(struct mdm_admin_req *r)
{
	free(r->policy_json);
	memset(r, 0, sizeof *r);
}

static int get_vp(json_object *v, char out[33], cells_err_t *err)
{
	if (!json_object_is_type(v, json_type_string))
		return cells_err_set(err, EINVAL, "\"vp\" must be a string");
	const char *s = json_object_get_string(v);
	if (cells_valid_name(s, err) < 0)
		return cells_err_prefix(err, "\"vp\"");
	snprintf(out, 33, "%s", s);
	return 0;
}

int mdm_admin_req_parse(enum mdm_admin_body kind, const char *body, size_t n,
			struct mdm_admin_req *out, cells_err_t *err)
{
	memset(out, 0, sizeof *out);
	out->recreate = true;
	out->ttl = 3600;
	if (n > MDM_ADMIN_BODY_MAX)
		return cells_err_set(err, EFBIG, "request body larger than %d bytes",
				     MDM_ADMIN_BODY_MAX);
	if (n == 0)
		return cells_err_set(err, EINVAL, "empty request body (a JSON object expected)");
	if (memchr(body, 0, n))
		return cells_err_set(err, EINVAL, "request body contains a NUL byte");
	json_tokener *tok = json_tokener_new_ex(BODY_DEPTH);
	if (!tok)
		return cells_err_sys(err, ENOMEM, "request body");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	json_object *o = json_tokener_parse_ex(tok, body, (int)n);
	enum json_tokener_error je = json_tokener_get_error(tok);
	size_t used = (size_t)json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (!o || je != json_tokener_success) {
		json_object_put(o);
		return cells_err_set(err, EINVAL, "request body is not valid JSON: %s",
				     json_tokener_error_desc(je == json_tokener_success ||
								     je == json_tokener_continue
								 ? json_tokener_error_parse_eof
								 : je));
	}
	for (; used < n; used++)
		if (!strchr(" \t\r\n", body[used])) {
			json_object_put(o);
			return cells_err_set(err, EINVAL,
					     "request body: data after the JSON value");
		}
	int r = 0;
	if (!json_object_is_type(o, json_type_object)) {
		r = cells_err_set(err, EINVAL, "request body must be a JSON object");
		goto done;
	}
	bool have_vp = false, have_policy = false;
	json_object_object_foreach(o, key, val)
	{
		if ((kind == MDM_BODY_VP || kind == MDM_BODY_WIPE) && !strcmp(key, "vp")) {
			if ((r = get_vp(val, out->vp, err)) < 0)
				goto done;
			have_vp = true;
		} else if (kind == MDM_BODY_WIPE && !strcmp(key, "recreate")) {
			if (!json_object_is_type(val, json_type_boolean)) {
				r = cells_err_set(err, EINVAL,
						  "\"recreate\" must be true or false");
				goto done;
			}
			out->recreate = json_object_get_boolean(val);
		} else if (kind == MDM_BODY_POLICY && !strcmp(key, "policy")) {
			if (!json_object_is_type(val, json_type_object)) {
				r = cells_err_set(err, EINVAL, "\"policy\" must be a JSON object");
				goto done;
			}
			const char *s = json_object_to_json_string_ext(val, JSON_C_TO_STRING_PLAIN);
			out->policy_json = s ? strdup(s) : NULL;
			if (!out->policy_json) {
				r = cells_err_sys(err, ENOMEM, "policy");
				goto done;
			}
			have_policy = true;
		} else if (kind == MDM_BODY_TOKEN && !strcmp(key, "ttl")) {
			int64_t t = json_object_get_int64(val);
			if (!json_object_is_type(val, json_type_int) || t < 1 ||
			    t > 30L * 24 * 3600) {
				r = cells_err_set(err, EINVAL, "\"ttl\" takes 1..2592000 seconds");
				goto done;
			}
			out->ttl = (long)t;
		} else {
			char k[40];
			snprintf(k, sizeof k, "%s", key);
			for (char *c = k; *c; c++)
				if (*c < 0x20 || *c > 0x7e)
					*c = '?';
			r = cells_err_set(err, EINVAL, "unknown member \"%s\"", k);
			goto done;
		}
	}
	if ((kind == MDM_BODY_VP || kind == MDM_BODY_WIPE) && !have_vp)
		r = cells_err_set(err, EINVAL, "missing member \"vp\"");
	else if (kind == MDM_BODY_POLICY && !have_policy)
		r = cells_err_set(err, EINVAL, "missing member \"policy\"");
done:
	json_object_put(o);
	if (r < 0)
		mdm_admin_req_clear(out);
	return r;
}
