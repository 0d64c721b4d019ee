/* mdm_admin_http.c - the admin HTTPS+JSON API and the web console (docs/openapi.yaml) on
 * a vhost of serve's lws context: its own port, TLS with a mandatory client certificate
 * issued by our CA, HTTP/1.1 only.
 *
 * Each request: the peer certificate (verified by OpenSSL against ca.pem) -> its serial
 * -> the admins table (revocation and role are read from the database every time; the
 * certificate's OU must name the same role) -> the route table below (method, path,
 * roles allowed) -> a handler. Changing calls (POST) also need the X-Cells-CSRF header
 * with the session's token (HMAC of the certificate serial under a key of this process;
 * GET /api/v1/session gives it), Content-Type application/json, an Origin (when sent)
 * equal to this listener's, and a Content-Length of at most MDM_ADMIN_BODY_MAX; each is
 * recorded in the admin audit log with its outcome, refused ones included. Every
 * response carries the anti-framing and no-store headers. */
#include "cleanup.h"
#include "cleanup_ssl.h"
#include "log.h"
#include "mdm.h"
#include "mdm_admin.h"
#include "mdm_audit.h"
#include "mdm_store.h"
#include "pol_json.h"
#include "pol_sig.h"
#include "util.h"
#include "wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libwebsockets.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define PRIO_WIPE 100 /* as mdm_queue.c */
#define PRIO_POLICY 50
#define PRIO_COMMAND 10
#define CHUNK 16384

struct resp {
	int status;
	const char *type;
	char *body; /* owned */
	size_t len, off;
	bool hdr_sent, close;
};

struct req {
	struct lws *wsi;
	char name[64];
	enum mdm_role role;
	char serial[80];
	bool post, authed, too_big;
	char path[256];
	const struct route *rt;
	char dev[33];
	char *body; /* owned */
	size_t blen;
	struct resp r;
};

typedef void (*handler_fn)(struct req *q);

struct route {
	const char *method; /* "GET" / "POST" */
	const char *path;   /* '*' = one device id */
	unsigned roles;	    /* MDM_ROLE_* allowed */
	const char *action; /* admin audit action (changing calls), NULL for reads */
	int body;	    /* enum mdm_admin_body, -1 none */
	handler_fn fn;
};

static struct {
	struct mdm *m;
	struct mdm_store *st;
	struct mdm_audit_store *audit;
	struct mdm_admin_store *as;
	uint8_t csrf_key[32];
	char origin[300];
} A;

/* ---- responses ---- */

static void respond(struct req *q, int status, const char *type, char *body, size_t len)
{
	free(q->r.body);
	q->r.status = status;
	q->r.type = type;
	q->r.body = body;
	q->r.len = len;
	q->r.off = 0;
	lws_callback_on_writable(q->wsi);
}

static void respond_json(struct req *q, int status, json_object *o)
{
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	char *b = strdup(s ? s : "null");
	json_object_put(o);
	if (!b) {
		q->r.close = true;
		respond(q, 500, "application/json", NULL, 0);
		return;
	}
	respond(q, status, "application/json", b, strlen(b));
}

/* {"error": reason}: one line, status 4xx/5xx */
static void respond_error(struct req *q, int status, const char *reason)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "error", json_object_new_string(reason));
	respond_json(q, status, o);
}

static int write_headers(struct req *q)
{
	uint8_t buf[LWS_PRE + 2048], *start = buf + LWS_PRE, *p = start,
				     *end = buf + sizeof buf - 1;
	static const struct {
		const char *n, *v;
	} sec[] = {
	    {"x-frame-options:", "DENY"},
	    {"content-security-policy:",
	     "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
	     "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"},
	    {"x-content-type-options:", "nosniff"},
	    {"cache-control:", "no-store"},
	    {"referrer-policy:", "no-referrer"},
	    {"cross-origin-opener-policy:", "same-origin"},
	    {"cross-origin-resource-policy:", "same-origin"},
	    {"strict-transport-security:", "max-age=31536000"},
	};
	if (lws_add_http_common_headers(q->wsi, (unsigned)q->r.status, q->r.type, q->r.len, &p,
					end))
		return -1;
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(sec); i++)
		if (lws_add_http_header_by_name(q->wsi, (const unsigned char *)sec[i].n,
						(const unsigned char *)sec[i].v,
						(int)strlen(sec[i].v), &p, end))
			return -1;
	if (q->r.close && lws_add_http_header_by_token(q->wsi, WSI_TOKEN_CONNECTION,
						       (const unsigned char *)"close", 5, &p, end))
		return -1;
	return lws_finalize_write_http_header(q->wsi, start, &p, end) ? -1 : 0;
}

