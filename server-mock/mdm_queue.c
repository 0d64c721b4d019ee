/* mdm_queue.c - admin commands on the device registry and the per-device command
 * queue: they work against the state dir's database, so they work whether or not the
 * server runs (a running server sees the database change and sends new entries at
 * once, mdm_serve.c).
 *
 * Priorities: a wipe is 100, a policy 50, other commands 10. De-duplication keys: a
 * policy version per device ("policy:V"), a wipe per VP ("wipe:VP"), a VoIP assignment
 * per VP ("voip:VP", a newer one replaces a queued older one). */
#include "cleanup.h"
#include "cleanup_ssl.h"
#include "mdm.h"
#include "mdm_store.h"
#include "pol_policy.h"
#include "pol_sig.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <pthread.h>

#include "pol_json.h"

#define PRIO_WIPE 100
#define PRIO_POLICY 50
#define PRIO_COMMAND 10

static void print_json(json_object *o)
{
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
}

int mdm_cmd_devices(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	cells_err_t err = {0};
	if (argc)
		return mdm_usage(cmd);
	struct mdm_store *s = mdm_open_store(m, "devices");
	json_object *arr = NULL;
	if (!s)
		return 1;
	int r = mdm_store_devices_json(s, &arr, &err);
	mdm_store_close(s);
	if (r < 0) {
		fprintf(stderr, "cells-mdm: devices: %s\n", err.msg);
		return 1;
	}
	if (m->json) {
		print_json(arr);
	} else {
		printf("%-32s %-7s %-7s %-15s %-7s %-5s %-6s %s\n", "DEVICE", "ONLINE", "POLICY",
		       "COMPLIANCE", "PENDING", "ACKED", "FAILED", "REASONS / AUDIT");
		for (size_t i = 0; i < json_object_array_length(arr); i++) {
			json_object *o = json_object_array_get_idx(arr, i);
#define F(k) json_object_object_get(o, k)
			/* the reasons, comma-joined, and an audit alert when there is one */
			char why[512] = "";
			json_object *rs = F("compliance_reasons");
			for (size_t k = 0; rs && k < json_object_array_length(rs); k++) {
				size_t l = strlen(why);
				snprintf(why + l, sizeof why - l, "%s%s", l ? "," : "",
					 json_object_get_string(json_object_array_get_idx(rs, k)));
			}
			const char *flag = json_object_get_string(F("audit_flag"));
			if (flag && *flag) {
				size_t l = strlen(why);
				snprintf(why + l, sizeof why - l, "%saudit: %s", l ? "; " : "",
					 flag);
			}
			printf("%-32s %-7s %-7lld %-15s %-7lld %-5lld %-6lld %s\n",
			       json_object_get_string(F("device_id")),
			       json_object_get_boolean(F("online")) ? "yes" : "no",
			       (long long)json_object_get_int64(F("policy_version")),
			       json_object_get_string(F("compliance")),
			       (long long)json_object_get_int64(F("pending")),
			       (long long)json_object_get_int64(F("acknowledged")),
			       (long long)json_object_get_int64(F("failed")), why[0] ? why : "-");
			/* its VPs as it last reported them, one line each */
			json_object *vps = F("vps");
			for (size_t k = 0; vps && k < json_object_array_length(vps); k++) {
				json_object *v = json_object_array_get_idx(vps, k);
#define V(key) json_object_object_get(v, key)
				const char *img = json_object_get_string(V("image"));
				const char *num = json_object_get_string(V("number"));
				printf(
				    "  vp %-16s %-8s %-10s %-8s %-24s %s\n",
				    json_object_get_string(V("name")),
				    json_object_get_boolean(V("running")) ? "running" : "stopped",
				    json_object_get_boolean(V("foreground")) ? "foreground"
									     : "background",
				    json_object_get_boolean(V("locked")) ? "locked" : "unlocked",
				    img && *img ? img : "(local image)", num && *num ? num : "-");
#undef V
			}
#undef F
		}
	}
	json_object_put(arr);
	return 0;
}

/* The outcome of queueing e (dup: it was a duplicate of a live entry) in out. */
static void enqueued(struct mdm *m, const struct mdm_qentry *e, int dup, json_object *out)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_string(e->id));
	json_object_object_add(o, "device_id", json_object_new_string(e->device));
	json_object_object_add(o, "what", json_object_new_string(e->what));
	json_object_object_add(o, "state", json_object_new_string(mdm_qstate_name(e->state)));
	json_object_object_add(o, "duplicate", json_object_new_boolean(dup == 1));
	json_object_array_add(out, o);
	if (!m->json)
		printf("%s %s for %s: %s\n", dup == 1 ? "already queued:" : "queued", e->what,
		       e->device, e->id);
}

