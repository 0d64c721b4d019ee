/* mdm_audit.c - audit collection on the server: storage and continuity verification of
 * uploaded AuditBatch messages (mdm_audit.h), and the `cells-mdm audit` commands:
 * offline verification of export bundles, import, query and verification per device. */
#include "mdm_audit.h"
#include "audit_time.h"
#include "cleanup.h"
#include "mdm_db.h"
#include "log.h"
#include "mdm.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct mdm_audit_store {
	struct mdb *db;
	bool owned;
};

/* The migrations of both backends (mdm_db.h); 1: the tables as they were when versions
 * were introduced. */
static const char *const store_migrations[] = {
    "CREATE TABLE IF NOT EXISTS mdm_audit_device(device_id TEXT PRIMARY KEY,"
    " pubkey BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS mdm_audit_record(device_id TEXT NOT NULL, seq INTEGER NOT NULL,"
    " time_us INTEGER NOT NULL, vp TEXT NOT NULL, actor TEXT NOT NULL, event TEXT NOT NULL,"
    " outcome TEXT NOT NULL, details TEXT NOT NULL, details_withheld INTEGER NOT NULL,"
    " details_hash BLOB, prev_hash BLOB NOT NULL, hash BLOB NOT NULL,"
    " received_us INTEGER NOT NULL, PRIMARY KEY(device_id, seq)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS mdm_audit_record_time ON mdm_audit_record(device_id, time_us);"
    "CREATE TABLE IF NOT EXISTS mdm_audit_checkpoint(device_id TEXT NOT NULL,"
    " seq INTEGER NOT NULL, head_hash BLOB NOT NULL, time_us INTEGER NOT NULL,"
    " signed BLOB NOT NULL, received_us INTEGER NOT NULL,"
    " PRIMARY KEY(device_id, seq, time_us)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS mdm_audit_alert(id INTEGER PRIMARY KEY, device_id TEXT NOT NULL,"
    " seq INTEGER NOT NULL, time_us INTEGER NOT NULL, reason TEXT NOT NULL);",
};

int mdm_audit_store_attach(struct mdb *db, struct mdm_audit_store **out, cells_err_t *err)
{
	if (mdb_migrate(db, "mdm_audit", store_migrations, CELLS_ARRAY_SIZE(store_migrations),
			err) < 0)
		return -1;
	struct mdm_audit_store *s = calloc(1, sizeof *s);
	if (!s)
		return cells_err_sys(err, ENOMEM, "audit store");
	s->db = db;
	*out = s;
	return 0;
}