/* From LWS_CALLBACK_HTTP_WRITEABLE: headers, then the body in chunks. <0: close. */
static int on_writeable(struct req *q)
{
	if (!q->r.status)
		return 0;
	if (!q->r.hdr_sent) {
		if (write_headers(q) < 0)
			return -1;
		q->r.hdr_sent = true;
		if (q->r.len) {
			lws_callback_on_writable(q->wsi);
			return 0;
		}
	} else {
		static uint8_t buf[LWS_PRE + CHUNK];
		size_t n = q->r.len - q->r.off;
		if (n > CHUNK)
			n = CHUNK;
		memcpy(buf + LWS_PRE, q->r.body + q->r.off, n);
		q->r.off += n;
		bool last = q->r.off == q->r.len;
		if (lws_write(q->wsi, buf + LWS_PRE, n,
			      last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) < (int)n)
			return -1;
		if (!last) {
			lws_callback_on_writable(q->wsi);
			return 0;
		}
	}
	bool close = q->r.close;
	struct lws *wsi = q->wsi;
	free(q->r.body);
	free(q->body);
	memset(q, 0, sizeof *q);
	if (close)
		return -1;
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* ---- audit of changing calls ---- */

static void admin_audit(struct req *q, const char *detail, const char *outcome)
{
	cells_err_t err = {0};
	char target[64];
	snprintf(target, sizeof target, "%s", q->dev[0] ? q->dev : "-");
	struct mdm_admin_event ev = {q->name, mdm_role_name(q->role), q->rt->action,
				     target,  detail ? detail : "{}", outcome};
	if (mdm_admin_audit_append(A.as, &ev, time(NULL), &err) < 0)
		log_warn("admin audit: %s", err.msg);
}

/* A changing call ends: record it, then answer. */
static void finish_change(struct req *q, int status, json_object *o, const char *detail,
			  const char *reason)
{
	char outcome[300];
	if (status < 300)
		snprintf(outcome, sizeof outcome, "ok");
	else
		snprintf(outcome, sizeof outcome, "%s %d: %s", status == 403 ? "refused" : "failed",
			 status, reason);
	admin_audit(q, detail, outcome);
	if (status < 300)
		respond_json(q, status, o);
	else {
		json_object_put(o);
		respond_error(q, status, reason);
	}
}

/* ---- signing and queueing (like mdm_queue.c, without its printing) ---- */

static int queue_signed(struct req *q, Cells__V1__Command *c, int prio, const char *dedup,
			const char *what, bool replace, json_object **out, cells_err_t *err)
{
	char cid[32];
	c->device_id = q->dev;
	struct mdm_qentry e = {0};
	int r = mdm_command_entry(A.m, c, prio, dedup, what, cid, &e, err);
	if (r == 0)
		r = mdm_store_queue_add(A.st, &e, replace, err);
	if (r >= 0) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "id", json_object_new_string(e.id));
		json_object_object_add(o, "device_id", json_object_new_string(e.device));
		json_object_object_add(o, "what", json_object_new_string(e.what));
		json_object_object_add(o, "state",
				       json_object_new_string(mdm_qstate_name(e.state)));
		json_object_object_add(o, "duplicate", json_object_new_boolean(r == 1));
		*out = o;
		r = 0;
	}
	mdm_qentry_clear(&e);
	return r;
}

/* ---- handlers ---- */

static void h_devices(struct req *q)
{
	cells_err_t err = {0};
	json_object *arr = NULL;
	if (mdm_store_devices_json(A.st, &arr, &err) < 0)
		return respond_error(q, 500, err.msg);
	respond_json(q, 200, arr);
}

static void h_images(struct req *q)
{
	cells_err_t err = {0};
	json_object *arr = NULL;
	if (mdm_images_json(A.st, &arr, &err) < 0)
		return respond_error(q, 500, err.msg);
	respond_json(q, 200, arr);
}

static json_object *find_device(json_object *arr, const char *id)
{
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *o = json_object_array_get_idx(arr, i), *v;
		if (json_object_object_get_ex(o, "device_id", &v) &&
		    !strcmp(json_object_get_string(v), id))
			return json_object_get(o);
	}
	return NULL;
}

/* VoIP numbers and VPs as the server knows them: from the acknowledged commands (and,
 * in h_device, the VPs the device reports) */
static void derive_vps(json_object *queue, json_object *receipts, json_object *vps,
		       json_object *voip)
{
	for (size_t i = 0; i < json_object_array_length(queue); i++) {
		json_object *e = json_object_array_get_idx(queue, i), *v;
		const char *what =
		    json_object_object_get_ex(e, "what", &v) ? json_object_get_string(v) : "";
		const char *state =
		    json_object_object_get_ex(e, "state", &v) ? json_object_get_string(v) : "";
		char vp[40], num[40];
		if (sscanf(what, "voip %39s %39[^ ]", vp, num) == 2 && strcmp(vp, "revoke") &&
		    !strcmp(state, "acknowledged")) {
			json_object_object_add(voip, vp, json_object_new_string(num));
		} else if (sscanf(what, "voip revoke %39s", vp) == 1 &&
			   !strcmp(state, "acknowledged")) {
			json_object_object_del(voip, vp);
		}
		/* the commands that name a VP: lock/unlock/wipe VP, voip VP ... */
		bool names_vp = !strncmp(what, "lock ", 5) || !strncmp(what, "unlock ", 7) ||
				!strncmp(what, "wipe ", 5) || !strncmp(what, "voip ", 5);
		if (names_vp && sscanf(what, "%*s %39s", vp) == 1 && strcmp(vp, "revoke") &&
		    !json_object_object_get_ex(vps, vp, NULL))
			json_object_object_add(vps, vp, json_object_new_boolean(true));
	}
	for (size_t i = 0; i < json_object_array_length(receipts); i++) {
		json_object *e = json_object_array_get_idx(receipts, i), *v;
		if (json_object_object_get_ex(e, "vp", &v) &&
		    !json_object_object_get_ex(vps, json_object_get_string(v), NULL))
			json_object_object_add(vps, json_object_get_string(v),
					       json_object_new_boolean(true));
	}
}

