/* audit.c - the tamper-evident audit log: durable hash-chained sqlite appends, signed
 * checkpoints, query, verification, export, rotation and upload batches (audit.h). */
#include "audit.h"
#include "cellsd.h"
#include "cjson.h"
#include "cleanup.h"
#include "cleanup_sqlite.h"
#include "cleanup_ssl.h"
#include "device_key.h"
#include "log.h"
#include "pol_sig.h"
#include "sqldb.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#define MAX_PRIVATE_VPS 8
#define AUDIT_QUERY_MAX_BYTES (12u << 20) /* under the 16 MiB control response */

struct audit {
	sqlite3 *db;
	char dir[PATH_MAX]; /* the filesystem whose free space we watch */
	sqlite3_stmt *st_head, *st_insert;
	EVP_PKEY *key; /* checkpoint signer (owned), may be NULL */
	uint8_t pub[32];
	char device_id[AUDIT_DEVICE_ID_LEN + 1];
	uint64_t near_full_bytes;
	bool near_full; /* the near-full record was written: fail closed */
	uint64_t retain;
	uint64_t last_cp_seq;
	struct loop *loop;
	uint64_t timer;
	char private_vps[MAX_PRIVATE_VPS][64];
	size_t n_private;
};

static const char *const audit_schema[] = {
    "CREATE TABLE audit(seq INTEGER PRIMARY KEY, time_us INTEGER NOT NULL, vp TEXT NOT NULL,"
    " actor TEXT NOT NULL, event TEXT NOT NULL, outcome TEXT NOT NULL, details TEXT NOT NULL,"
    " prev_hash BLOB NOT NULL, hash BLOB NOT NULL);"
    "CREATE INDEX audit_time ON audit(time_us);"
    "CREATE TABLE audit_checkpoint(seq INTEGER PRIMARY KEY, time_us INTEGER NOT NULL,"
    " head_hash BLOB NOT NULL, pruned_below INTEGER NOT NULL, signed BLOB NOT NULL);",
};

int audit_open(const char *path, struct audit **out, cells_err_t *err)
{
	struct audit *a = calloc(1, sizeof *a);
	if (!a)
		return cells_err_sys(err, ENOMEM, "audit");
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s", path);
	snprintf(a->dir, sizeof a->dir, "%s", dirname(tmp));
	a->near_full_bytes = AUDIT_NEAR_FULL_DEFAULT;
	a->retain = AUDIT_RETAIN_DEFAULT;
	audit_set_private_vp(a, "personal");
	if (sqldb_open(path, SQLDB_DURABLE, 5000, &a->db, err) < 0 ||
	    sqldb_migrate(a->db, "audit", audit_schema, CELLS_ARRAY_SIZE(audit_schema), err) < 0 ||
	    sqldb_prepare(a->db, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
			  &a->st_head, err) < 0 ||
	    sqldb_prepare(a->db,
			  "INSERT INTO audit(seq,time_us,vp,actor,event,outcome,details,"
			  "prev_hash,hash) VALUES(?,?,?,?,?,?,?,?,?)",
			  &a->st_insert, err) < 0) {
		audit_close(a);
		return cells_err_prefix(err, "audit log %s", path);
	}
	sqlite3_stmt *q = NULL;
	if (sqlite3_prepare_v2(a->db, "SELECT max(seq) FROM audit_checkpoint", -1, &q, NULL) ==
		SQLITE_OK &&
	    sqlite3_step(q) == SQLITE_ROW)
		a->last_cp_seq = (uint64_t)sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	*out = a;
	return 0;
}

void audit_close(struct audit *a)
{
	if (!a)
		return;
	if (a->loop && a->timer)
		loop_cancel_timer(a->loop, a->timer);
	sqlite3_finalize(a->st_head);
	sqlite3_finalize(a->st_insert);
	sqlite3_close_v2(a->db);
	EVP_PKEY_free(a->key);
	free(a);
}

void audit_set_near_full(struct audit *a, uint64_t bytes)
{
	a->near_full_bytes = bytes;
}

void audit_set_retention(struct audit *a, uint64_t max_records)
{
	a->retain = max_records;
}

void audit_set_private_vp(struct audit *a, const char *vp)
{
	if (a->n_private < MAX_PRIVATE_VPS)
		snprintf(a->private_vps[a->n_private++], sizeof a->private_vps[0], "%s", vp);
}

int audit_set_signer(struct audit *a, EVP_PKEY *key, cells_err_t *err)
{
	if (pol_key_raw_public(key, a->pub, err) < 0) {
		EVP_PKEY_free(key);
		return -1;
	}
	EVP_PKEY_free(a->key);
	a->key = key;
	audit_device_id(a->pub, a->device_id);
	return 0;
}

/* Head of the chain inside the current transaction: seq 0 and zero hash when empty. */
static int read_head(struct audit *a, uint64_t *seq, uint8_t hash[AUDIT_HASH_LEN], cells_err_t *err)
{
	sqlite3_reset(a->st_head);
	int rc = sqlite3_step(a->st_head);
	*seq = 0;
	memset(hash, 0, AUDIT_HASH_LEN);
	if (rc == SQLITE_ROW) {
		*seq = (uint64_t)sqlite3_column_int64(a->st_head, 0);
		const void *h = sqlite3_column_blob(a->st_head, 1);
		if (h && sqlite3_column_bytes(a->st_head, 1) == AUDIT_HASH_LEN)
			memcpy(hash, h, AUDIT_HASH_LEN);
		rc = sqlite3_step(a->st_head);
	}
	sqlite3_reset(a->st_head);
	if (rc != SQLITE_DONE)
		return sqldb_err(a->db, "audit head", err);
	return 0;
}