/* Build the signed policy for one device from the JSON's payload. */
static int policy_for(const uint8_t *payload, size_t n, const char *device, EVP_PKEY *key,
		      uint8_t **out, size_t *out_len, uint64_t *version, cells_err_t *err)
{
	Cells__V1__Policy *p = cells__v1__policy__unpack(NULL, n, payload);
	if (!p)
		return cells_err_set(err, EBADMSG, "policy: malformed payload");
	if (p->device_id && *p->device_id && strcmp(p->device_id, device)) {
		int r = cells_err_set(err, EINVAL, "the policy names device %s, not %s",
				      p->device_id, device);
		cells__v1__policy__free_unpacked(p, NULL);
		return r;
	}
	char *saved = p->device_id;
	p->device_id = (char *)device;
	if (!p->issued_at)
		p->issued_at = time(NULL);
	*version = p->version;
	size_t len = cells__v1__policy__get_packed_size(p);
	cleanup_free uint8_t *b = malloc(len ? len : 1);
	int r = -1;
	if (b) {
		cells__v1__policy__pack(p, b);
		r = pol_sign_packed(CELLS__V1__SIGNED_KIND__SIGNED_POLICY, b, len, key, out,
				    out_len, err);
	} else {
		cells_err_sys(err, ENOMEM, "policy");
	}
	p->device_id = saved;
	cells__v1__policy__free_unpacked(p, NULL);
	return r;
}

/* A slice of mdm_policy_sign_each's work: one thread, its own copy of the key. */
struct sign_job {
	pthread_t th;
	const uint8_t *payload;
	size_t plen;
	char *const *ids;
	struct mdm_qentry *e;
	size_t from, to;
	EVP_PKEY *key; /* owned (a copy) */
	cells_err_t err;
	int rc;
};

static void *sign_slice(void *arg)
{
	struct sign_job *j = arg;
	for (size_t i = j->from; i < j->to; i++) {
		uint64_t ver = 0;
		struct mdm_qentry *e = &j->e[i];
		if (policy_for(j->payload, j->plen, j->ids[i], j->key, &e->blob, &e->blob_len, &ver,
			       &j->err) < 0) {
			j->rc = -1;
			break;
		}
		snprintf(e->device, sizeof e->device, "%s", j->ids[i]);
		e->kind = MDM_QK_POLICY;
		e->priority = PRIO_POLICY;
		e->created = time(NULL);
		snprintf(e->dedup, sizeof e->dedup, "policy:%llu", (unsigned long long)ver);
		snprintf(e->what, sizeof e->what, "policy v%llu", (unsigned long long)ver);
	}
	return NULL;
}

int mdm_policy_sign_each(const uint8_t *payload, size_t plen, char *const *ids, size_t n,
			 EVP_PKEY *key, struct mdm_qentry *e, cells_err_t *err)
{
	struct sign_job jobs[MDM_SIGN_THREADS_MAX];
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t nt = cpus > 0 ? (size_t)cpus : 1;
	if (nt > MDM_SIGN_THREADS_MAX)
		nt = MDM_SIGN_THREADS_MAX;
	if (nt > n / 64 + 1) /* a few devices: not worth a thread */
		nt = n / 64 + 1;
	size_t started = 0;
	int rc = 0;
	memset(jobs, 0, sizeof jobs);
	for (size_t t = 0; t < nt; t++) {
		struct sign_job *j = &jobs[t];
		j->payload = payload;
		j->plen = plen;
		j->ids = ids;
		j->e = e;
		j->from = n * t / nt;
		j->to = n * (t + 1) / nt;
		j->key = EVP_PKEY_dup(key);
		if (!j->key) {
			rc = cells_err_ssl(err, "signing key copy");
			break;
		}
		if (t == 0)
			continue; /* slice 0: this thread, below */
		int pe = pthread_create(&j->th, NULL, sign_slice, j);
		if (pe != 0) {
			rc = cells_err_sys(err, pe, "signing thread");
			EVP_PKEY_free(j->key);
			j->key = NULL;
			break;
		}
		started = t;
	}
	if (rc == 0)
		sign_slice(&jobs[0]);
	for (size_t t = 1; t <= started; t++)
		pthread_join(jobs[t].th, NULL);
	for (size_t t = 0; t < nt; t++) {
		EVP_PKEY_free(jobs[t].key);
		if (rc == 0 && jobs[t].rc < 0) {
			*err = jobs[t].err;
			rc = -1;
		}
	}
	if (rc < 0)
		for (size_t i = 0; i < n; i++)
			mdm_qentry_clear(&e[i]);
	return rc;
}