static void h_device(struct req *q)
{
	cells_err_t err = {0};
	json_object *arr = NULL, *queue = NULL, *rec = NULL, *rep = NULL;
	bool ok = false;
	if (mdm_store_devices_json(A.st, &arr, &err) < 0)
		return respond_error(q, 500, err.msg);
	json_object *d = find_device(arr, q->dev);
	json_object_put(arr);
	if (!d)
		return respond_error(q, 404, "no such enrolled device");
	if (mdm_store_queue_json(A.st, q->dev, &queue, &err) < 0 ||
	    mdm_store_receipts_json(A.st, q->dev, &rec, &err) < 0 ||
	    mdm_audit_verify_device(A.audit, q->dev, &ok, &rep, &err) < 0) {
		json_object_put(d);
		json_object_put(queue);
		json_object_put(rec);
		return respond_error(q, 500, err.msg);
	}
	json_object *vpo = json_object_new_object(), *voip = json_object_new_object();
	derive_vps(queue, rec, vpo, voip);
	json_object *rv = json_object_object_get(d, "vps"); /* as the device reports them */
	for (size_t i = 0; rv && i < json_object_array_length(rv); i++) {
		const char *n = json_object_get_string(
		    json_object_object_get(json_object_array_get_idx(rv, i), "name"));
		if (n && *n && !json_object_object_get_ex(vpo, n, NULL))
			json_object_object_add(vpo, n, json_object_new_boolean(true));
	}
	json_object *vps = json_object_new_array();
	json_object_object_foreach(vpo, k, v)
	{
		(void)v;
		json_object_array_add(vps, json_object_new_string(k));
	}
	json_object_put(vpo);
	json_object *audit = json_object_new_object();
	json_object_object_add(audit, "verified", json_object_new_boolean(ok));
	json_object_object_add(audit, "report", rep);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "device", d);
	json_object_object_add(o, "vps", vps);
	json_object_object_add(o, "voip", voip);
	json_object_object_add(o, "queue", queue);
	json_object_object_add(o, "receipts", rec);
	json_object_object_add(o, "audit", audit);
	respond_json(q, 200, o);
}

/* a query argument: 1 found (copied), 0 absent, -1 too long or too many arguments */
static int arg(struct req *q, const char *name, char *out, int len)
{
	char frag[300];
	size_t nl = strlen(name);
	for (int i = 0;; i++) {
		int fl = lws_hdr_fragment_length(q->wsi, WSI_TOKEN_HTTP_URI_ARGS, i);
		if (fl <= 0)
			return 0;
		if (i >= 32 || fl >= (int)sizeof frag)
			return -1;
		if (lws_hdr_copy_fragment(q->wsi, frag, sizeof frag, WSI_TOKEN_HTTP_URI_ARGS, i) <
		    0)
			return -1;
		if (!strncmp(frag, name, nl) && frag[nl] == '=') {
			if ((int)strlen(frag + nl + 1) >= len)
				return -1;
			snprintf(out, (size_t)len, "%s", frag + nl + 1);
			return 1;
		}
	}
}

static int csv_field(char **b, size_t *n, size_t *cap, const char *s, bool last)
{
	/* quoted; a leading = + - @ is prefixed with ' (no formula injection in
	 * spreadsheets) */
	size_t need = 2 * strlen(s) + 8;
	if (*n + need > *cap) {
		size_t nc = (*cap + need) * 2;
		char *nb = realloc(*b, nc);
		if (!nb)
			return -1;
		*b = nb;
		*cap = nc;
	}
	char *p = *b + *n;
	*p++ = '"';
	if (strchr("=+-@\t\r", s[0]) && s[0])
		*p++ = '\'';
	for (; *s; s++) {
		if (*s == '"')
			*p++ = '"';
		*p++ = *s;
	}
	*p++ = '"';
	*p++ = last ? '\n' : ',';
	*n = (size_t)(p - *b);
	return 0;
}

