/* audit_mgmt.c - audit uploads over the management channel (see audit_mgmt.h). */
#include "audit_mgmt.h"
#include "cjson.h"
#include "offline.h"
#include "audit.h"
#include "cleanup.h"
#include "cleanup_sqlite.h"
#include "enforce.h"
#include "log.h"
#include "mgmt.h"
#include "outbox.h"
#include "policy_engine.h"
#include "sqldb.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

struct audit_mgmt {
	struct cellsd *d;
	uint64_t acked;				/* last seq the server acknowledged (persisted) */
	char inflight[40];			/* message id of the batch in flight ("" none) */
	uint64_t inflight_first, inflight_last; /* its records (persisted with it) */
	uint8_t inflight_hash[32];		/* hash of record inflight_last (persisted) */
	bool more;				/* the batch in flight did not reach the head */
	uint64_t want_since; /* a requested upload waiting for the one in flight */
	bool want;
	uint32_t interval_s;
	int64_t last_ms; /* last upload attempt (monotonic) */
	uint64_t timer;
	uint64_t batches, refused, forged_acks;
	char last_error[256];
};

static const char *const steps[] = {
    "CREATE TABLE audit_upload(id INTEGER PRIMARY KEY CHECK(id=1), acked_seq INTEGER NOT NULL,"
    " inflight_id TEXT NOT NULL, inflight_first INTEGER NOT NULL,"
    " inflight_last INTEGER NOT NULL);"
    "INSERT INTO audit_upload VALUES(1, 0, '', 0, 0);",
    /* signed audit acknowledgements: the ack must name the batch's last record hash */
    "ALTER TABLE audit_upload ADD COLUMN inflight_hash BLOB NOT NULL DEFAULT x'';",
};

static int64_t mono_ms(void)
{
	return cells_mono_ns() / 1000000;
}

static int save(struct audit_mgmt *u, cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(u->d->db,
			  "UPDATE audit_upload SET acked_seq=?, inflight_id=?, inflight_first=?, "
			  "inflight_last=?, inflight_hash=? WHERE id=1",
			  &st, err) < 0)
		return -1;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)u->acked);
	sqlite3_bind_text(st, 2, u->inflight, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)u->inflight_first);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)u->inflight_last);
	sqlite3_bind_blob(st, 5, u->inflight_hash, sizeof u->inflight_hash, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		return sqldb_err(u->d->db, "audit upload cursor", err);
	return 0;
}

static int load(struct audit_mgmt *u, cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(u->d->db,
			  "SELECT acked_seq, inflight_id, inflight_first, inflight_last, "
			  "inflight_hash FROM audit_upload WHERE id=1",
			  &st, err) < 0)
		return -1;
	if (sqlite3_step(st) != SQLITE_ROW)
		return sqldb_err(u->d->db, "audit upload cursor", err);
	u->acked = (uint64_t)sqlite3_column_int64(st, 0);
	snprintf(u->inflight, sizeof u->inflight, "%s", (const char *)sqlite3_column_text(st, 1));
	u->inflight_first = (uint64_t)sqlite3_column_int64(st, 2);
	u->inflight_last = (uint64_t)sqlite3_column_int64(st, 3);
	memset(u->inflight_hash, 0, sizeof u->inflight_hash);
	if (sqlite3_column_bytes(st, 4) == (int)sizeof u->inflight_hash)
		memcpy(u->inflight_hash, sqlite3_column_blob(st, 4), sizeof u->inflight_hash);
	return 0;
}

/* Details per record: device-wide records in full, a VP's per its policy rule. */
static int upload_mode(const char *vp, void *data)
{
	struct cellsd *d = data;
	if (!vp || !vp[0])
		return CELLS__V1__AUDIT_UPLOAD__AUDIT_UPLOAD_FULL;
	const struct pol_vp_rule *r = policy_vp_rule(d, vp);
	if (!r || r->audit_upload == CELLS__V1__AUDIT_UPLOAD__AUDIT_UPLOAD_UNSPECIFIED)
		return CELLS__V1__AUDIT_UPLOAD__AUDIT_UPLOAD_METADATA;
	return r->audit_upload;
}

/* Enforcer: only remembers the upload period of the policy in force. */
static int apply_policy(struct cellsd *d, const struct pol_model *nw, const struct pol_model *old,
			cells_err_t *err)
{
	(void)old;
	(void)err;
	if (d->audit_up)
		d->audit_up->interval_s = nw->audit_upload_interval_s;
	return 0;
}