int mdm_cmd_policy_push(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	cells_err_t err = {0};
	if (argc != 2)
		return mdm_usage(cmd);
	const char *target = argv[0], *file = argv[1];
	cleanup_free uint8_t *data = NULL;
	size_t n;
	if (cells_read_file(file, 256 * 1024, &data, &n, &err) < 0) {
		fprintf(stderr, "cells-mdm: policy push: %s\n", err.msg);
		return 1;
	}
	/* a signed policy (POLICY.bin of `policy sign`: a PolicyBundle, or a bare Signed) is
	 * pushed as it is (its Signed policy; the device has the delegations). It may begin
	 * with '\n' (protobuf field 1) like JSON: what decodes as a signed policy is one */
	cleanup_signed Cells__V1__Signed *pre = NULL;
	struct pol_bundle bundle;
	if (pol_bundle_decode(data, n, &bundle, &err) == 0) {
		cleanup_free uint8_t *sb = NULL;
		size_t sn;
		int r = pol_signed_pack(bundle.policy, &sb, &sn, &err);
		pol_bundle_free(&bundle);
		if (r < 0 || cells_signed_decode(sb, sn, &pre, &err) < 0) {
			fprintf(stderr, "cells-mdm: policy push: %s: %s\n", file, err.msg);
			return 1;
		}
	}
	size_t ws = 0;
	while (ws < n && (data[ws] == ' ' || data[ws] == '\n' || data[ws] == '\t'))
		ws++;
	bool is_json = !pre;
	cleanup_free uint8_t *payload = NULL;
	size_t plen = 0;
	if (is_json && (ws == n || data[ws] != '{')) {
		fprintf(stderr, "cells-mdm: policy push: %s: %s\n", file, err.msg);
		return 1;
	} else if (is_json &&
		   pol_json_to_policy((const char *)data, n, &payload, &plen, &err) < 0) {
		fprintf(stderr, "cells-mdm: policy push: %s: %s\n", file, err.msg);
		return 1;
	}
	cleanup_pkey EVP_PKEY *key = is_json ? mdm_load_key(m, "signing.key", &err) : NULL;
	if (is_json && !key) {
		fprintf(stderr, "cells-mdm: policy push: %s\n", err.msg);
		return 1;
	}
	struct mdm_store *s = mdm_open_store(m, "policy push");
	if (!s)
		return 1;
	char **list = NULL;
	size_t cnt = 0;
	if (mdm_targets(s, target, &list, &cnt, &err) < 0) {
		fprintf(stderr, "cells-mdm: policy push: %s\n", err.msg);
		mdm_store_close(s);
		return 1;
	}
	json_object *out = json_object_new_array();
	int rc = 0;
	int64_t t0 = cells_mono_ns();
	/* JSON: one policy per device (each names its device), signed on several threads
	 * first; then every entry is queued in one transaction */
	struct mdm_qentry *es = calloc(cnt ? cnt : 1, sizeof *es);
	if (!es) {
		cells_err_sys(&err, ENOMEM, "policy push");
		rc = 1;
	} else if (!pre && mdm_policy_sign_each(payload, plen, list, cnt, key, es, &err) < 0)
		rc = 1;
	for (size_t i = 0; !rc && pre && i < cnt; i++) {
		struct mdm_qentry *e = &es[i];
		uint64_t ver = 0;
		snprintf(e->device, sizeof e->device, "%s", list[i]);
		if (pol_signed_pack(pre, &e->blob, &e->blob_len, &err) < 0) {
			rc = 1;
			break;
		}
		Cells__V1__Policy *pp =
		    cells__v1__policy__unpack(NULL, pre->payload.len, pre->payload.data);
		ver = pp ? pp->version : 0;
		if (pp)
			cells__v1__policy__free_unpacked(pp, NULL);
		e->kind = MDM_QK_POLICY;
		e->priority = PRIO_POLICY;
		e->created = time(NULL);
		snprintf(e->dedup, sizeof e->dedup, "policy:%llu", (unsigned long long)ver);
		snprintf(e->what, sizeof e->what, "policy v%llu", (unsigned long long)ver);
	}
	/* every entry in one transaction, the inserts pipelined on PostgreSQL */
	cleanup_free int *dup = calloc(cnt ? cnt : 1, sizeof *dup);
	if (!rc && !dup) {
		cells_err_sys(&err, ENOMEM, "policy push");
		rc = 1;
	}
	if (!rc &&
	    (mdm_store_begin(s, &err) < 0 || mdm_store_queue_add_many(s, es, cnt, dup, &err) < 0)) {
		rc = 1;
	}
	for (size_t i = 0; !rc && i < cnt; i++)
		enqueued(m, &es[i], dup[i], out);
	if (!rc && mdm_store_commit(s, &err) < 0)
		rc = 1;
	for (size_t i = 0; es && i < cnt; i++)
		mdm_qentry_clear(&es[i]);
	free(es);
	if (rc && err.msg[0])
		fprintf(stderr, "cells-mdm: policy push: %s\n", err.msg);
	if (!rc && m->json)
		print_json(out);
	else if (!rc && cnt > 1)
		printf("queued for %zu devices in %.3f s\n", cnt,
		       (double)(cells_mono_ns() - t0) / 1e9);
	else if (!rc && !cnt)
		printf("no enrolled device: nothing queued\n");
	json_object_put(out);
	mdm_store_free_ids(list, cnt);
	mdm_store_close(s);
	return rc;
}