static void h_device_audit(struct req *q)
{
	cells_err_t err = {0};
	char vp[40], type[80], outcome[40], grep[200], since[32], until[32], limit[16], fmt[8];
	struct mdm_audit_filter f = {0};
	f.limit = 1000;
	int r;
#define ARG(n, b, field)                                                                           \
	if ((r = arg(q, n, b, sizeof b)) < 0)                                                      \
		return respond_error(q, 400,                                                       \
				     "query argument " n " too long (or too many arguments)");     \
	if (r)                                                                                     \
		field = b;
	const char *s_since = NULL, *s_until = NULL, *s_limit = NULL, *s_fmt = NULL;
	ARG("vp", vp, f.vp)
	ARG("type", type, f.type)
	ARG("outcome", outcome, f.outcome)
	ARG("grep", grep, f.grep)
	ARG("since", since, s_since)
	ARG("until", until, s_until)
	ARG("limit", limit, s_limit)
	ARG("format", fmt, s_fmt)
#undef ARG
	char *end;
	if (s_since && ((f.since_us = strtoll(s_since, &end, 10)) < 0 || *end || !*s_since))
		return respond_error(q, 400, "since takes microseconds since 1970");
	if (s_until && ((f.until_us = strtoll(s_until, &end, 10)) < 0 || *end || !*s_until))
		return respond_error(q, 400, "until takes microseconds since 1970");
	if (s_limit && ((f.limit = strtol(s_limit, &end, 10)) < 1 || f.limit > 100000 || *end))
		return respond_error(q, 400, "limit takes 1..100000");
	if (s_fmt && strcmp(s_fmt, "json") && strcmp(s_fmt, "csv"))
		return respond_error(q, 400, "format takes json or csv");
	if (mdm_store_device_known(A.st, q->dev, &err) != 1)
		return respond_error(q, 404, "no such enrolled device");
	json_object *arr = NULL;
	if (mdm_admin_audit_records(A.m->state_dir, q->dev, &f, &arr, &err) < 0)
		return respond_error(q, 500, err.msg);
	if (!s_fmt || !strcmp(s_fmt, "json"))
		return respond_json(q, 200, arr);
	char *b = NULL;
	size_t n = 0, cap = 0;
	static const char *const cols[] = {"seq",   "time_us", "vp",	 "actor",
					   "event", "outcome", "details"};
	int bad = 0;
	for (size_t c = 0; c < 7; c++)
		bad |= csv_field(&b, &n, &cap, cols[c], c == 6);
	for (size_t i = 0; !bad && i < json_object_array_length(arr); i++) {
		json_object *o = json_object_array_get_idx(arr, i), *v;
		for (size_t c = 0; c < 7; c++)
			bad |= csv_field(&b, &n, &cap,
					 json_object_object_get_ex(o, cols[c], &v)
					     ? json_object_get_string(v)
					     : "",
					 c == 6);
	}
	json_object_put(arr);
	if (bad) {
		free(b);
		return respond_error(q, 500, "out of memory");
	}
	respond(q, 200, "text/csv; charset=utf-8", b, n);
}

static void h_admin_audit(struct req *q)
{
	cells_err_t err = {0};
	json_object *arr = NULL;
	if (mdm_admin_audit_json(A.as, 0, &arr, &err) < 0)
		return respond_error(q, 500, err.msg);
	respond_json(q, 200, arr);
}

static void h_admin_audit_verify(struct req *q)
{
	cells_err_t err = {0};
	json_object *rep = NULL;
	bool ok;
	if (mdm_admin_audit_verify(A.as, &ok, &rep, &err) < 0)
		return respond_error(q, 500, err.msg);
	respond_json(q, 200, rep);
}

static void h_lock(struct req *q, bool unlock, const struct mdm_admin_req *b)
{
	cells_err_t err = {0};
	char detail[80], dedup[64], what[96];
	snprintf(detail, sizeof detail, "{\"vp\":\"%s\"}", b->vp);
	Cells__V1__Command c = CELLS__V1__COMMAND__INIT;
	Cells__V1__LockVp l = CELLS__V1__LOCK_VP__INIT;
	l.vp = (char *)b->vp;
	l.unlock = unlock;
	c.action_case = CELLS__V1__COMMAND__ACTION_LOCK;
	c.lock = &l;
	snprintf(dedup, sizeof dedup, "lock:%s", b->vp);
	snprintf(what, sizeof what, "%s %s", unlock ? "unlock" : "lock", b->vp);
	json_object *o = NULL;
	if (queue_signed(q, &c, PRIO_COMMAND, dedup, what, true, &o, &err) < 0)
		return finish_change(q, 500, NULL, detail, err.msg);
	finish_change(q, 201, o, detail, NULL);
}

static int parse_body(struct req *q, struct mdm_admin_req *b, char *detail, size_t dn)
{
	cells_err_t err = {0};
	if (mdm_admin_req_parse((enum mdm_admin_body)q->rt->body, q->body ? q->body : "", q->blen,
				b, &err) < 0) {
		finish_change(q, err.code == EFBIG ? 413 : 400, NULL, "{}", err.msg);
		return -1;
	}
	snprintf(detail, dn, "{}");
	return 0;
}

static void h_lock_any(struct req *q)
{
	struct mdm_admin_req b;
	char d[8];
	if (parse_body(q, &b, d, sizeof d) < 0)
		return;
	h_lock(q, !strcmp(q->rt->action, "device.unlock"), &b);
	mdm_admin_req_clear(&b);
}