int mdm_audit_store_open(const char *where, struct mdm_audit_store **out, cells_err_t *err)
{
	struct mdb *db = NULL;
	if (mdb_open(where, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", &db, err) < 0)
		return -1;
	if (mdm_audit_store_attach(db, out, err) < 0) {
		mdb_close(db);
		return mdb_is_pg(where) ? -1 : cells_err_prefix(err, "%s", where);
	}
	(*out)->owned = true;
	return 0;
}

void mdm_audit_store_close(struct mdm_audit_store *s)
{
	if (!s)
		return;
	if (s->owned)
		mdb_close(s->db);
	free(s);
}

/* The stored hash of (device, seq) from records (or, failing that, from a checkpoint
 * at that seq): 1 found, 0 not, -1 error. */
static int stored_hash(struct mdb *db, const char *dev, uint64_t seq, bool cps,
		       uint8_t out[AUDIT_HASH_LEN], cells_err_t *err)
{
	cleanup_mdb_stmt struct mdb_stmt *q = NULL;
	if (mdb_prepare(
		db,
		cps ? "SELECT head_hash FROM mdm_audit_checkpoint WHERE device_id=? AND seq=? "
		      "ORDER BY time_us LIMIT 1"
		    : "SELECT hash FROM mdm_audit_record WHERE device_id=? AND seq=?",
		&q, err) < 0)
		return -1;
	mdb_bind_text(q, 1, dev);
	mdb_bind_int64(q, 2, seq);
	int rc = mdb_step(q);
	if (rc == MDB_DONE)
		return 0;
	if (rc != MDB_ROW)
		return mdb_err(db, "audit store", err);
	if (mdb_column_bytes(q, 0) != AUDIT_HASH_LEN)
		return cells_err_set(err, EIO, "audit store: malformed stored hash");
	memcpy(out, mdb_column_blob(q, 0), AUDIT_HASH_LEN);
	return 1;
}

static void add_alert(struct mdb *db, const char *dev, uint64_t seq, const char *reason)
{
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	cells_err_t err;
	if (mdb_prepare(db,
			"INSERT INTO mdm_audit_alert(device_id,seq,time_us,reason) VALUES(?,?,?,?)",
			&st, &err) == 0) {
		mdb_bind_text(st, 1, dev);
		mdb_bind_int64(st, 2, seq);
		mdb_bind_int64(st, 3, cells_now_us());
		mdb_bind_text(st, 4, reason);
		if (mdb_step_done(st, "audit alert", &err) == 0)
			return;
	}
	log_error("device %s: audit alert at %llu not recorded (%s): %s", dev,
		  (unsigned long long)seq, reason, err.msg);
}

/* Register the device's key on first sight; refuse a different key later. */
static int check_device(struct mdb *db, const char *dev, const uint8_t pub[32], cells_err_t *err)
{
	cleanup_mdb_stmt struct mdb_stmt *q = NULL;
	if (mdb_prepare(db, "SELECT pubkey FROM mdm_audit_device WHERE device_id=?", &q, err) < 0)
		return -1;
	mdb_bind_text(q, 1, dev);
	int rc = mdb_step(q);
	if (rc == MDB_ROW) {
		if (mdb_column_bytes(q, 0) != 32 || memcmp(mdb_column_blob(q, 0), pub, 32))
			return cells_err_set(err, EPERM, "audit store: device %s has another key",
					     dev);
		return 0;
	}
	if (rc != MDB_DONE)
		return mdb_err(db, "audit store", err);
	cleanup_mdb_stmt struct mdb_stmt *ins = NULL;
	if (mdb_prepare(db, "INSERT INTO mdm_audit_device(device_id,pubkey) VALUES(?,?)", &ins,
			err) < 0)
		return -1;
	mdb_bind_text(ins, 1, dev);
	mdb_bind_blob(ins, 2, pub, 32);
	if (mdb_step(ins) != MDB_DONE)
		return mdb_err(db, "audit store", err);
	return 0;
}

/* Continuity checks and inserts, inside the caller's transaction. A return of -2 is a
 * continuity break (alert text in err). */
static int store_locked(struct mdm_audit_store *s, const char *dev, const uint8_t pub[32],
			const Cells__V1__AuditBatch *b, struct mdm_audit_store_result *res,
			cells_err_t *err)
{
	struct mdb *db = s->db;
	if (check_device(db, dev, pub, err) < 0)
		return -1;
	struct audit_verifier v;
	audit_verifier_init(&v);
	v.allow_any_start = true;
	uint8_t h[AUDIT_HASH_LEN];
	if (b->n_records) {
		uint64_t f = b->records[0]->seq;
		res->first_seq = f;
		res->last_seq = b->records[b->n_records - 1]->seq;
		int r = f > 1 ? stored_hash(db, dev, f - 1, false, h, err) : 0;
		if (r == 0 && f > 1)
			r = stored_hash(db, dev, f - 1, true, h, err);
		if (r < 0)
			return -1;
		if (r == 1) {
			v.have_anchor = true;
			v.anchor_seq = f - 1;
			memcpy(v.anchor_hash, h, AUDIT_HASH_LEN);
		}
	}
	for (size_t i = 0; i < b->n_records; i++) {
		struct audit_rec r;
		if (audit_rec_from_pb(b->records[i], &r, err) < 0)
			return -1;
		if (audit_verifier_record(&v, &r, err) < 0)
			return -2;
		for (int cps = 0; cps < 2; cps++) {
			int k = stored_hash(db, dev, r.seq, cps, h, err);
			if (k < 0)
				return -1;
			if (k == 1 && memcmp(h, r.hash, AUDIT_HASH_LEN))
				return cells_err_set(err, EBADMSG,
						     "record %" PRIu64 " differs from the %s "
						     "uploaded before (the device log was "
						     "rewritten, or truncated and appended to)",
						     r.seq, cps ? "checkpoint" : "copy");
		}
	}
	struct audit_cp cp = {0};
	if (b->checkpoint) {
		if (audit_cp_open(b->checkpoint, pub, &cp, err) < 0)
			return -1;
		res->checkpoint_seq = cp.seq;
		if (b->n_records && cp.seq < res->last_seq)
			return cells_err_set(err, EBADMSG,
					     "checkpoint at %" PRIu64 " is below the batch's last "
					     "record %" PRIu64,
					     cp.seq, res->last_seq);
		if (cp.seq == res->last_seq && b->n_records &&
		    memcmp(cp.head_hash, v.head, AUDIT_HASH_LEN))
			return cells_err_set(err, EBADMSG,
					     "record %" PRIu64 ": differs from the batch's signed "
					     "checkpoint",
					     cp.seq);
		for (int cps = 0; cps < 2; cps++) {
			int k = stored_hash(db, dev, cp.seq, cps, h, err);
			if (k < 0)
				return -1;
			if (k == 1 && memcmp(h, cp.head_hash, AUDIT_HASH_LEN))
				return cells_err_set(
				    err, EBADMSG,
				    "record %" PRIu64 ": the new signed checkpoint "
				    "differs from the %s uploaded before (the device "
				    "log was rewritten)",
				    cp.seq, cps ? "checkpoint" : "record");
		}
		/* a checkpoint signed later never covers less, unless the log was truncated */
		cleanup_mdb_stmt struct mdb_stmt *q = NULL;
		if (mdb_prepare(
			db,
			"SELECT seq, time_us FROM mdm_audit_checkpoint WHERE device_id=? AND "
			"seq > ? AND time_us < ? ORDER BY seq DESC LIMIT 1",
			&q, err) < 0)
			return -1;
		mdb_bind_text(q, 1, dev);
		mdb_bind_int64(q, 2, cp.seq);
		mdb_bind_int64(q, 3, cp.time_us);
		if (mdb_step(q) == MDB_ROW)
			return cells_err_set(err, EBADMSG,
					     "record %" PRIu64 " is missing: the device log was "
					     "truncated (its new checkpoint covers up to %" PRIu64
					     ", one signed earlier covered up to %" PRIu64 ")",
					     cp.seq + 1, cp.seq, (uint64_t)mdb_column_int64(q, 0));
		/* and a record already held beyond it must not exist either */
	}
	cleanup_mdb_stmt struct mdb_stmt *ins = NULL;
	if (mdb_prepare(db,
			"INSERT INTO mdm_audit_record(device_id,seq,time_us,vp,actor,event,"
			"outcome,details,details_withheld,details_hash,prev_hash,hash,received_us) "
			"VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
			&ins, err) < 0)
		return -1;
	int64_t now = cells_now_us();
	for (size_t i = 0; i < b->n_records; i++) {
		const Cells__V1__AuditRecord *p = b->records[i];
		mdb_reset(ins);
		mdb_bind_text(ins, 1, dev);
		mdb_bind_int64(ins, 2, p->seq);
		mdb_bind_int64(ins, 3, p->time_us);
		mdb_bind_text(ins, 4, p->vp);
		mdb_bind_text(ins, 5, p->actor);
		mdb_bind_text(ins, 6, p->event);
		mdb_bind_text(ins, 7, p->outcome);
		mdb_bind_text(ins, 8, p->details_withheld ? "" : p->details);
		mdb_bind_int64(ins, 9, p->details_withheld);
		if (p->details_withheld)
			mdb_bind_blob(ins, 10, p->details_hash.data, p->details_hash.len);
		else
			mdb_bind_null(ins, 10);
		mdb_bind_blob(ins, 11, p->prev_hash.data, AUDIT_HASH_LEN);
		mdb_bind_blob(ins, 12, p->hash.data, AUDIT_HASH_LEN);
		mdb_bind_int64(ins, 13, now);
		if (mdb_step(ins) != MDB_DONE)
			return mdb_err(db, "audit store", err);
		res->stored += (uint64_t)mdb_changes(db);
	}
	if (b->checkpoint) {
		size_t n = cells__v1__signed__get_packed_size(b->checkpoint);
		cleanup_free uint8_t *blob = malloc(n ? n : 1);
		cleanup_mdb_stmt struct mdb_stmt *c = NULL;
		if (!blob)
			return cells_err_sys(err, ENOMEM, "audit store");
		cells__v1__signed__pack(b->checkpoint, blob);
		if (mdb_prepare(db,
				"INSERT INTO "
				"mdm_audit_checkpoint(device_id,seq,head_hash,time_us,"
				"signed,received_us) VALUES(?,?,?,?,?,?) ON CONFLICT DO NOTHING",
				&c, err) < 0)
			return -1;
		mdb_bind_text(c, 1, dev);
		mdb_bind_int64(c, 2, cp.seq);
		mdb_bind_blob(c, 3, cp.head_hash, AUDIT_HASH_LEN);
		mdb_bind_int64(c, 4, cp.time_us);
		mdb_bind_blob(c, 5, blob, n);
		mdb_bind_int64(c, 6, now);
		if (mdb_step(c) != MDB_DONE)
			return mdb_err(db, "audit store", err);
	}
	return 0;
}

int mdm_audit_store_batch(struct mdm_audit_store *s, const char *device_id, const uint8_t pub[32],
			  const Cells__V1__AuditBatch *b, struct mdm_audit_store_result *res,
			  cells_err_t *err)
{
	memset(res, 0, sizeof *res);
	char id[AUDIT_DEVICE_ID_LEN + 1];
	audit_device_id(pub, id);
	if (strcmp(id, device_id))
		return cells_err_set(err, EPERM, "audit upload: key is not device %s's", device_id);
	if (strcmp(b->device_id, device_id))
		return cells_err_set(err, EPERM, "audit upload from %s names device %.40s",
				     device_id, b->device_id);
	if (audit_batch_check(b, err) < 0)
		return -1;
	/* a full record's details_hash, when present, must be the hash of its details: the
	 * chain covers the details, so a record saying otherwise is inconsistent */
	for (size_t i = 0; i < b->n_records; i++) {
		const Cells__V1__AuditRecord *p = b->records[i];
		uint8_t h[AUDIT_HASH_LEN];
		if (p->details_withheld || !p->details_hash.len)
			continue;
		audit_details_hash(p->details ? p->details : "", h);
		if (p->details_hash.len != AUDIT_HASH_LEN ||
		    memcmp(p->details_hash.data, h, AUDIT_HASH_LEN))
			return cells_err_set(err, EBADMSG,
					     "audit upload: record %" PRIu64
					     ": details_hash does not match its details",
					     p->seq);
	}
	if (mdb_begin(s->db, err) < 0)
		return -1;
	int r = store_locked(s, device_id, pub, b, res, err);
	if (r < 0) {
		mdb_rollback(s->db);
		if (r == -1 && !(err && err->code == EBADMSG))
			return cells_err_prefix(err, "audit upload from %s", device_id);
		/* a continuity or integrity break: keep an alert */
		res->alert = true;
		uint64_t seq = res->first_seq;
		const char *rp = err ? strstr(err->msg, "record ") : NULL;
		if (rp)
			sscanf(rp, "record %" SCNu64, &seq);
		add_alert(s->db, device_id, seq, err ? err->msg : "break");
		return cells_err_prefix(err, "audit upload from %s refused", device_id);
	}
	if (mdb_commit(s->db, err) < 0) {
		mdb_rollback(s->db);
		return -1;
	}
	return 0;
}

/* ---- verification of what is stored ----------------------------------------- */

static void rec_from_row(struct mdb_stmt *q, struct audit_rec *r)
{
	memset(r, 0, sizeof *r);
	r->seq = (uint64_t)mdb_column_int64(q, 0);
	r->time_us = mdb_column_int64(q, 1);
	r->vp = mdb_column_text(q, 2);
	r->actor = mdb_column_text(q, 3);
	r->event = mdb_column_text(q, 4);
	r->outcome = mdb_column_text(q, 5);
	r->details = mdb_column_text(q, 6);
	r->details_withheld = mdb_column_int(q, 7);
	if (mdb_column_bytes(q, 8) == AUDIT_HASH_LEN)
		memcpy(r->details_hash, mdb_column_blob(q, 8), AUDIT_HASH_LEN);
	if (mdb_column_bytes(q, 9) == AUDIT_HASH_LEN)
		memcpy(r->prev_hash, mdb_column_blob(q, 9), AUDIT_HASH_LEN);
	if (mdb_column_bytes(q, 10) == AUDIT_HASH_LEN)
		memcpy(r->hash, mdb_column_blob(q, 10), AUDIT_HASH_LEN);
	if (!r->vp)
		r->vp = "";
	if (!r->actor)
		r->actor = "";
	if (!r->event)
		r->event = "";
	if (!r->outcome)
		r->outcome = "";
}

#define SREC_COLS                                                                                  \
	"seq,time_us,vp,actor,event,outcome,details,details_withheld,details_hash,prev_hash,hash"

int mdm_audit_verify_device(struct mdm_audit_store *s, const char *device_id, bool *ok,
			    json_object **report, cells_err_t *err)
{
	struct mdb *db = s->db;
	uint8_t pub[32];
	{
		cleanup_mdb_stmt struct mdb_stmt *q = NULL;
		if (mdb_prepare(db, "SELECT pubkey FROM mdm_audit_device WHERE device_id=?", &q,
				err) < 0)
			return -1;
		mdb_bind_text(q, 1, device_id);
		if (mdb_step(q) != MDB_ROW || mdb_column_bytes(q, 0) != 32)
			return cells_err_set(err, ENOENT, "no audit uploads from device %s",
					     device_id);
		memcpy(pub, mdb_column_blob(q, 0), 32);
	}
	json_object *rep = json_object_new_object();
	json_object *gaps = json_object_new_array();
	json_object *alerts = json_object_new_array();
	char problem[CELLS_ERR_MSG_MAX] = "";
	uint64_t bad_seq = 0, nrec = 0, ncp = 0;
	struct audit_verifier v;
	audit_verifier_init(&v);
	v.allow_any_start = true;
	cells_err_t e2;
	int ret = -1;
	mdb_exec(db, "BEGIN", NULL);
	cleanup_mdb_stmt struct mdb_stmt *q = NULL;
	if (mdb_prepare(db,
			"SELECT " SREC_COLS " FROM mdm_audit_record WHERE device_id=? ORDER BY seq",
			&q, err) < 0)
		goto out;
	mdb_bind_text(q, 1, device_id);
	int rc;
	while ((rc = mdb_step(q)) == MDB_ROW) {
		struct audit_rec r;
		rec_from_row(q, &r);
		if (v.started && r.seq > v.last_seq + 1) {
			/* records not uploaded (e.g. upload NONE for a while): a new segment */
			json_object *g = json_object_new_object();
			json_object_object_add(g, "from",
					       json_object_new_int64((int64_t)v.last_seq + 1));
			json_object_object_add(g, "to", json_object_new_int64((int64_t)r.seq - 1));
			json_object_array_add(gaps, g);
			audit_verifier_init(&v);
			v.allow_any_start = true;
		}
		if (audit_verifier_record(&v, &r, &e2) < 0) {
			snprintf(problem, sizeof problem, "%s", e2.msg);
			bad_seq = v.bad_seq;
			break;
		}
		nrec++;
	}
	if (!problem[0] && rc != MDB_DONE) {
		mdb_err(db, "audit verify", err);
		goto out;
	}
	/* every checkpoint: signature, agreement with the record at its seq, and monotonic
	 * in signing time */
	{
		cleanup_mdb_stmt struct mdb_stmt *c = NULL;
		if (mdb_prepare(db,
				"SELECT seq, signed FROM mdm_audit_checkpoint WHERE device_id=? "
				"ORDER BY time_us, seq",
				&c, err) < 0)
			goto out;
		mdb_bind_text(c, 1, device_id);
		uint64_t max_seq = 0;
		while (mdb_step(c) == MDB_ROW) {
			cleanup_signed Cells__V1__Signed *sg = NULL;
			struct audit_cp cp;
			uint64_t seq = (uint64_t)mdb_column_int64(c, 0);
			uint8_t h[AUDIT_HASH_LEN];
			ncp++;
			if (problem[0])
				continue;
			if (cells_signed_decode(mdb_column_blob(c, 1),
						(size_t)mdb_column_bytes(c, 1), &sg, &e2) < 0 ||
			    audit_cp_open(sg, pub, &cp, &e2) < 0 || cp.seq != seq) {
				snprintf(problem, sizeof problem, "checkpoint at %" PRIu64 ": %s",
					 seq, e2.msg);
				bad_seq = seq;
				continue;
			}
			if (cp.seq < max_seq) {
				snprintf(
				    problem, sizeof problem,
				    "record %" PRIu64 " is missing: the device log was truncated "
				    "(checkpoint at %" PRIu64 " signed after one at %" PRIu64 ")",
				    cp.seq + 1, cp.seq, max_seq);
				bad_seq = cp.seq + 1;
			}
			if (cp.seq > max_seq)
				max_seq = cp.seq;
			int k = stored_hash(db, device_id, cp.seq, false, h, err);
			if (k < 0)
				goto out;
			if (!problem[0] && k == 1 && memcmp(h, cp.head_hash, AUDIT_HASH_LEN)) {
				snprintf(problem, sizeof problem,
					 "record %" PRIu64 ": differs from its signed checkpoint",
					 cp.seq);
				bad_seq = cp.seq;
			}
		}
	}
	{
		cleanup_mdb_stmt struct mdb_stmt *a = NULL;
		if (mdb_prepare(
			db,
			"SELECT seq, time_us, reason FROM mdm_audit_alert WHERE device_id=? "
			"ORDER BY id",
			&a, err) < 0)
			goto out;
		mdb_bind_text(a, 1, device_id);
		while (mdb_step(a) == MDB_ROW) {
			json_object *o = json_object_new_object();
			json_object_object_add(o, "seq",
					       json_object_new_int64(mdb_column_int64(a, 0)));
			json_object_object_add(o, "time_us",
					       json_object_new_int64(mdb_column_int64(a, 1)));
			json_object_object_add(o, "reason",
					       json_object_new_string(mdb_column_text(a, 2)));
			json_object_array_add(alerts, o);
		}
	}
	if (!problem[0] && json_object_array_length(alerts)) {
		json_object *a0 = json_object_array_get_idx(alerts, 0);
		snprintf(problem, sizeof problem, "refused upload: %s",
			 json_object_get_string(json_object_object_get(a0, "reason")));
		bad_seq = (uint64_t)json_object_get_int64(json_object_object_get(a0, "seq"));
	}
	*ok = !problem[0];
	json_object_object_add(rep, "device_id", json_object_new_string(device_id));
	json_object_object_add(rep, "ok", json_object_new_boolean(*ok));
	json_object_object_add(rep, "records", json_object_new_int64((int64_t)nrec));
	json_object_object_add(rep, "checkpoints", json_object_new_int64((int64_t)ncp));
	json_object_object_add(rep, "gaps", json_object_get(gaps));
	json_object_object_add(rep, "alerts", json_object_get(alerts));
	if (!*ok) {
		json_object_object_add(rep, "bad_seq", json_object_new_int64((int64_t)bad_seq));
		json_object_object_add(rep, "reason", json_object_new_string(problem));
	}
	*report = rep;
	rep = NULL;
	ret = 0;
out:
	mdb_exec(db, "ROLLBACK", NULL);
	json_object_put(gaps);
	json_object_put(alerts);
	json_object_put(rep);
	return ret;
}

/* ---- commands ---------------------------------------------------------------- */

static int open_store(const struct mdm *m, struct mdm_audit_store **s, cells_err_t *err)
{
	char p[PATH_MAX];
	if (cells_mkdir_p(m->state_dir, 0700, err) < 0)
		return -1;
	mdm_path(m, "audit.db", p);
	return mdm_audit_store_open(m->db[0] ? m->db : p, s, err);
}

/* Read a bundle frame by frame: call fn for each decoded batch. */
typedef int (*bundle_fn)(void *ctx, const uint8_t pub[32], const Cells__V1__AuditBatch *b,
			 cells_err_t *err);
static int read_bundle(const char *path, uint8_t pub[32], bundle_fn fn, void *ctx, cells_err_t *err)
{
	cleanup_file FILE *f = fopen(path, "re");
	if (!f)
		return cells_err_sys(err, errno, "%s", path);
	uint8_t hdr[AUDIT_BUNDLE_HEADER_LEN];
	if (fread(hdr, 1, sizeof hdr, f) != sizeof hdr ||
	    audit_bundle_header(hdr, sizeof hdr, pub, err) < 0)
		return cells_err_set(err, EBADMSG, "%s: not a Cells audit export (bad header)",
				     path);
	cleanup_free uint8_t *buf = NULL;
	for (uint64_t frame = 1;; frame++) {
		uint8_t l[4];
		size_t got = fread(l, 1, 4, f);
		if (got == 0 && feof(f))
			return 0;
		if (got != 4)
			return cells_err_set(err, EBADMSG, "%s: frame %" PRIu64 " is truncated",
					     path, frame);
		size_t n = (size_t)l[0] << 24 | (size_t)l[1] << 16 | (size_t)l[2] << 8 | l[3];
		if (n > CELLS_MAX_ENVELOPE)
			return cells_err_set(err, EMSGSIZE,
					     "%s: frame %" PRIu64 " of %zu bytes is over the limit",
					     path, frame, n);
		free(buf);
		buf = malloc(n ? n : 1);
		if (!buf)
			return cells_err_sys(err, ENOMEM, "%s", path);
		if (fread(buf, 1, n, f) != n)
			return cells_err_set(err, EBADMSG, "%s: frame %" PRIu64 " is truncated",
					     path, frame);
		cleanup_audit_batch Cells__V1__AuditBatch *b = NULL;
		if (audit_batch_decode(buf, n, &b, err) < 0)
			return cells_err_prefix(err, "%s: frame %" PRIu64, path, frame);
		if (fn(ctx, pub, b, err) < 0)
			return -1;
	}
}

static int verify_fn(void *ctx, const uint8_t pub[32], const Cells__V1__AuditBatch *b,
		     cells_err_t *err)
{
	return audit_verifier_batch(ctx, b, pub, err);
}

static int cmd_verify_file(struct mdm *m, const char *path)
{
	cells_err_t err = {0};
	struct audit_verifier v;
	audit_verifier_init(&v);
	uint8_t pub[32];
	char id[AUDIT_DEVICE_ID_LEN + 1] = "";
	int r = read_bundle(path, pub, verify_fn, &v, &err);
	if (r == 0)
		r = audit_verifier_finish(&v, &err);
	if (r < 0 && !v.broken) {
		fprintf(stderr, "cells-mdm: audit verify: %s\n", err.msg);
		return 1;
	}
	audit_device_id(pub, id);
	if (m->json) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "device_id", json_object_new_string(id));
		json_object_object_add(o, "ok", json_object_new_boolean(!v.broken));
		json_object_object_add(o, "records", json_object_new_int64((int64_t)v.records));
		json_object_object_add(o, "first_seq", json_object_new_int64((int64_t)v.first_seq));
		json_object_object_add(o, "last_seq", json_object_new_int64((int64_t)v.last_seq));
		json_object_object_add(o, "checkpoints",
				       json_object_new_int64((int64_t)v.checkpoints));
		if (v.broken) {
			json_object_object_add(o, "bad_seq",
					       json_object_new_int64((int64_t)v.bad_seq));
			json_object_object_add(o, "reason", json_object_new_string(v.reason));
		}
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
		json_object_put(o);
	} else if (!v.broken) {
		printf("audit export verifies: device %s, %" PRIu64 " records (seq %" PRIu64
		       "..%" PRIu64 "), %" PRIu64 " signed checkpoints, signed head at %" PRIu64
		       "\n",
		       id, v.records, v.first_seq, v.last_seq, v.checkpoints, v.max_cp_seq);
	}
	if (v.broken) {
		fprintf(stderr, "cells-mdm: audit verify: BROKEN at record %" PRIu64 ": %s\n",
			v.bad_seq, v.reason);
		return 1;
	}
	return 0;
}