int mdm_cmd_command_list(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	cells_err_t err = {0};
	if (argc > 1)
		return mdm_usage(cmd);
	struct mdm_store *s = mdm_open_store(m, "command list");
	json_object *arr = NULL;
	if (!s)
		return 1;
	int r = mdm_store_queue_json(s, argc ? argv[0] : NULL, &arr, &err);
	mdm_store_close(s);
	if (r < 0) {
		fprintf(stderr, "cells-mdm: command list: %s\n", err.msg);
		return 1;
	}
	if (m->json) {
		print_json(arr);
	} else {
		printf("%-18s %-32s %-22s %-4s %-12s %s\n", "ID", "DEVICE", "WHAT", "PRIO", "STATE",
		       "REASON");
		for (size_t i = 0; i < json_object_array_length(arr); i++) {
			json_object *o = json_object_array_get_idx(arr, i);
#define F(k) json_object_object_get(o, k)
			printf("%-18s %-32s %-22s %-4d %-12s %s\n", json_object_get_string(F("id")),
			       json_object_get_string(F("device_id")),
			       json_object_get_string(F("what")),
			       json_object_get_int(F("priority")),
			       json_object_get_string(F("state")),
			       json_object_get_string(F("reason")));
#undef F
		}
	}
	json_object_put(arr);
	return 0;
}

int mdm_cmd_command_cancel(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	cells_err_t err = {0};
	if (argc != 1)
		return mdm_usage(cmd);
	struct mdm_store *s = mdm_open_store(m, "command cancel");
	if (!s)
		return 1;
	int r = mdm_store_queue_cancel(s, argv[0], &err);
	mdm_store_close(s);
	if (r < 0) {
		fprintf(stderr, "cells-mdm: command cancel: %s\n", err.msg);
		return 1;
	}
	if (m->json)
		printf("{\"id\":\"%s\",\"state\":\"cancelled\"}\n", argv[0]);
	else
		printf("cancelled %s\n", argv[0]);
	return 0;
}