static void h_wipe(struct req *q)
{
	cells_err_t err = {0};
	struct mdm_admin_req b;
	char d[8], detail[96], dedup[64], what[96];
	if (parse_body(q, &b, d, sizeof d) < 0)
		return;
	snprintf(detail, sizeof detail, "{\"vp\":\"%s\",\"recreate\":%s}", b.vp,
		 b.recreate ? "true" : "false");
	Cells__V1__Command c = CELLS__V1__COMMAND__INIT;
	Cells__V1__WipeVp w = CELLS__V1__WIPE_VP__INIT;
	w.vp = b.vp;
	w.recreate = b.recreate;
	c.action_case = CELLS__V1__COMMAND__ACTION_WIPE;
	c.wipe = &w;
	snprintf(dedup, sizeof dedup, "wipe:%s", b.vp);
	snprintf(what, sizeof what, "wipe %s", b.vp);
	json_object *o = NULL;
	if (queue_signed(q, &c, PRIO_WIPE, dedup, what, false, &o, &err) < 0)
		finish_change(q, 500, NULL, detail, err.msg);
	else
		finish_change(q, 201, o, detail, NULL);
	mdm_admin_req_clear(&b);
}

static void h_policy(struct req *q)
{
	cells_err_t err = {0};
	struct mdm_admin_req b;
	char d[8], detail[96];
	if (parse_body(q, &b, d, sizeof d) < 0)
		return;
	cleanup_free uint8_t *payload = NULL;
	size_t plen = 0;
	/* the server-side validation: the policy code every device runs */
	if (pol_json_to_policy(b.policy_json, strlen(b.policy_json), &payload, &plen, &err) < 0) {
		mdm_admin_req_clear(&b);
		return finish_change(q, 422, NULL, "{}", err.msg);
	}
	mdm_admin_req_clear(&b);
	Cells__V1__Policy *p = cells__v1__policy__unpack(NULL, plen, payload);
	if (!p)
		return finish_change(q, 422, NULL, "{}", "policy: malformed");
	if (p->device_id && *p->device_id && strcmp(p->device_id, q->dev)) {
		cells__v1__policy__free_unpacked(p, NULL);
		return finish_change(q, 422, NULL, "{}", "the policy names another device");
	}
	char *saved = p->device_id;
	p->device_id = q->dev;
	if (!p->issued_at)
		p->issued_at = time(NULL);
	uint64_t ver = p->version;
	snprintf(detail, sizeof detail, "{\"version\":%llu}", (unsigned long long)ver);
	size_t len = cells__v1__policy__get_packed_size(p);
	cleanup_free uint8_t *pb = malloc(len ? len : 1);
	cleanup_pkey EVP_PKEY *key = pb ? mdm_load_key(A.m, "signing.key", &err) : NULL;
	struct mdm_qentry e = {0};
	int r = -1;
	if (key) {
		cells__v1__policy__pack(p, pb);
		r = pol_sign_packed(CELLS__V1__SIGNED_KIND__SIGNED_POLICY, pb, len, key, &e.blob,
				    &e.blob_len, &err);
	}
	p->device_id = saved;
	cells__v1__policy__free_unpacked(p, NULL);
	if (r < 0)
		return finish_change(q, 500, NULL, detail, err.msg[0] ? err.msg : "out of memory");
	snprintf(e.device, sizeof e.device, "%s", q->dev);
	e.kind = MDM_QK_POLICY;
	e.priority = PRIO_POLICY;
	e.created = time(NULL);
	snprintf(e.dedup, sizeof e.dedup, "policy:%llu", (unsigned long long)ver);
	snprintf(e.what, sizeof e.what, "policy v%llu", (unsigned long long)ver);
	r = mdm_store_queue_add(A.st, &e, false, &err);
	if (r < 0) {
		mdm_qentry_clear(&e);
		return finish_change(q, 500, NULL, detail, err.msg);
	}
	json_object *o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_string(e.id));
	json_object_object_add(o, "device_id", json_object_new_string(e.device));
	json_object_object_add(o, "what", json_object_new_string(e.what));
	json_object_object_add(o, "version", json_object_new_int64((int64_t)ver));
	json_object_object_add(o, "state", json_object_new_string(mdm_qstate_name(e.state)));
	json_object_object_add(o, "duplicate", json_object_new_boolean(r == 1));
	mdm_qentry_clear(&e);
	finish_change(q, 201, o, detail, NULL);
}

static void h_token(struct req *q)
{
	cells_err_t err = {0};
	struct mdm_admin_req b;
	char d[8], detail[64];
	if (parse_body(q, &b, d, sizeof d) < 0)
		return;
	long ttl = b.ttl;
	mdm_admin_req_clear(&b);
	snprintf(detail, sizeof detail, "{\"ttl\":%ld}", ttl);
	uint8_t rnd[24];
	char tok[2 * sizeof rnd + 1 + 2 * MDM_ROOT_DIGEST_LEN + 1], dg[2 * MDM_ROOT_DIGEST_LEN + 1];
	if (RAND_bytes(rnd, sizeof rnd) != 1)
		return finish_change(q, 500, NULL, detail, "no randomness");
	if (mdm_root_digest_hex(A.m, dg, &err) < 0)
		return finish_change(q, 500, NULL, detail, err.msg);
	cells_hex(rnd, sizeof rnd, tok);
	tok[2 * sizeof rnd] = '.';
	memcpy(tok + 2 * sizeof rnd + 1, dg, sizeof dg);
	int64_t exp = time(NULL) + ttl;
	if (mdm_store_token_add(A.st, tok, exp, &err) < 0) {
		OPENSSL_cleanse(tok, sizeof tok);
		return finish_change(q, 500, NULL, detail, err.msg);
	}
	json_object *o = json_object_new_object();
	json_object_object_add(o, "token", json_object_new_string(tok));
	json_object_object_add(o, "expires_at", json_object_new_int64(exp));
	OPENSSL_cleanse(tok, sizeof tok);
	/* the token itself never goes to the admin audit log */
	finish_change(q, 201, o, detail, NULL);
}