static int valid_device_id(const char *s)
{
	if (strlen(s) != AUDIT_DEVICE_ID_LEN)
		return 0;
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return 0;
	return 1;
}

static int cmd_verify_device(struct mdm *m, const char *dev)
{
	cells_err_t err = {0};
	struct mdm_audit_store *s = NULL;
	json_object *rep = NULL;
	bool ok = false;
	if (open_store(m, &s, &err) < 0 || mdm_audit_verify_device(s, dev, &ok, &rep, &err) < 0) {
		mdm_audit_store_close(s);
		fprintf(stderr, "cells-mdm: audit verify: %s\n", err.msg);
		return 1;
	}
	mdm_audit_store_close(s);
	if (m->json)
		printf("%s\n", json_object_to_json_string_ext(rep, JSON_C_TO_STRING_PRETTY));
	else if (ok)
		printf("audit uploads of %s verify: %s records, %s checkpoints, %zu gaps\n", dev,
		       json_object_get_string(json_object_object_get(rep, "records")),
		       json_object_get_string(json_object_object_get(rep, "checkpoints")),
		       json_object_array_length(json_object_object_get(rep, "gaps")));
	if (!ok)
		fprintf(stderr, "cells-mdm: audit verify: device %s BROKEN at record %s: %s\n", dev,
			json_object_get_string(json_object_object_get(rep, "bad_seq")),
			json_object_get_string(json_object_object_get(rep, "reason")));
	json_object_put(rep);
	return ok ? 0 : 1;
}