/* Sign a Command for device and queue it. */
int mdm_command_entry(const struct mdm *m, Cells__V1__Command *c, int prio, const char *dedup,
		      const char *what, char cid[32], struct mdm_qentry *e, cells_err_t *err)
{
	uint8_t rnd[12];
	char hex[25];
	if (RAND_bytes(rnd, sizeof rnd) != 1)
		return cells_err_set(err, EIO, "no randomness for a command id");
	cells_hex(rnd, sizeof rnd, hex);
	snprintf(cid, 32, "c-%s", hex);
	c->command_id = cid;
	c->issued_at = time(NULL);
	c->expires_at = c->issued_at + MDM_COMMAND_LIFETIME_S;
	c->priority = (uint32_t)prio;
	cleanup_pkey EVP_PKEY *key = mdm_load_key(m, "signing.key", err);
	if (!key)
		return -1;
	size_t n = cells__v1__command__get_packed_size(c);
	uint8_t buf[CELLS_MAX_COMMAND];
	if (n > sizeof buf)
		return cells_err_set(err, EFBIG, "command too large");
	cells__v1__command__pack(c, buf);
	memset(e, 0, sizeof *e);
	snprintf(e->device, sizeof e->device, "%s", c->device_id);
	e->kind = MDM_QK_COMMAND;
	e->priority = prio;
	e->created = c->issued_at;
	e->expires = c->expires_at;
	snprintf(e->dedup, sizeof e->dedup, "%s", dedup);
	snprintf(e->what, sizeof e->what, "%s", what);
	return pol_sign_packed(CELLS__V1__SIGNED_KIND__SIGNED_COMMAND, buf, n, key, &e->blob,
			       &e->blob_len, err);
}

static int queue_command(struct mdm *m, const char *words, Cells__V1__Command *c, int prio,
			 const char *dedup, const char *what, bool replace)
{
	cells_err_t err = {0};
	char cid[32];
	if (cells_valid_name(c->device_id, &err) < 0 || strlen(c->device_id) != 32) {
		fprintf(stderr, "cells-mdm: %s: '%s' is not a device id\n", words, c->device_id);
		return 2;
	}
	struct mdm_store *s = mdm_open_store(m, words);
	if (!s)
		return 1;
	int k = mdm_store_device_known(s, c->device_id, &err);
	if (k <= 0) {
		fprintf(stderr, "cells-mdm: %s: %s\n", words,
			k < 0 ? err.msg : "no such enrolled device");
		mdm_store_close(s);
		return 1;
	}
	struct mdm_qentry e = {0};
	json_object *out = json_object_new_array();
	int rc = 1;
	if (mdm_command_entry(m, c, prio, dedup, what, cid, &e, &err) < 0)
		fprintf(stderr, "cells-mdm: %s: %s\n", words, err.msg);
	else if ((rc = mdm_store_queue_add(s, &e, replace, &err)) < 0)
		fprintf(stderr, "cells-mdm: queue: %s\n", err.msg);
	else
		enqueued(m, &e, rc, out), rc = 0;
	if (rc < 0)
		rc = 1;
	if (!rc && m->json)
		print_json(json_object_array_get_idx(out, 0));
	json_object_put(out);
	mdm_qentry_clear(&e);
	mdm_store_close(s);
	return rc;
}

int mdm_cmd_wipe(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	cells_err_t err = {0};
	bool recreate = true;
	if (argc == 3 && !strcmp(argv[2], "--leave-absent"))
		recreate = false, argc--;
	if (argc != 2)
		return mdm_usage(cmd);
	if (cells_valid_name(argv[1], &err) < 0) {
		fprintf(stderr, "cells-mdm: wipe: %s\n", err.msg);
		return 2;
	}
	Cells__V1__Command c = CELLS__V1__COMMAND__INIT;
	Cells__V1__WipeVp w = CELLS__V1__WIPE_VP__INIT;
	w.vp = argv[1];
	w.recreate = recreate;
	c.device_id = argv[0];
	c.action_case = CELLS__V1__COMMAND__ACTION_WIPE;
	c.wipe = &w;
	char dedup[64], what[96];
	snprintf(dedup, sizeof dedup, "wipe:%s", argv[1]);
	snprintf(what, sizeof what, "wipe %s", argv[1]);
	return queue_command(m, "wipe", &c, PRIO_WIPE, dedup, what, false);
}

int mdm_cmd_voip_assign(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	cells_err_t err = {0};
	const char *gateway = "";
	if (argc == 6 && !strcmp(argv[4], "--gateway"))
		gateway = argv[5], argc -= 2;
	if (argc != 4 || (*gateway && (gateway[0] != '+' || strlen(gateway) > 20)))
		return mdm_usage(cmd);
	char *end;
	long digit = strtol(argv[3], &end, 10);
	if (cells_valid_name(argv[1], &err) < 0 || *end || digit < 0 || digit > 9 ||
	    strlen(argv[2]) > 20 || argv[2][0] != '+') {
		fprintf(stderr, "cells-mdm: voip assign: need a VP name, an E.164 number "
				"(+...) and a digit 0..9\n");
		return 2;
	}
	Cells__V1__Command c = CELLS__V1__COMMAND__INIT;
	Cells__V1__AssignNumber a = CELLS__V1__ASSIGN_NUMBER__INIT;
	a.vp = argv[1];
	a.number = argv[2];
	a.digit = (uint32_t)digit;
	a.gateway = (char *)gateway;
	c.device_id = argv[0];
	c.action_case = CELLS__V1__COMMAND__ACTION_ASSIGN_NUMBER;
	c.assign_number = &a;
	char dedup[64], what[96];
	snprintf(dedup, sizeof dedup, "voip:%s", argv[1]);
	snprintf(what, sizeof what, "voip %s %s/%ld", argv[1], argv[2], digit);
	return queue_command(m, "voip assign", &c, PRIO_COMMAND, dedup, what, true);
}