static void h_session(struct req *q);

#define R_ALL MDM_ROLES_ALL
#define R_ADMIN MDM_ROLE_ADMIN
#define R_HELP (MDM_ROLE_ADMIN | MDM_ROLE_HELPDESK)
#define R_AUDIT (MDM_ROLE_ADMIN | MDM_ROLE_AUDITOR)
/* The API: who may do what (the roles of docs/openapi.yaml). */
static const struct route routes[] = {
    {"GET", "/api/v1/session", R_ALL, NULL, -1, h_session},
    {"GET", "/api/v1/devices", R_ALL, NULL, -1, h_devices},
    {"GET", "/api/v1/devices/*", R_ALL, NULL, -1, h_device},
    {"GET", "/api/v1/devices/*/audit", R_ALL, NULL, -1, h_device_audit},
    {"GET", "/api/v1/images", R_ALL, NULL, -1, h_images},
    {"GET", "/api/v1/admin-audit", R_AUDIT, NULL, -1, h_admin_audit},
    {"GET", "/api/v1/admin-audit/verify", R_AUDIT, NULL, -1, h_admin_audit_verify},
    {"POST", "/api/v1/devices/*/policy", R_ADMIN, "device.policy", MDM_BODY_POLICY, h_policy},
    {"POST", "/api/v1/devices/*/lock", R_HELP, "device.lock", MDM_BODY_VP, h_lock_any},
    {"POST", "/api/v1/devices/*/unlock", R_HELP, "device.unlock", MDM_BODY_VP, h_lock_any},
    {"POST", "/api/v1/devices/*/wipe", R_ADMIN, "device.wipe", MDM_BODY_WIPE, h_wipe},
    {"POST", "/api/v1/enroll-tokens", R_HELP, "enroll-token.create", MDM_BODY_TOKEN, h_token},
};
static const size_t nroutes = CELLS_ARRAY_SIZE(routes);

static void h_session(struct req *q)
{
	uint8_t mac[32];
	unsigned ml = sizeof mac;
	char hex[65];
	HMAC(EVP_sha256(), A.csrf_key, sizeof A.csrf_key, (const uint8_t *)q->serial,
	     strlen(q->serial), mac, &ml);
	cells_hex(mac, sizeof mac, hex);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "name", json_object_new_string(q->name));
	json_object_object_add(o, "role", json_object_new_string(mdm_role_name(q->role)));
	json_object_object_add(o, "csrf", json_object_new_string(hex));
	json_object *may = json_object_new_array();
	for (size_t i = 0; i < nroutes; i++)
		if (routes[i].action && (routes[i].roles & q->role))
			json_object_array_add(may, json_object_new_string(routes[i].action));
	json_object_object_add(o, "may", may);
	respond_json(q, 200, o);
}

/* path matches pattern ('*' = a device id: 32 lower-case hex digits, copied to dev) */
static bool match(const char *pat, const char *path, char dev[33])
{
	while (*pat) {
		if (*pat == '*') {
			size_t n = strspn(path, "0123456789abcdef");
			if (n != 32)
				return false;
			memcpy(dev, path, 32);
			dev[32] = 0;
			path += 32;
			pat++;
		} else if (*pat++ != *path++) {
			return false;
		}
	}
	return *path == 0;
}

/* ---- the request ---- */

static int authenticate(struct req *q, const char **why)
{
	cells_err_t err = {0};
	SSL *ssl = lws_get_ssl(q->wsi);
	*why = "a client certificate of this MDM is required";
	if (!ssl)
		return -1;
	cleanup_x509 X509 *c = SSL_get1_peer_certificate(ssl);
	if (!c || SSL_get_verify_result(ssl) != X509_V_OK)
		return -1;
	char ou[32] = "";
	X509_NAME_get_text_by_NID(X509_get_subject_name(c), NID_organizationalUnitName, ou,
				  sizeof ou);
	*why = "not an admin certificate, or revoked";
	if (mdm_admin_cert_serial(c, q->serial) < 0)
		return -1;
	int k = mdm_admin_store_lookup(A.as, q->serial, q->name, &q->role, &err);
	if (k < 0) {
		log_warn("admin lookup: %s", err.msg);
		*why = "admin lookup failed";
		return -2;
	}
	if (k == 0 || mdm_role_parse(ou) != q->role)
		return -1;
	return 0;
}