int audit_head(struct audit *a, uint64_t *seq, uint8_t hash[AUDIT_HASH_LEN], cells_err_t *err)
{
	uint8_t h[AUDIT_HASH_LEN];
	return read_head(a, seq, hash ? hash : h, err);
}

static bool is_private(struct audit *a, const char *vp)
{
	for (size_t i = 0; vp && i < a->n_private; i++)
		if (!strcmp(a->private_vps[i], vp))
			return true;
	return false;
}

/* Content-free view of details for a private VP: only allowlisted keys, and strings only
 * when they are short identifiers (no numbers, names, paths). */
static json_object *strip_content(json_object *details)
{
	static const char *const keep[] = {"count", "class", "mode",	  "step",    "code",
					   "errno", "state", "direction", "request", "reason_code"};
	json_object *o = json_object_new_object();
	bool dropped = false;
	json_object_object_foreach(details, k, v)
	{
		bool ok = false;
		for (size_t i = 0; i < CELLS_ARRAY_SIZE(keep); i++)
			if (!strcmp(k, keep[i]))
				ok = true;
		if (ok && json_object_is_type(v, json_type_string)) {
			const char *s = json_object_get_string(v);
			bool letter = false;
			size_t n = strlen(s);
			for (size_t i = 0; i < n; i++) {
				char c = s[i];
				if (c >= 'a' && c <= 'z')
					letter = true;
				else if (!(c >= '0' && c <= '9') && c != '.' && c != '_' &&
					 c != '-')
					ok = false;
			}
			if (!letter || n > 32)
				ok = false;
		} else if (ok && !json_object_is_type(v, json_type_int) &&
			   !json_object_is_type(v, json_type_boolean)) {
			ok = false;
		}
		if (ok)
			json_object_object_add(o, k, json_object_get(v));
		else
			dropped = true;
	}
	if (dropped)
		json_object_object_add(o, "content_withheld", json_object_new_boolean(1));
	return o;
}

/* Free bytes on the log's filesystem; -1 on error. */
static int64_t free_bytes(struct audit *a)
{
	struct statvfs s;
	if (statvfs(a->dir, &s) < 0)
		return -1;
	return (int64_t)((uint64_t)s.f_bavail * s.f_frsize);
}

/* Insert one record after the head (inside a transaction). */
static int insert_one(struct audit *a, uint64_t *head, uint8_t hash[AUDIT_HASH_LEN],
		      const struct audit_entry *e, cells_err_t *err)
{
	json_object *det = e->details;
	cleanup_json json_object *stripped = NULL;
	if (det && !json_object_is_type(det, json_type_object))
		return cells_err_set(err, EINVAL, "audit %s: details are not a JSON object",
				     e->event);
	if (det && is_private(a, e->vp))
		det = stripped = strip_content(det);
	const char *dtext =
	    det ? json_object_to_json_string_ext(det, JSON_C_TO_STRING_PLAIN) : "{}";
	struct audit_rec r = {
	    .seq = *head + 1,
	    .time_us = cells_now_us(),
	    .vp = e->vp ? e->vp : "",
	    .actor = e->actor ? e->actor : "",
	    .event = e->event ? e->event : "",
	    .outcome = e->outcome ? e->outcome : "",
	    .details = dtext,
	};
	int rc = -1;
	if (!*r.event || !*r.outcome) {
		cells_err_set(err, EINVAL, "audit record without event or outcome");
		goto out;
	}
	if (audit_rec_hash(&r, hash, r.hash, err) < 0) {
		cells_err_prefix(err, "audit %s", r.event);
		goto out;
	}
	sqlite3_stmt *st = a->st_insert;
	sqlite3_reset(st);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)r.seq);
	sqlite3_bind_int64(st, 2, r.time_us);
	sqlite3_bind_text(st, 3, r.vp, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, r.actor, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, r.event, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, r.outcome, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, dtext, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 8, hash, AUDIT_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(st, 9, r.hash, AUDIT_HASH_LEN, SQLITE_STATIC);
	int s = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (s != SQLITE_DONE) {
		sqldb_err(a->db, "audit append", err);
		goto out;
	}
	*head = r.seq;
	memcpy(hash, r.hash, AUDIT_HASH_LEN);
	rc = 0;
out:
	return rc;
}

static int store_cp(struct audit *a, uint64_t seq, const uint8_t head[AUDIT_HASH_LEN],
		    uint64_t pruned_below, cells_err_t *err);

static int append_locked(struct audit *a, const struct audit_entry *e, size_t n, uint64_t *last,
			 cells_err_t *err)
{
	if (sqldb_begin(a->db, err) < 0)
		return cells_err_prefix(err, "audit append");
	uint64_t head;
	uint8_t hash[AUDIT_HASH_LEN];
	if (read_head(a, &head, hash, err) < 0)
		goto fail;
	for (size_t i = 0; i < n; i++)
		if (insert_one(a, &head, hash, &e[i], err) < 0)
			goto fail;
	/* the periodic checkpoint rides in the same transaction (no extra fsync); failing
	 * to sign is logged, never a reason to lose the records */
	if (a->key && head >= a->last_cp_seq + AUDIT_CP_INTERVAL) {
		cells_err_t e2;
		if (store_cp(a, head, hash, 0, &e2) < 0)
			log_warn("audit checkpoint: %s", e2.msg);
	}
	if (sqldb_commit(a->db, err) < 0)
		return cells_err_prefix(err, "audit append");
	if (last)
		*last = head;
	return 0;
fail:
	sqldb_rollback(a->db);
	return -1;
}