/* The outbox entry of the batch in flight still exists (it was not acknowledged). */
static bool inflight_queued(struct audit_mgmt *u)
{
	/* a read error counts as queued: no second batch is sent */
	return outbox_has(u->d, u->inflight) != 0;
}

static void arm(struct audit_mgmt *u, uint64_t ms);

/* Build the batch from since, queue it and record it as in flight, in one transaction. */
static int queue_batch(struct audit_mgmt *u, uint64_t since, cells_err_t *err)
{
	struct cellsd *d = u->d;
	uint64_t head = 0;
	if (audit_head(d->audit, &head, NULL, err) < 0)
		return -1;
	if (since < 1)
		since = 1;
	if (since > head)
		return 0;
	for (size_t max = AUDIT_UPLOAD_BATCH;; max /= 2) {
		Cells__V1__AuditBatch *b = NULL;
		if (audit_upload_batch(d->audit, since, max, upload_mode, d, &b, err) < 0)
			return cells_err_prefix(err, "audit upload");
		if (!b->n_records) {
			audit_batch_free(b);
			return 0;
		}
		char mid[40], hex[25];
		uint8_t rnd[12];
		RAND_bytes(rnd, sizeof rnd);
		cells_hex(rnd, sizeof rnd, hex);
		snprintf(mid, sizeof mid, "au-%s", hex);
		Cells__V1__Envelope env = CELLS__V1__ENVELOPE__INIT;
		env.message_id = mid;
		env.body_case = CELLS__V1__ENVELOPE__BODY_AUDIT_BATCH;
		env.audit_batch = b;
		size_t n = cells__v1__envelope__get_packed_size(&env);
		if (n > CELLS_MAX_ENVELOPE - 4096 && max > 1) {
			audit_batch_free(b); /* large details: fewer records per batch */
			continue;
		}
		uint64_t first = b->records[0]->seq, last = b->records[b->n_records - 1]->seq;
		const ProtobufCBinaryData *lh = &b->records[b->n_records - 1]->hash;
		int r = -1;
		if (sqldb_begin(d->db, err) == 0) {
			snprintf(u->inflight, sizeof u->inflight, "%s", mid);
			u->inflight_first = first;
			u->inflight_last = last;
			memset(u->inflight_hash, 0, sizeof u->inflight_hash);
			if (lh->len == sizeof u->inflight_hash)
				memcpy(u->inflight_hash, lh->data, lh->len);
			if (save(u, err) == 0 && outbox_put(d, &env, err) == 0 &&
			    sqldb_commit(d->db, err) == 0)
				r = 0;
			else
				sqldb_rollback(d->db);
		}
		audit_batch_free(b);
		if (r < 0) {
			u->inflight[0] = 0;
			return cells_err_prefix(err, "audit upload");
		}
		u->more = last < head;
		u->batches++;
		u->last_ms = mono_ms();
		log_info("audit: upload %s queued: records %" PRIu64 "..%" PRIu64 " (acked %" PRIu64
			 ")",
			 mid, first, last, u->acked);
		return 1;
	}
}

int audit_mgmt_upload_now(struct cellsd *d, uint64_t since_seq, cells_err_t *err)
{
	struct audit_mgmt *u = d->audit_up;
	if (!u)
		return cells_err_set(err, ENODEV, "audit upload: not running");
	if (u->inflight[0]) {
		u->want = true;
		u->want_since = since_seq;
		return 0;
	}
	return queue_batch(u, since_seq ? since_seq : u->acked + 1, err);
}

static void tick(struct audit_mgmt *u)
{
	cells_err_t err = {0};
	if (!mgmt_online(u->d) || u->inflight[0])
		return;
	int r = 0;
	if (u->want) {
		u->want = false;
		r = queue_batch(u, u->want_since ? u->want_since : u->acked + 1, &err);
	} else {
		uint64_t head = 0;
		if (audit_head(u->d->audit, &head, NULL, &err) < 0)
			r = -1;
		else if (head > u->acked) {
			uint64_t period_ms =
			    1000ull * (u->interval_s ? u->interval_s : AUDIT_UPLOAD_PERIOD_S);
			if (u->more || head - u->acked >= AUDIT_UPLOAD_THRESHOLD ||
			    (uint64_t)(mono_ms() - u->last_ms) >= period_ms)
				r = queue_batch(u, u->acked + 1, &err);
		}
	}
	if (r < 0) {
		u->last_ms = mono_ms(); /* tried: the next attempt waits a period */
		snprintf(u->last_error, sizeof u->last_error, "%s", err.msg);
		log_warn("%s", err.msg);
	}
}