int mdm_cmd_voip_revoke(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	cells_err_t err = {0};
	if (argc != 2)
		return mdm_usage(cmd);
	if (cells_valid_name(argv[1], &err) < 0) {
		fprintf(stderr, "cells-mdm: voip revoke: %s\n", err.msg);
		return 2;
	}
	Cells__V1__Command c = CELLS__V1__COMMAND__INIT;
	Cells__V1__RevokeNumber r = CELLS__V1__REVOKE_NUMBER__INIT;
	r.vp = argv[1];
	c.device_id = argv[0];
	c.action_case = CELLS__V1__COMMAND__ACTION_REVOKE_NUMBER;
	c.revoke_number = &r;
	char dedup[64], what[96];
	/* the same key as assign: a revoke replaces a queued assignment of that VP */
	snprintf(dedup, sizeof dedup, "voip:%s", argv[1]);
	snprintf(what, sizeof what, "voip revoke %s", argv[1]);
	return queue_command(m, "voip revoke", &c, PRIO_COMMAND, dedup, what, true);
}

int mdm_cmd_audit_request(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	uint64_t since = 0;
	if (argc == 3 && !strcmp(argv[1], "--since")) {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(argv[2], &end, 10);
		if (errno || *end || !argv[2][0] || argv[2][0] == '-') {
			fprintf(stderr,
				"cells-mdm: audit request: --since takes a sequence number\n");
			return 2;
		}
		since = v;
	} else if (argc != 1) {
		return mdm_usage(cmd);
	}
	Cells__V1__Command c = CELLS__V1__COMMAND__INIT;
	Cells__V1__RequestAuditUpload a = CELLS__V1__REQUEST_AUDIT_UPLOAD__INIT;
	a.since_seq = since;
	c.device_id = argv[0];
	c.action_case = CELLS__V1__COMMAND__ACTION_AUDIT_UPLOAD;
	c.audit_upload = &a;
	char what[96];
	if (since)
		snprintf(what, sizeof what, "audit upload since %llu", (unsigned long long)since);
	else
		snprintf(what, sizeof what, "audit upload");
	return queue_command(m, "audit request", &c, PRIO_COMMAND, "audit-upload", what, true);
}

/* `cells-mdm lock DEVICE VP` / `cells-mdm unlock DEVICE VP`: a signed LockVp. Lock and
 * unlock of one VP share the de-duplication key "lock:VP", so the newer one replaces a
 * queued older one (the last word of the admin wins). */
static int lock_cmd(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv, bool unlock)
{
	cells_err_t err = {0};
	const char *words = unlock ? "unlock" : "lock";
	if (argc != 2)
		return mdm_usage(cmd);
	if (cells_valid_name(argv[1], &err) < 0) {
		fprintf(stderr, "cells-mdm: %s: %s\n", words, err.msg);
		return 2;
	}
	Cells__V1__Command c = CELLS__V1__COMMAND__INIT;
	Cells__V1__LockVp l = CELLS__V1__LOCK_VP__INIT;
	l.vp = argv[1];
	l.unlock = unlock;
	c.device_id = argv[0];
	c.action_case = CELLS__V1__COMMAND__ACTION_LOCK;
	c.lock = &l;
	char dedup[64], what[96];
	snprintf(dedup, sizeof dedup, "lock:%s", argv[1]);
	snprintf(what, sizeof what, "%s %s", words, argv[1]);
	return queue_command(m, words, &c, PRIO_COMMAND, dedup, what, true);
}

int mdm_cmd_lock(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	return lock_cmd(m, cmd, argc, argv, false);
}

int mdm_cmd_unlock(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	return lock_cmd(m, cmd, argc, argv, true);
}