/* 0, or the status of the refusal (403 CSRF/origin, 415 content type) */
static int csrf_check(struct req *q, const char **why)
{
	char tok[80] = "", origin[300] = "", host[256] = "", ct[128] = "";
	*why = "missing or wrong X-Cells-CSRF header (GET /api/v1/session gives the token)";
	if (lws_hdr_custom_length(q->wsi, "x-cells-csrf:", 13) <= 0 ||
	    lws_hdr_custom_copy(q->wsi, tok, sizeof tok, "x-cells-csrf:", 13) != 64)
		return 403;
	uint8_t mac[32], got[32];
	unsigned ml = sizeof mac;
	HMAC(EVP_sha256(), A.csrf_key, sizeof A.csrf_key, (const uint8_t *)q->serial,
	     strlen(q->serial), mac, &ml);
	if (cells_unhex(tok, got, sizeof got) < 0 || CRYPTO_memcmp(got, mac, sizeof mac))
		return 403;
	if (lws_hdr_total_length(q->wsi, WSI_TOKEN_ORIGIN) > 0) {
		*why = "cross-origin request refused";
		if (lws_hdr_copy(q->wsi, origin, sizeof origin, WSI_TOKEN_ORIGIN) <= 0 ||
		    lws_hdr_copy(q->wsi, host, sizeof host, WSI_TOKEN_HOST) <= 0)
			return 403;
		char want[300];
		snprintf(want, sizeof want, "https://%s", host);
		if (strcmp(origin, want))
			return 403;
	}
	*why = "Content-Type must be application/json";
	if (lws_hdr_copy(q->wsi, ct, sizeof ct, WSI_TOKEN_HTTP_CONTENT_TYPE) <= 0 ||
	    strncmp(ct, "application/json", 16) || (ct[16] && ct[16] != ';'))
		return 415;
	return 0;
}

static const char *web_type(const char *path);
static int web_find(const char *path, const unsigned char **data, size_t *len);

static void serve_static(struct req *q)
{
	const unsigned char *d;
	size_t n;
	const char *p = !strcmp(q->path, "/") ? "/index.html" : q->path;
	if (web_find(p, &d, &n) < 0)
		return respond_error(q, 404, "not found");
	char *b = malloc(n ? n : 1);
	if (!b)
		return respond_error(q, 500, "out of memory");
	memcpy(b, d, n);
	respond(q, 200, web_type(p), b, n);
}

/* LWS_CALLBACK_HTTP: route, authorise; a GET is answered now, a POST when its body is in */
static int on_http(struct req *q, struct lws *wsi, const char *uri)
{
	memset(q, 0, sizeof *q);
	q->wsi = wsi;
	const char *why;
	char cl[24] = "";
	q->post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
	bool get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
	if (!get && !q->post) {
		q->r.close = true;
		respond_error(q, 405, "only GET and POST");
		return 0;
	}
	if (strlen(uri) >= sizeof q->path) {
		q->r.close = q->post;
		respond_error(q, 414, "path too long");
		return 0;
	}
	snprintf(q->path, sizeof q->path, "%s", uri);
	int a = authenticate(q, &why);
	if (a < 0) {
		q->r.close = true;
		respond_error(q, a == -2 ? 500 : 401, why);
		return 0;
	}
	q->authed = true;
	if (strncmp(q->path, "/api/", 5)) {
		if (q->post) {
			q->r.close = true;
			respond_error(q, 405, "static files are GET only");
		} else {
			serve_static(q);
		}
		return 0;
	}
	bool path_known = false;
	for (size_t i = 0; i < nroutes; i++) {
		if (!match(routes[i].path, q->path, q->dev))
			continue;
		path_known = true;
		if (!strcmp(routes[i].method, q->post ? "POST" : "GET")) {
			q->rt = &routes[i];
			break;
		}
	}
	if (!q->rt) {
		q->dev[0] = 0;
		q->r.close = q->post;
		respond_error(q, path_known ? 405 : 404,
			      path_known ? "method not allowed here" : "no such API path");
		return 0;
	}
	if (!q->post) {
		if (!(q->rt->roles & q->role)) {
			respond_error(q, 403, "your role may not read this");
			return 0;
		}
		q->rt->fn(q);
		return 0;
	}
	/* a changing call: everything checked before its body is read */
	long long clen = -1;
	int cs;
	if (lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
		char *end;
		clen = strtoll(cl, &end, 10);
		if (*end || !cl[0])
			clen = -1;
	}
	q->r.close = true; /* after a refusal the unread body must not be taken as a request */
	if (!(q->rt->roles & q->role))
		finish_change(q, 403, NULL, "{}", "your role may not do this");
	else if ((cs = csrf_check(q, &why)))
		finish_change(q, cs, NULL, "{}", why);
	else if (clen < 0)
		finish_change(q, 411, NULL, "{}", "Content-Length required");
	else if (clen > MDM_ADMIN_BODY_MAX)
		finish_change(q, 413, NULL, "{}", "request body too large");
	else if (q->rt->body >= 0 && mdm_store_device_known(A.st, q->dev, NULL) != 1 &&
		 strchr(q->rt->path, '*'))
		finish_change(q, 404, NULL, "{}", "no such enrolled device");
	else {
		q->r.close = false;
		if (clen == 0) {
			q->rt->fn(q);
			return 0;
		}
		q->body = malloc((size_t)clen + 1);
		if (!q->body) {
			q->r.close = true;
			respond_error(q, 500, "out of memory");
		}
	}
	return 0;
}