int audit_append_batch(struct audit *a, const struct audit_entry *e, size_t n, uint64_t *last_seq,
		       cells_err_t *err)
{
	if (!a)
		return cells_err_set(err, EIO, "audit log is not open");
	if (n == 0)
		return 0;
	int64_t fb = free_bytes(a);
	if (fb < 0)
		return cells_err_sys(err, errno, "audit log: statvfs %s", a->dir);
	if ((uint64_t)fb < a->near_full_bytes) {
		if (!a->near_full) {
			json_object *d = json_object_new_object();
			json_object_object_add(d, "free_bytes", json_object_new_int64(fb));
			json_object_object_add(d, "threshold_bytes",
					       json_object_new_int64((int64_t)a->near_full_bytes));
			struct audit_entry nf = {"", "cellsd", "audit.near_full", "failed", d};
			cells_err_t e2;
			int r = append_locked(a, &nf, 1, NULL, &e2);
			json_object_put(d);
			a->near_full = true;
			if (r < 0)
				log_error("audit: cannot write the near-full record: %s", e2.msg);
			else
				log_error("audit log is nearly full (%" PRId64 " bytes free): "
					  "failing closed",
					  fb);
		}
		return cells_err_set(err, ENOSPC,
				     "audit log is nearly full (%" PRId64 " bytes free, %" PRIu64
				     " needed): refusing to record %s, failing closed",
				     fb, a->near_full_bytes, e[0].event ? e[0].event : "?");
	}
	a->near_full = false;
	uint64_t head;
	if (append_locked(a, e, n, &head, err) < 0)
		return -1;
	if (last_seq)
		*last_seq = head;
	return 0;
}

int audit_append(struct audit *a, const char *vp, const char *actor, const char *event,
		 const char *outcome, json_object *details, uint64_t *seq, cells_err_t *err)
{
	struct audit_entry e = {vp, actor, event, outcome, details};
	return audit_append_batch(a, &e, 1, seq, err);
}

/* Sign a checkpoint over (seq, head) into a packed Signed (*out malloc'd). */
static int sign_cp(struct audit *a, uint64_t seq, const uint8_t head[AUDIT_HASH_LEN],
		   uint64_t pruned_below, int64_t *time_us, uint8_t **out, size_t *len,
		   cells_err_t *err)
{
	if (!a->key)
		return cells_err_set(err, ENOKEY, "audit checkpoint: no device key to sign with");
	struct audit_cp cp = {.seq = seq, .time_us = cells_now_us(), .pruned_below = pruned_below};
	memcpy(cp.head_hash, head, AUDIT_HASH_LEN);
	memcpy(cp.device_id, a->device_id, sizeof cp.device_id);
	cleanup_free uint8_t *payload = NULL;
	size_t plen;
	if (audit_cp_payload(&cp, &payload, &plen, err) < 0)
		return -1;
	int r = pol_sign_packed(CELLS__V1__SIGNED_KIND__SIGNED_AUDIT_CHECKPOINT, payload, plen,
				a->key, out, len, err);
	*time_us = cp.time_us;
	return r;
}

static int store_cp(struct audit *a, uint64_t seq, const uint8_t head[AUDIT_HASH_LEN],
		    uint64_t pruned_below, cells_err_t *err)
{
	cleanup_free uint8_t *blob = NULL;
	size_t n;
	int64_t t;
	if (sign_cp(a, seq, head, pruned_below, &t, &blob, &n, err) < 0)
		return -1;
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(a->db,
			  "INSERT OR REPLACE INTO audit_checkpoint(seq,time_us,head_hash,"
			  "pruned_below,signed) VALUES(?,?,?,?,?)",
			  &st, err) < 0)
		return -1;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
	sqlite3_bind_int64(st, 2, t);
	sqlite3_bind_blob(st, 3, head, AUDIT_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)pruned_below);
	sqlite3_bind_blob(st, 5, blob, (int)n, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		return sqldb_err(a->db, "store audit checkpoint", err);
	if (seq > a->last_cp_seq)
		a->last_cp_seq = seq;
	return 0;
}

int audit_checkpoint_now(struct audit *a, uint64_t *seq, cells_err_t *err)
{
	if (sqldb_begin(a->db, err) < 0)
		return cells_err_prefix(err, "audit checkpoint");
	uint64_t head;
	uint8_t hash[AUDIT_HASH_LEN];
	if (read_head(a, &head, hash, err) < 0)
		goto fail;
	if (head && head != a->last_cp_seq && store_cp(a, head, hash, 0, err) < 0)
		goto fail;
	if (sqldb_commit(a->db, err) < 0)
		return cells_err_prefix(err, "audit checkpoint");
	if (seq)
		*seq = head;
	return 0;
fail:
	sqldb_rollback(a->db);
	return cells_err_prefix(err, "audit checkpoint");
}