int mdm_cmd_audit_verify(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	if (argc != 1)
		return mdm_usage(cmd);
	struct stat st;
	if (stat(argv[0], &st) == 0 || !valid_device_id(argv[0]))
		return cmd_verify_file(m, argv[0]);
	return cmd_verify_device(m, argv[0]);
}

struct import_ctx {
	struct mdm_audit_store *s;
	uint64_t stored, batches;
	bool alert;
};

static int import_fn(void *ctx, const uint8_t pub[32], const Cells__V1__AuditBatch *b,
		     cells_err_t *err)
{
	struct import_ctx *ic = ctx;
	struct mdm_audit_store_result res;
	char id[AUDIT_DEVICE_ID_LEN + 1];
	audit_device_id(pub, id);
	int r = mdm_audit_store_batch(ic->s, id, pub, b, &res, err);
	ic->alert |= res.alert;
	ic->stored += res.stored;
	ic->batches++;
	return r;
}

int mdm_cmd_audit_import(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	if (argc != 1)
		return mdm_usage(cmd);
	cells_err_t err = {0};
	struct import_ctx ic = {0};
	uint8_t pub[32];
	char id[AUDIT_DEVICE_ID_LEN + 1];
	if (open_store(m, &ic.s, &err) < 0 || read_bundle(argv[0], pub, import_fn, &ic, &err) < 0) {
		mdm_audit_store_close(ic.s);
		fprintf(stderr, "cells-mdm: audit import: %s\n", err.msg);
		return 1;
	}
	mdm_audit_store_close(ic.s);
	audit_device_id(pub, id);
	printf("imported %" PRIu64 " new records of device %s (%" PRIu64 " batches)\n", ic.stored,
	       id, ic.batches);
	return 0;
}