static int on_body(struct req *q, const void *in, size_t len)
{
	if (!q->rt || q->r.status || !q->body)
		return 0; /* answered already: the connection closes after the answer */
	if (q->blen + len > MDM_ADMIN_BODY_MAX) {
		q->too_big = true;
		return 0;
	}
	memcpy(q->body + q->blen, in, len);
	q->blen += len;
	return 0;
}

static void on_body_done(struct req *q)
{
	if (!q->rt || q->r.status)
		return;
	if (q->too_big) {
		q->r.close = true;
		return finish_change(q, 413, NULL, "{}", "request body too large");
	}
	q->rt->fn(q);
}

static int cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	struct req *q = user;
	switch (reason) {
	case LWS_CALLBACK_OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION:
		/* len is OpenSSL's preverify_ok: never overrule a failed chain check */
		return len ? 0 : 1;
	case LWS_CALLBACK_HTTP:
		return on_http(q, wsi, in ? (const char *)in : "");
	case LWS_CALLBACK_HTTP_BODY:
		return on_body(q, in, len);
	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		on_body_done(q);
		return 0;
	case LWS_CALLBACK_HTTP_WRITEABLE:
		if (q->r.status) {
			q->wsi = wsi;
			return on_writeable(q);
		}
		return 0;
	case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
	case LWS_CALLBACK_CLOSED_HTTP:
		if (q) {
			free(q->r.body);
			free(q->body);
			memset(q, 0, sizeof *q);
		}
		return 0;
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* ---- the web console's files (mdm_admin_web.c, generated from server-mock/web) ---- */

struct mdm_web_file {
	const char *path;
	const unsigned char *data;
	size_t len;
};
extern const struct mdm_web_file mdm_web_files[];
extern const size_t mdm_web_nfiles;

static int web_find(const char *path, const unsigned char **data, size_t *len)
{
	for (size_t i = 0; i < mdm_web_nfiles; i++)
		if (!strcmp(mdm_web_files[i].path, path)) {
			*data = mdm_web_files[i].data;
			*len = mdm_web_files[i].len;
			return 0;
		}
	return -1;
}

static const char *web_type(const char *path)
{
	const char *dot = strrchr(path, '.');
	if (dot && !strcmp(dot, ".html"))
		return "text/html; charset=utf-8";
	if (dot && !strcmp(dot, ".js"))
		return "text/javascript; charset=utf-8";
	if (dot && !strcmp(dot, ".css"))
		return "text/css; charset=utf-8";
	if (dot && !strcmp(dot, ".svg"))
		return "image/svg+xml";
	return "application/octet-stream";
}

/* ---- the listener ---- */

int mdm_admin_listen(struct lws_context *ctx, const struct mdm_admin_srv_opts *o, cells_err_t *err)
{
	static struct lws_protocols protocols[] = {
	    {"cells-admin-http", cb, sizeof(struct req), 0, 0, NULL, 0},
	    {NULL, NULL, 0, 0, 0, NULL, 0},
	};
	static char cert[PATH_MAX], key[PATH_MAX], ca[PATH_MAX];
	A.m = o->m;
	A.st = o->st;
	A.audit = o->audit;
	if (RAND_bytes(A.csrf_key, sizeof A.csrf_key) != 1)
		return cells_err_set(err, EIO, "admin listener: no randomness");
	if (mdm_admin_store_open(o->m->state_dir, &A.as, err) < 0)
		return cells_err_prefix(err, "admin listener");
	mdm_path(o->m, "server.pem", cert);
	mdm_path(o->m, "server.key", key);
	mdm_path(o->m, "ca.pem", ca);
	struct lws_context_creation_info vi;
	memset(&vi, 0, sizeof vi);
	vi.vhost_name = "cells-admin";
	vi.port = o->port;
	vi.iface = o->host;
	vi.protocols = protocols;
	/* a client certificate is mandatory here (no PEER_CERT_NOT_REQUIRED) */
	vi.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
		     LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT |
		     LWS_SERVER_OPTION_DISABLE_IPV6;
	vi.ssl_cert_filepath = cert;
	vi.ssl_private_key_filepath = key;
	vi.ssl_ca_filepath = ca;
	vi.ssl_options_set = SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1 |
			     SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION;
	vi.alpn = "http/1.1";
	vi.timeout_secs = 20;
	vi.keepalive_timeout = 30;
	if (!lws_create_vhost(ctx, &vi)) {
		mdm_admin_store_close(A.as);
		A.as = NULL;
		return cells_err_set(err, EADDRINUSE, "admin listener: cannot listen on %s:%d",
				     o->host, o->port);
	}
	log_info("admin API and console on https://%s:%d", o->host, o->port);
	return 0;
}

void mdm_admin_stop(void)
{
	mdm_admin_store_close(A.as);
	A.as = NULL;
}