static void on_tick(struct loop *l, void *data)
{
	struct audit *a = data;
	cells_err_t e;
	a->timer = 0;
	if (audit_checkpoint_now(a, NULL, &e) < 0)
		log_warn("%s", e.msg);
	if (a->retain) {
		uint64_t head;
		if (audit_head(a, &head, NULL, &e) == 0 && head > a->retain + AUDIT_CP_INTERVAL) {
			/* prune to `retain` records; the first remaining must exist */
			cleanup_stmt sqlite3_stmt *q = NULL;
			uint64_t first = 0;
			if (sqldb_prepare(a->db, "SELECT min(seq) FROM audit", &q, &e) == 0 &&
			    sqlite3_step(q) == SQLITE_ROW)
				first = (uint64_t)sqlite3_column_int64(q, 0);
			if (first && head - first + 1 > a->retain + AUDIT_CP_INTERVAL &&
			    audit_prune(a, head - a->retain + 1, &e) < 0)
				log_warn("audit rotation: %s", e.msg);
		}
	}
	a->timer = loop_add_timer(l, AUDIT_CP_PERIOD_S * 1000ull, on_tick, a);
}

int audit_attach(struct audit *a, struct loop *l, const char *state_dir, cells_err_t *err)
{
	EVP_PKEY *key = NULL;
	char id[DEVICE_ID_LEN + 1];
	if (device_key_load(state_dir, &key, id, err) < 0)
		return cells_err_prefix(err, "audit signer");
	if (audit_set_signer(a, key, err) < 0)
		return -1;
	uint64_t head = 0;
	if (audit_head(a, &head, NULL, err) < 0)
		return -1;
	cleanup_json json_object *d = json_object_new_object();
	json_object_object_add(d, "head_seq", json_object_new_int64((int64_t)head));
	json_object_object_add(d, "checkpoint_seq", json_object_new_int64((int64_t)a->last_cp_seq));
	cells_err_t e2;
	/* not fatal: the daemon then starts with the log closed and fails closed */
	if (audit_append(a, "", "cellsd", "audit.opened", "ok", d, NULL, &e2) < 0)
		log_error("audit log: %s", e2.msg);
	a->loop = l;
	a->timer = loop_add_timer(l, AUDIT_CP_PERIOD_S * 1000ull, on_tick, a);
	return 0;
}

/* ---- reading ---------------------------------------------------------------- */

static const char *col_text(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return t ? (const char *)t : "";
}

static void col_hash(sqlite3_stmt *st, int i, uint8_t out[AUDIT_HASH_LEN])
{
	const void *b = sqlite3_column_blob(st, i);
	if (b && sqlite3_column_bytes(st, i) == AUDIT_HASH_LEN)
		memcpy(out, b, AUDIT_HASH_LEN);
	else
		memset(out, 0xff, AUDIT_HASH_LEN); /* never a valid hash of anything */
}

#define REC_COLS "seq,time_us,vp,actor,event,outcome,details,prev_hash,hash"
static void row_rec(sqlite3_stmt *st, struct audit_rec *r)
{
	memset(r, 0, sizeof *r);
	r->seq = (uint64_t)sqlite3_column_int64(st, 0);
	r->time_us = sqlite3_column_int64(st, 1);
	r->vp = col_text(st, 2);
	r->actor = col_text(st, 3);
	r->event = col_text(st, 4);
	r->outcome = col_text(st, 5);
	r->details = col_text(st, 6);
	col_hash(st, 7, r->prev_hash);
	col_hash(st, 8, r->hash);
}

static void fmt_time(int64_t us, char out[40])
{
	time_t s = (time_t)(us / 1000000);
	struct tm tm;
	gmtime_r(&s, &tm);
	size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 40 - n, ".%03dZ", (int)((us % 1000000) / 1000));
}

int audit_query(struct audit *a, const struct audit_filter *f, json_object *arr, cells_err_t *err)
{
	char sql[1024] = "SELECT " REC_COLS " FROM audit WHERE 1";
	size_t o = strlen(sql);
#define ADD(s) o += (size_t)snprintf(sql + o, sizeof sql - o, "%s", s)
	if (f->since_us)
		ADD(" AND time_us >= :since");
	if (f->until_us)
		ADD(" AND time_us <= :until");
	if (f->vp && *f->vp)
		ADD(" AND vp = :vp");
	if (f->type && *f->type)
		ADD(" AND (event = :type OR substr(event,1,length(:type)+1) = :type || '.')");
	if (f->outcome && *f->outcome)
		ADD(" AND outcome = :outcome");
	if (f->grep && *f->grep)
		ADD(" AND (instr(details,:grep) OR instr(event,:grep) OR instr(actor,:grep)"
		    " OR instr(vp,:grep))");
	ADD(" ORDER BY seq DESC LIMIT :limit");
#undef ADD
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(a->db, sql, &st, err) < 0)
		return cells_err_prefix(err, "audit query");
	sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":since"), f->since_us);
	sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":until"), f->until_us);
	sqlite3_bind_text(st, sqlite3_bind_parameter_index(st, ":vp"), f->vp, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, sqlite3_bind_parameter_index(st, ":type"), f->type, -1,
			  SQLITE_STATIC);
	sqlite3_bind_text(st, sqlite3_bind_parameter_index(st, ":outcome"), f->outcome, -1,
			  SQLITE_STATIC);
	sqlite3_bind_text(st, sqlite3_bind_parameter_index(st, ":grep"), f->grep, -1,
			  SQLITE_STATIC);
	uint32_t lim = f->limit ? f->limit : 100;
	if (lim > 100000)
		lim = 100000;
	sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":limit"), lim);
	/* newest first, within the response budget; then handed out oldest first */
	cleanup_json json_object *rows = json_object_new_array();
	size_t bytes = 0;
	int rc, truncated = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct audit_rec r;
		row_rec(st, &r);
		bytes += 256 + strlen(r.details) * 2 + strlen(r.actor) + strlen(r.vp);
		if (bytes > AUDIT_QUERY_MAX_BYTES) {
			truncated = 1;
			rc = SQLITE_DONE;
			break;
		}
		json_object *o2 = json_object_new_object();
		char ts[40];
		fmt_time(r.time_us, ts);
		json_object_object_add(o2, "seq", json_object_new_int64((int64_t)r.seq));
		json_object_object_add(o2, "time", json_object_new_string(ts));
		json_object_object_add(o2, "time_us", json_object_new_int64(r.time_us));
		json_object_object_add(o2, "vp", json_object_new_string(r.vp));
		json_object_object_add(o2, "actor", json_object_new_string(r.actor));
		json_object_object_add(o2, "event", json_object_new_string(r.event));
		json_object_object_add(o2, "outcome", json_object_new_string(r.outcome));
		json_object *d = json_tokener_parse(r.details);
		json_object_object_add(o2, "details", d ? d : json_object_new_string(r.details));
		json_object_array_add(rows, o2);
	}
	size_t n = json_object_array_length(rows);
	for (size_t i = n; i > 0; i--)
		json_object_array_add(arr, json_object_get(json_object_array_get_idx(rows, i - 1)));
	if (rc != SQLITE_DONE)
		return sqldb_err(a->db, "audit query", err);
	return truncated;
}