static void on_timer(struct loop *l, void *data)
{
	struct audit_mgmt *u = data;
	(void)l;
	u->timer = 0;
	tick(u);
	arm(u, AUDIT_UPLOAD_POLL_MS);
}

static void arm(struct audit_mgmt *u, uint64_t ms)
{
	if (u->timer)
		loop_cancel_timer(u->d->loop, u->timer);
	u->timer = loop_add_timer(u->d->loop, ms, on_timer, u);
}

int audit_mgmt_init(struct cellsd *d, cells_err_t *err)
{
	struct audit_mgmt *u = calloc(1, sizeof *u);
	if (!u)
		return cells_err_sys(err, ENOMEM, "audit upload");
	u->d = d;
	d->audit_up = u;
	u->last_ms = mono_ms();
	if (sqldb_migrate(d->db, "audit_upload", steps, CELLS_ARRAY_SIZE(steps), err) < 0 ||
	    load(u, err) < 0)
		return cells_err_prefix(err, "audit upload");
	struct enforcer e = {"audit-upload", apply_policy};
	if (d->pe && enforce_register(d, &e, err) < 0)
		return -1;
	arm(u, AUDIT_UPLOAD_POLL_MS);
	return 0;
}

void audit_mgmt_stop(struct cellsd *d)
{
	struct audit_mgmt *u = d->audit_up;
	if (!u)
		return;
	if (u->timer)
		loop_cancel_timer(d->loop, u->timer);
	free(u);
	d->audit_up = NULL;
}

void audit_mgmt_on_connect(struct cellsd *d)
{
	struct audit_mgmt *u = d->audit_up;
	if (!u)
		return;
	/* a batch still in the outbox is sent again by the channel; one that left it (the
	 * Ack was handled but the cursor not saved) is rebuilt: the server de-duplicates */
	if (u->inflight[0] && !inflight_queued(u)) {
		log_info("audit: upload %s is no longer queued: rebuilding from %" PRIu64,
			 u->inflight, u->acked + 1);
		u->inflight[0] = 0;
		save(u, NULL);
	}
	if (!u->inflight[0])
		u->want = true;
	arm(u, 0);
}

/* Audited refusal of an acknowledgement of the batch in flight. */
static void ack_refused(struct audit_mgmt *u, const char *reason)
{
	u->forged_acks++;
	log_warn("audit: acknowledgement of upload %s refused: %s", u->inflight, reason);
	snprintf(u->last_error, sizeof u->last_error, "ack refused: %s", reason);
	cleanup_json json_object *det = json_object_new_object();
	json_object_object_add(det, "message_id", json_object_new_string(u->inflight));
	json_object_object_add(det, "last_seq", json_object_new_int64((int64_t)u->inflight_last));
	json_object_object_add(det, "reason", json_object_new_string(reason));
	cellsd_audit(u->d, "", "mdm", "audit.upload.ack_refused", "refused", det, NULL);
}

int audit_mgmt_on_ack(struct cellsd *d, const char *message_id, const Cells__V1__Signed *audit_ack)
{
	struct audit_mgmt *u = d->audit_up;
	cells_err_t err = {0};
	if (!u || !u->inflight[0] || strcmp(message_id, u->inflight))
		return 0;
	/* the cursor lets records go: it moves only on the server's signed word, which
	 * cellsd-net (relaying the Ack) cannot forge */
	Cells__V1__AuditAck *a = NULL;
	if (policy_verify_audit_ack(d, audit_ack, &a, &err) < 0) {
		ack_refused(u, err.msg);
		return -1;
	}
	char why[200] = "";
	if (!a->batch_message_id || strcmp(a->batch_message_id, u->inflight))
		snprintf(why, sizeof why, "it names batch %s",
			 a->batch_message_id ? a->batch_message_id : "");
	else if (a->seq != u->inflight_last)
		snprintf(why, sizeof why, "it names record %" PRIu64 ", the batch ends at %" PRIu64,
			 a->seq, u->inflight_last);
	else if (a->head_hash.len != sizeof u->inflight_hash ||
		 memcmp(a->head_hash.data, u->inflight_hash, sizeof u->inflight_hash))
		snprintf(why, sizeof why, "its head hash is not that of record %" PRIu64,
			 u->inflight_last);
	cells__v1__audit_ack__free_unpacked(a, NULL);
	if (why[0]) {
		ack_refused(u, why);
		return -1;
	}
	if (u->inflight_last > u->acked)
		u->acked = u->inflight_last;
	log_info("audit: upload %s acknowledged: records up to %" PRIu64 " are on the server",
		 u->inflight, u->acked);
	/* the MDM's signature over the batch this agent just sent: the device reached its
	 * MDM (the offline limits count from here; cellsd-net's "connected" is not proof) */
	offline_contact(d);
	u->inflight[0] = 0;
	u->inflight_first = u->inflight_last = 0;
	u->last_error[0] = 0;
	if (save(u, &err) < 0)
		log_warn("audit: %s", err.msg); /* the cursor stays behind: a re-upload, no loss */
	if (u->more || u->want)
		arm(u, 0);
	return 1;
}