int mdm_cmd_audit_query(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	if (argc < 1 || !valid_device_id(argv[0]))
		return mdm_usage(cmd);
	const char *dev = argv[0], *vp = NULL, *type = NULL, *outcome = NULL, *grep = NULL;
	int64_t since = 0, until = 0;
	long limit = 100;
	bool csv = false;
	for (int i = 1; i < argc; i++) {
		const char *o = argv[i];
		if (!strcmp(o, "--csv")) {
			csv = true;
			continue;
		}
		if (i + 1 >= argc)
			return mdm_usage(cmd);
		const char *v = argv[++i];
		if (!strcmp(o, "--since") || !strcmp(o, "--until")) {
			int64_t t;
			if (audit_parse_time(v, cells_now_us(), &t) < 0) {
				fprintf(stderr, "cells-mdm: audit: bad time '%s'\n", v);
				return 2;
			}
			*(o[2] == 's' ? &since : &until) = t;
		} else if (!strcmp(o, "--vp"))
			vp = v;
		else if (!strcmp(o, "--type"))
			type = v;
		else if (!strcmp(o, "--outcome"))
			outcome = v;
		else if (!strcmp(o, "--grep"))
			grep = v;
		else if (!strcmp(o, "--limit")) {
			limit = strtol(v, NULL, 10);
			if (limit < 1 || limit > 100000) {
				fprintf(stderr, "cells-mdm: audit: --limit must be 1..100000\n");
				return 2;
			}
		} else
			return mdm_usage(cmd);
	}
	cells_err_t err = {0};
	struct mdm_audit_store *s = NULL;
	if (open_store(m, &s, &err) < 0) {
		fprintf(stderr, "cells-mdm: audit: %s\n", err.msg);
		return 1;
	}
	cleanup_mdb_stmt struct mdb_stmt *q = NULL;
	const char *sql =
	    "SELECT * FROM (SELECT seq,time_us,vp,actor,event,outcome,details,details_withheld "
	    "FROM mdm_audit_record WHERE device_id=?1 AND (?2=0 OR time_us>=?2) AND "
	    "(?3=0 OR time_us<=?3) AND (?4 IS NULL OR vp=?4) AND (?5 IS NULL OR "
	    "event=?5 OR substr(event,1,length(?5)+1)=?5||'.') AND (?6 IS NULL OR "
	    "outcome=?6) AND (?7 IS NULL OR instr(details,?7)>0 OR instr(event,?7)>0 OR "
	    "instr(actor,?7)>0) ORDER BY seq DESC LIMIT ?8) AS r ORDER BY seq";
	if (mdb_prepare(s->db, sql, &q, &err) < 0) {
		fprintf(stderr, "cells-mdm: audit: %s\n", err.msg);
		mdm_audit_store_close(s);
		return 1;
	}
	mdb_bind_text(q, 1, dev);
	mdb_bind_int64(q, 2, since);
	mdb_bind_int64(q, 3, until);
	mdb_bind_text(q, 4, vp);
	mdb_bind_text(q, 5, type);
	mdb_bind_text(q, 6, outcome);
	mdb_bind_text(q, 7, grep);
	mdb_bind_int64(q, 8, limit);
	json_object *arr = json_object_new_array();
	while (mdb_step(q) == MDB_ROW) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "seq", json_object_new_int64(mdb_column_int64(q, 0)));
		json_object_object_add(o, "time_us", json_object_new_int64(mdb_column_int64(q, 1)));
		static const char *const names[] = {"vp", "actor", "event", "outcome", "details"};
		for (int c = 0; c < 5; c++)
			json_object_object_add(
			    o, names[c],
			    json_object_new_string(c == 4 && mdb_column_int(q, 7)
						       ? "(withheld)"
						       : mdb_column_text(q, 2 + c)));
		json_object_array_add(arr, o);
	}
	mdb_finalize(q);
	q = NULL;
	mdm_audit_store_close(s);
	static const char *const cols[] = {"seq",   "time_us", "vp",	 "actor",
					   "event", "outcome", "details"};
	if (m->json) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "records", arr);
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
		json_object_put(o);
		return 0;
	}
	for (size_t i = 0; i < json_object_array_length(arr) + 1; i++) {
		json_object *o = i ? json_object_array_get_idx(arr, i - 1) : NULL;
		for (size_t c = 0; c < CELLS_ARRAY_SIZE(cols); c++) {
			const char *v =
			    o ? json_object_get_string(json_object_object_get(o, cols[c]))
			      : cols[c];
			if (csv) {
				bool qt = strpbrk(v, ",\"\n") != NULL;
				if (qt) {
					putchar('"');
					for (const char *p = v; *p; p++) {
						if (*p == '"')
							putchar('"');
						putchar(*p);
					}
					putchar('"');
				} else {
					fputs(v, stdout);
				}
				putchar(c + 1 < CELLS_ARRAY_SIZE(cols) ? ',' : '\n');
			} else {
				printf("%s%s", v, c + 1 < CELLS_ARRAY_SIZE(cols) ? "\t" : "\n");
			}
		}
	}
	json_object_put(arr);
	return 0;
}