/* Stored checkpoints in seq order, verified with the signer's key. */
struct cp_list {
	struct audit_cp *v;
	size_t n;
};

static int load_cps(struct audit *a, struct cp_list *l, struct audit_verify_result *res,
		    cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(a->db, "SELECT seq, signed FROM audit_checkpoint ORDER BY seq", &st,
			  err) < 0)
		return -1;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint64_t seq = (uint64_t)sqlite3_column_int64(st, 0);
		const uint8_t *b = sqlite3_column_blob(st, 1);
		size_t n = (size_t)sqlite3_column_bytes(st, 1);
		cleanup_signed Cells__V1__Signed *s = NULL;
		cells_err_t e2;
		struct audit_cp cp;
		if (!b || cells_signed_decode(b, n, &s, &e2) < 0 ||
		    audit_cp_open(s, a->pub, &cp, &e2) < 0 || cp.seq != seq) {
			if (!res->reason[0]) {
				res->bad_seq = seq;
				snprintf(res->reason, sizeof res->reason,
					 "checkpoint at %" PRIu64 ": %s", seq,
					 cp.seq != seq && !e2.msg[0] ? "seq differs" : e2.msg);
			}
			continue;
		}
		struct audit_cp *nv = realloc(l->v, (l->n + 1) * sizeof *nv);
		if (!nv)
			return cells_err_sys(err, ENOMEM, "audit verify");
		l->v = nv;
		l->v[l->n++] = cp;
	}
	if (rc != SQLITE_DONE)
		return sqldb_err(a->db, "audit verify: reading checkpoints", err);
	return 0;
}

int audit_verify(struct audit *a, struct audit_verify_result *res, cells_err_t *err)
{
	memset(res, 0, sizeof *res);
	struct cp_list cps = {0};
	struct audit_verifier v;
	audit_verifier_init(&v);
	cells_err_t e2;
	int ret = -1;
	cleanup_stmt sqlite3_stmt *st = NULL;
	/* a read transaction: one consistent snapshot */
	if (sqldb_exec(a->db, "BEGIN", err) < 0)
		return cells_err_prefix(err, "audit verify");
	if (a->key) {
		res->signed_checkpoints = true;
		if (load_cps(a, &cps, res, err) < 0)
			goto out;
	}
	if (sqldb_prepare(a->db, "SELECT " REC_COLS " FROM audit ORDER BY seq", &st, err) < 0)
		goto out;
	size_t ci = 0;
	int rc;
	bool first = true;
	while (!v.broken && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct audit_rec r;
		row_rec(st, &r);
		if (first) {
			/* checkpoints below the first record: the pruning anchor */
			while (ci < cps.n && cps.v[ci].seq < r.seq)
				audit_verifier_checkpoint(&v, &cps.v[ci++], &e2);
			first = false;
		}
		if (audit_verifier_record(&v, &r, &e2) < 0)
			break;
		while (!v.broken && ci < cps.n && cps.v[ci].seq <= r.seq)
			audit_verifier_checkpoint(&v, &cps.v[ci++], &e2);
	}
	if (!v.broken && rc != SQLITE_DONE) {
		sqldb_err(a->db, "audit verify: reading the log", err);
		goto out;
	}
	while (!v.broken && ci < cps.n)
		audit_verifier_checkpoint(&v, &cps.v[ci++], &e2);
	if (!v.broken)
		audit_verifier_finish(&v, &e2);
	res->records = v.records;
	res->checkpoints = v.checkpoints;
	res->first_seq = v.first_seq;
	res->last_seq = v.last_seq;
	if (v.broken) {
		res->bad_seq = v.bad_seq;
		snprintf(res->reason, sizeof res->reason, "%s", v.reason);
	}
	/* a bad checkpoint signature (load_cps) is a break too, reported if nothing else */
	res->ok = !v.broken && !res->reason[0];
	ret = 0;
out:
	free(cps.v);
	sqldb_rollback(a->db);
	return ret;
}