void audit_mgmt_on_error(struct cellsd *d, const char *correlation_id, unsigned code,
			 const char *reason)
{
	struct audit_mgmt *u = d->audit_up;
	cells_err_t err = {0};
	if (!u || !u->inflight[0] || !correlation_id || strcmp(correlation_id, u->inflight))
		return;
	log_warn("audit: the server refused upload %s (records %" PRIu64 "..%" PRIu64
		 ", code %u): %s",
		 u->inflight, u->inflight_first, u->inflight_last, code, reason);
	cleanup_json json_object *det = json_object_new_object();
	json_object_object_add(det, "message_id", json_object_new_string(u->inflight));
	json_object_object_add(det, "first_seq", json_object_new_int64((int64_t)u->inflight_first));
	json_object_object_add(det, "last_seq", json_object_new_int64((int64_t)u->inflight_last));
	json_object_object_add(det, "code", json_object_new_int((int)code));
	json_object_object_add(det, "reason", json_object_new_string(reason ? reason : ""));
	cellsd_audit(d, "", "mdm", "audit.upload.refused", "refused", det, NULL);
	snprintf(u->last_error, sizeof u->last_error, "refused: %s", reason ? reason : "");
	u->refused++;
	/* the server answered: the batch leaves the outbox; the cursor stays, and the next
	 * period tries again from it */
	if (outbox_drop(d, u->inflight, &err) < 0)
		log_warn("audit: %s", err.msg);
	u->inflight[0] = 0;
	u->inflight_first = u->inflight_last = 0;
	u->more = false;
	u->last_ms = mono_ms();
	if (save(u, &err) < 0)
		log_warn("audit: %s", err.msg);
}

uint64_t audit_mgmt_acked_seq(struct cellsd *d)
{
	return d->audit_up ? d->audit_up->acked : 0;
}

void audit_mgmt_status_json(struct cellsd *d, json_object *o)
{
	struct audit_mgmt *u = d->audit_up;
	if (!u)
		return;
	uint64_t head = 0;
	audit_head(d->audit, &head, NULL, NULL);
	json_object *a = json_object_new_object();
	json_object_object_add(a, "acked_seq", json_object_new_int64((int64_t)u->acked));
	json_object_object_add(a, "head_seq", json_object_new_int64((int64_t)head));
	json_object_object_add(a, "inflight", json_object_new_string(u->inflight));
	json_object_object_add(a, "inflight_last",
			       json_object_new_int64((int64_t)u->inflight_last));
	json_object_object_add(a, "batches", json_object_new_int64((int64_t)u->batches));
	json_object_object_add(a, "refused", json_object_new_int64((int64_t)u->refused));
	json_object_object_add(a, "acks_refused", json_object_new_int64((int64_t)u->forged_acks));
	json_object_object_add(
	    a, "interval_s",
	    json_object_new_int64(u->interval_s ? u->interval_s : AUDIT_UPLOAD_PERIOD_S));
	json_object_object_add(a, "last_error", json_object_new_string(u->last_error));
	json_object_object_add(o, "audit_upload", a);
}

/* Safe: verified by the policy engine (signature of a command key, device, expiry) before
 * it reaches here; it only sends already-recorded log entries to the enrolled server. */
int audit_mgmt_cmd_upload(struct cellsd *d, const Cells__V1__Command *cmd,
			  Cells__V1__CommandResult *res, cells_err_t *err)
{
	(void)res;
	uint64_t since = cmd->audit_upload ? cmd->audit_upload->since_seq : 0;
	return audit_mgmt_upload_now(d, since, err) < 0 ? -1 : 0;
}