/* ---- batches: export and upload ------------------------------------------------ */

struct batch_buf {
	Cells__V1__AuditBatch b;
	Cells__V1__AuditRecord *recs;
	Cells__V1__AuditRecord **ptrs;
	char **strs; /* owned strings, freed after packing */
	size_t nstrs;
	uint8_t (*hashes)[3][AUDIT_HASH_LEN];
	Cells__V1__Signed *cp;
};

static void batch_buf_free(struct batch_buf *bb)
{
	for (size_t i = 0; i < bb->nstrs; i++)
		free(bb->strs[i]);
	free(bb->strs);
	free(bb->recs);
	free(bb->ptrs);
	free(bb->hashes);
	if (bb->cp)
		cells__v1__signed__free_unpacked(bb->cp, NULL);
	memset(bb, 0, sizeof *bb);
}

static char *keep_str(struct batch_buf *bb, const char *s)
{
	char *d = strdup(s);
	if (d)
		bb->strs[bb->nstrs++] = d;
	return d;
}

/* Read up to max records from seq `from` into bb; mode_fn may withhold details. */
static int batch_fill(struct audit *a, struct batch_buf *bb, sqlite3_stmt *st, size_t max,
		      audit_upload_mode_fn mode_fn, void *data, uint64_t *next, cells_err_t *err)
{
	cells__v1__audit_batch__init(&bb->b);
	bb->b.device_id = a->device_id;
	bb->recs = calloc(max ? max : 1, sizeof *bb->recs);
	bb->ptrs = calloc(max ? max : 1, sizeof *bb->ptrs);
	bb->strs = calloc(max * 5 + 1, sizeof *bb->strs);
	bb->hashes = calloc(max ? max : 1, sizeof *bb->hashes);
	if (!bb->recs || !bb->ptrs || !bb->strs || !bb->hashes)
		return cells_err_sys(err, ENOMEM, "audit batch");
	size_t n = 0;
	int rc = SQLITE_DONE;
	while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct audit_rec r;
		row_rec(st, &r);
		Cells__V1__AuditRecord *p = &bb->recs[n];
		cells__v1__audit_record__init(p);
		p->seq = r.seq;
		p->time_us = r.time_us;
		p->vp = keep_str(bb, r.vp);
		p->actor = keep_str(bb, r.actor);
		p->event = keep_str(bb, r.event);
		p->outcome = keep_str(bb, r.outcome);
		memcpy(bb->hashes[n][0], r.prev_hash, AUDIT_HASH_LEN);
		memcpy(bb->hashes[n][1], r.hash, AUDIT_HASH_LEN);
		p->prev_hash.data = bb->hashes[n][0];
		p->prev_hash.len = AUDIT_HASH_LEN;
		p->hash.data = bb->hashes[n][1];
		p->hash.len = AUDIT_HASH_LEN;
		bool withhold =
		    mode_fn && mode_fn(r.vp, data) != CELLS__V1__AUDIT_UPLOAD__AUDIT_UPLOAD_FULL;
		if (withhold) {
			audit_details_hash(r.details, bb->hashes[n][2]);
			p->details = "";
			p->details_withheld = true;
			p->details_hash.data = bb->hashes[n][2];
			p->details_hash.len = AUDIT_HASH_LEN;
		} else {
			p->details = keep_str(bb, r.details);
		}
		if (!p->vp || !p->actor || !p->event || !p->outcome || !p->details)
			return cells_err_sys(err, ENOMEM, "audit batch");
		bb->ptrs[n] = p;
		n++;
		*next = r.seq + 1;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return sqldb_err(a->db, "audit: reading the log", err);
	bb->b.records = bb->ptrs;
	bb->b.n_records = n;
	return 0;
}

static int attach_cp(struct audit *a, struct batch_buf *bb, uint64_t seq,
		     const uint8_t head[AUDIT_HASH_LEN], bool store, cells_err_t *err)
{
	cleanup_free uint8_t *blob = NULL;
	size_t n;
	int64_t t;
	if (store) {
		if (seq != a->last_cp_seq && store_cp(a, seq, head, 0, err) < 0)
			return -1;
		cleanup_stmt sqlite3_stmt *q = NULL;
		if (sqldb_prepare(a->db, "SELECT signed FROM audit_checkpoint WHERE seq=?", &q,
				  err) < 0)
			return -1;
		sqlite3_bind_int64(q, 1, (sqlite3_int64)seq);
		if (sqlite3_step(q) != SQLITE_ROW)
			return sqldb_err(a->db, "audit checkpoint", err);
		n = (size_t)sqlite3_column_bytes(q, 0);
		blob = malloc(n ? n : 1);
		if (!blob)
			return cells_err_sys(err, ENOMEM, "checkpoint");
		memcpy(blob, sqlite3_column_blob(q, 0), n);
	} else if (sign_cp(a, seq, head, 0, &t, &blob, &n, err) < 0) {
		return -1;
	}
	if (cells_signed_decode(blob, n, &bb->cp, err) < 0)
		return -1;
	bb->b.checkpoint = bb->cp;
	return 0;
}

static int write_frame(int fd, const Cells__V1__AuditBatch *b, cells_err_t *err)
{
	size_t n = cells__v1__audit_batch__get_packed_size(b);
	if (n > CELLS_MAX_ENVELOPE)
		return cells_err_set(err, EMSGSIZE, "audit batch of %zu bytes is too big", n);
	cleanup_free uint8_t *p = malloc(n + 4);
	if (!p)
		return cells_err_sys(err, ENOMEM, "audit export");
	p[0] = (uint8_t)(n >> 24);
	p[1] = (uint8_t)(n >> 16);
	p[2] = (uint8_t)(n >> 8);
	p[3] = (uint8_t)n;
	cells__v1__audit_batch__pack(b, p + 4);
	if (cells_write_all(fd, p, n + 4) < 0)
		return cells_err_sys(err, errno, "audit export: write");
	return 0;
}

/* The pruning anchor: the stored checkpoint just below the first record, if any. */
static int anchor_cp(struct audit *a, uint64_t first, uint8_t **blob, size_t *n, cells_err_t *err)
{
	*blob = NULL;
	if (first <= 1)
		return 0;
	cleanup_stmt sqlite3_stmt *q = NULL;
	if (sqldb_prepare(a->db, "SELECT signed FROM audit_checkpoint WHERE seq=?", &q, err) < 0)
		return -1;
	sqlite3_bind_int64(q, 1, (sqlite3_int64)(first - 1));
	if (sqlite3_step(q) != SQLITE_ROW)
		return 0;
	*n = (size_t)sqlite3_column_bytes(q, 0);
	*blob = malloc(*n ? *n : 1);
	if (!*blob)
		return cells_err_sys(err, ENOMEM, "audit export");
	memcpy(*blob, sqlite3_column_blob(q, 0), *n);
	return 0;
}

int audit_export(struct audit *a, int fd, uint64_t *records, cells_err_t *err)
{
	if (!a->key)
		return cells_err_set(err, ENOKEY, "audit export: no device key to sign with");
	uint64_t head;
	uint8_t hash[AUDIT_HASH_LEN];
	if (audit_checkpoint_now(a, NULL, err) < 0)
		return -1;
	if (sqldb_exec(a->db, "BEGIN", err) < 0)
		return cells_err_prefix(err, "audit export");
	int ret = -1;
	uint64_t count = 0;
	cleanup_stmt sqlite3_stmt *st = NULL;
	uint8_t hdr[AUDIT_BUNDLE_HEADER_LEN];
	memcpy(hdr, AUDIT_BUNDLE_MAGIC, AUDIT_BUNDLE_MAGIC_LEN);
	memcpy(hdr + AUDIT_BUNDLE_MAGIC_LEN, a->pub, 32);
	if (read_head(a, &head, hash, err) < 0)
		goto out;
	if (cells_write_all(fd, hdr, sizeof hdr) < 0) {
		cells_err_sys(err, errno, "audit export: write");
		goto out;
	}
	if (sqldb_prepare(a->db, "SELECT " REC_COLS " FROM audit ORDER BY seq", &st, err) < 0)
		goto out;
	{
		/* anchor batch when the log was pruned */
		cleanup_stmt sqlite3_stmt *q = NULL;
		uint64_t first = 0;
		if (sqldb_prepare(a->db, "SELECT min(seq) FROM audit", &q, err) < 0)
			goto out;
		if (sqlite3_step(q) == SQLITE_ROW)
			first = (uint64_t)sqlite3_column_int64(q, 0);
		cleanup_free uint8_t *blob = NULL;
		size_t bn = 0;
		if (anchor_cp(a, first, &blob, &bn, err) < 0)
			goto out;
		if (blob) {
			cleanup_signed Cells__V1__Signed *s = NULL;
			Cells__V1__AuditBatch b = CELLS__V1__AUDIT_BATCH__INIT;
			b.device_id = a->device_id;
			if (cells_signed_decode(blob, bn, &s, err) < 0)
				goto out;
			b.checkpoint = s;
			if (write_frame(fd, &b, err) < 0)
				goto out;
		}
	}
	for (uint64_t next = 0;;) {
		struct batch_buf bb = {0};
		int r =
		    batch_fill(a, &bb, st, CELLS_MAX_AUDIT_BATCH_RECORDS, NULL, NULL, &next, err);
		if (r == 0 && bb.b.n_records && next - 1 == head)
			r = attach_cp(a, &bb, head, hash, false, err);
		if (r == 0 && bb.b.n_records)
			r = write_frame(fd, &bb.b, err);
		size_t got = bb.b.n_records;
		count += got;
		batch_buf_free(&bb);
		if (r < 0)
			goto out;
		if (got < CELLS_MAX_AUDIT_BATCH_RECORDS)
			break;
	}
	if (records)
		*records = count;
	ret = 0;
out:
	sqldb_rollback(a->db);
	return ret;
}

int audit_upload_batch(struct audit *a, uint64_t since_seq, size_t max,
		       audit_upload_mode_fn mode_fn, void *data, Cells__V1__AuditBatch **out,
		       cells_err_t *err)
{
	if (!a->key)
		return cells_err_set(err, ENOKEY, "audit upload: no device key to sign with");
	if (max > CELLS_MAX_AUDIT_BATCH_RECORDS)
		max = CELLS_MAX_AUDIT_BATCH_RECORDS;
	if (sqldb_begin(a->db, err) < 0)
		return cells_err_prefix(err, "audit upload");
	int ret = -1;
	struct batch_buf bb = {0};
	cleanup_stmt sqlite3_stmt *st = NULL;
	cleanup_free uint8_t *p = NULL;
	uint64_t head, next = 0;
	uint8_t hash[AUDIT_HASH_LEN];
	if (read_head(a, &head, hash, err) < 0 ||
	    sqldb_prepare(a->db, "SELECT " REC_COLS " FROM audit WHERE seq >= ? ORDER BY seq", &st,
			  err) < 0)
		goto out;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)since_seq);
	if (batch_fill(a, &bb, st, max, mode_fn, data, &next, err) < 0)
		goto out;
	/* the checkpoint covers the head (>= the last record sent): a later checkpoint
	 * never covers less unless the log was truncated */
	if (head && attach_cp(a, &bb, head, hash, true, err) < 0)
		goto out;
	size_t n = cells__v1__audit_batch__get_packed_size(&bb.b);
	p = malloc(n ? n : 1);
	if (!p) {
		cells_err_sys(err, ENOMEM, "audit upload");
		goto out;
	}
	cells__v1__audit_batch__pack(&bb.b, p);
	*out = cells__v1__audit_batch__unpack(NULL, n, p);
	if (!*out) {
		cells_err_set(err, ENOMEM, "audit upload: repack");
		goto out;
	}
	if (sqldb_commit(a->db, err) < 0) {
		cells__v1__audit_batch__free_unpacked(*out, NULL);
		*out = NULL;
		batch_buf_free(&bb);
		return cells_err_prefix(err, "audit upload");
	}
	ret = 0;
out:
	batch_buf_free(&bb);
	if (ret < 0)
		sqldb_rollback(a->db);
	return ret;
}

void audit_batch_free(Cells__V1__AuditBatch *b)
{
	if (b)
		cells__v1__audit_batch__free_unpacked(b, NULL);
}

int audit_prune(struct audit *a, uint64_t below, cells_err_t *err)
{
	if (!a->key)
		return cells_err_set(err, ENOKEY, "audit rotation: no device key to sign with");
	if (sqldb_begin(a->db, err) < 0)
		return cells_err_prefix(err, "audit rotation");
	uint64_t head;
	uint8_t hash[AUDIT_HASH_LEN];
	cleanup_stmt sqlite3_stmt *q = NULL;
	cleanup_stmt sqlite3_stmt *d1 = NULL;
	cleanup_stmt sqlite3_stmt *d2 = NULL;
	if (read_head(a, &head, hash, err) < 0)
		goto fail;
	if (below < 2 || below > head) {
		cells_err_set(err, EINVAL,
			      "audit rotation: cannot prune below %" PRIu64 " (head is %" PRIu64
			      ")",
			      below, head);
		goto fail;
	}
	if (sqldb_prepare(a->db, "SELECT hash FROM audit WHERE seq=?", &q, err) < 0)
		goto fail;
	sqlite3_bind_int64(q, 1, (sqlite3_int64)(below - 1));
	if (sqlite3_step(q) != SQLITE_ROW) {
		cells_err_set(err, ENOENT, "audit rotation: record %" PRIu64 " is already pruned",
			      below - 1);
		goto fail;
	}
	uint8_t h[AUDIT_HASH_LEN];
	col_hash(q, 0, h);
	if (store_cp(a, below - 1, h, below, err) < 0)
		goto fail;
	if (sqldb_prepare(a->db, "DELETE FROM audit WHERE seq < ?", &d1, err) < 0 ||
	    sqldb_prepare(a->db, "DELETE FROM audit_checkpoint WHERE seq < ?", &d2, err) < 0)
		goto fail;
	sqlite3_bind_int64(d1, 1, (sqlite3_int64)below);
	sqlite3_bind_int64(d2, 1, (sqlite3_int64)(below - 1));
	if (sqlite3_step(d1) != SQLITE_DONE || sqlite3_step(d2) != SQLITE_DONE) {
		sqldb_err(a->db, "audit rotation", err);
		goto fail;
	}
	int r;
	{
		cleanup_json json_object *det = json_object_new_object();
		json_object_object_add(det, "pruned_below", json_object_new_int64((int64_t)below));
		json_object_object_add(det, "checkpoint_seq",
				       json_object_new_int64((int64_t)(below - 1)));
		struct audit_entry e = {"", "cellsd", "audit.rotated", "ok", det};
		r = insert_one(a, &head, hash, &e, err);
	}
	if (r < 0)
		goto fail;
	if (sqldb_commit(a->db, err) < 0)
		return cells_err_prefix(err, "audit rotation");
	return 0;
fail:
	sqldb_rollback(a->db);
	return -1;
}

/* ---- the daemon's audit API (audit.h: cellsd_audit) ---- */

int cellsd_audit(struct cellsd *d, const char *vp, const char *actor, const char *event,
		 const char *outcome, struct json_object *details, cells_err_t *err)
{
	cells_err_t local;
	if (!err)
		err = &local;
	if (!d->audit)
		cells_err_set(err, EIO, "the audit log is not open");
	if (!d->audit ||
	    audit_append(d->audit, vp, actor, event, outcome, details, NULL, err) < 0) {
		if (!(d->state & CELLSD_ST_AUDIT_CLOSED))
			log_error("audit log cannot be written (%s): failing closed",
				  d->audit ? err->msg : "not open");
		d->state = CELLSD_ST_AUDIT_CLOSED;
		return -1;
	}
	return 0;
}
