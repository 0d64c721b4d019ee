/* mdm_store.c - the MDM's storage interface (mdm_store.h) on either backend: the queries
 * are written once, in SQL both engines accept, through mdm_db.h. */
#include "mdm_store.h"
#include "cleanup.h"
#include "mdm_db.h"
#include "sqldb.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>
#include <openssl/sha.h>

struct mdm_store {
	struct mdb *db;
	char frontend[MDM_FRONTEND_ID_LEN + 1]; /* this front end's id ("": not a front end) */
	/* PostgreSQL: the devices of the entries queued in the open transaction, notified
	 * just before its commit (mdm_store_commit); past MDM_NOTIFY_EACH of them one
	 * notification MDM_QUEUE_ALL instead */
	char (*notify)[64];
	size_t nnotify;
	bool notify_all;
	int64_t seq_lo, seq_hi; /* the seqs of the entries queued in the open transaction */
};

/* The migrations of both backends (mdm_db.h translates the words that differ). 1: the
 * schema as it was when versions were introduced (IF NOT EXISTS: an older file without a
 * version takes it as it is). A change is a new step at the end. */
static const char *const migrations[] = {
    "CREATE TABLE IF NOT EXISTS tokens(hash TEXT PRIMARY KEY, created INTEGER NOT NULL,"
    " expires INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS devices(id TEXT PRIMARY KEY, cert_serial TEXT NOT NULL,"
    " enrolled_at INTEGER NOT NULL, last_seen INTEGER NOT NULL DEFAULT 0,"
    " online INTEGER NOT NULL DEFAULT 0, policy_version INTEGER NOT NULL DEFAULT 0,"
    " agent_version TEXT NOT NULL DEFAULT '', compliance INTEGER NOT NULL DEFAULT 0,"
    " active INTEGER NOT NULL DEFAULT 1);"
    "CREATE TABLE IF NOT EXISTS queue(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " id TEXT UNIQUE NOT NULL, device TEXT NOT NULL, kind INTEGER NOT NULL,"
    " priority INTEGER NOT NULL, state INTEGER NOT NULL, created INTEGER NOT NULL,"
    " expires INTEGER NOT NULL, dedup TEXT NOT NULL, what TEXT NOT NULL, blob BLOB NOT NULL,"
    " delivered_at INTEGER NOT NULL DEFAULT 0, done_at INTEGER NOT NULL DEFAULT 0,"
    " attempts INTEGER NOT NULL DEFAULT 0, reason TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX IF NOT EXISTS queue_dev ON queue(device, state, priority DESC, seq);"
    "CREATE INDEX IF NOT EXISTS queue_dedup ON queue(device, dedup, state);"
    /* added with server-side wipe receipts: created on the first open of an older DB */
    "CREATE TABLE IF NOT EXISTS receipts(device TEXT NOT NULL, command_id TEXT NOT NULL,"
    " vp TEXT NOT NULL, queue_id TEXT NOT NULL, wiped_at INTEGER NOT NULL,"
    " key_status INTEGER NOT NULL, wrapped_key_destroyed INTEGER NOT NULL,"
    " recreated INTEGER NOT NULL, verified INTEGER NOT NULL, reason TEXT NOT NULL,"
    " signed BLOB NOT NULL, device_key BLOB NOT NULL, received_at INTEGER NOT NULL,"
    " PRIMARY KEY(device, command_id));"
    /* added with identity binding: the identity key (device id = its hash; it signs
     * receipts, checkpoints, results) and the TLS key of the certificate issued */
    "CREATE TABLE IF NOT EXISTS device_keys(id TEXT PRIMARY KEY, identity_key BLOB NOT NULL,"
    " tls_key BLOB NOT NULL);"
    /* added with computed compliance and audit seqs of DeviceHello */
    "CREATE TABLE IF NOT EXISTS device_report(id TEXT PRIMARY KEY,"
    " compliance_reasons TEXT NOT NULL DEFAULT '[]', audit_head INTEGER NOT NULL DEFAULT 0,"
    " audit_uploaded INTEGER NOT NULL DEFAULT 0, audit_max_head INTEGER NOT NULL DEFAULT 0,"
    " audit_flag TEXT NOT NULL DEFAULT '', audit_flag_at INTEGER NOT NULL DEFAULT 0);",
    /* 2: signed VP images (mdm_image.c): one row per NAME@VERSION (ref), the Signed
     * manifest as pushed, and our copy of the file (STATE_DIR/images/<sha256>.img) */
    "CREATE TABLE IF NOT EXISTS images(name TEXT NOT NULL, version INTEGER NOT NULL,"
    " ref TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL, fs_type TEXT NOT NULL,"
    " created INTEGER NOT NULL, expires_at INTEGER NOT NULL, manifest BLOB NOT NULL,"
    " path TEXT NOT NULL, pushed_at INTEGER NOT NULL, PRIMARY KEY(name, version));"
    "CREATE INDEX IF NOT EXISTS images_sha ON images(sha256);",
    /* 3: front ends' leases: a device is online only while the front end holding its
     * session (devices.frontend) refreshes its lease (mdm_store_frontend_*) */
    "CREATE TABLE IF NOT EXISTS frontends(id TEXT PRIMARY KEY, started INTEGER NOT NULL,"
    " lease_until INTEGER NOT NULL);"
    "ALTER TABLE devices ADD COLUMN frontend TEXT NOT NULL DEFAULT '';",
    /* 4: the VPs a device reports (DeviceHello.vps: name, running, foreground, locked,
     * number, the signed image each runs), a JSON array as `cells-mdm devices` shows it */
    "ALTER TABLE device_report ADD COLUMN vps TEXT NOT NULL DEFAULT '[]';",
};

int mdm_store_open(const char *where, struct mdm_store **out, cells_err_t *err)
{
	char path[PATH_MAX];
	bool pg = mdb_is_pg(where);
	if (!pg)
		snprintf(path, sizeof path, "%s/mdm.db", where);
	struct mdm_store *s = calloc(1, sizeof *s);
	if (!s)
		return cells_err_sys(err, ENOMEM, "store");
	/* the admin tools and the server (several servers on PostgreSQL) share it */
	if (mdb_open(pg ? where : path, SQLDB_SHARED, &s->db, err) < 0) {
		mdm_store_close(s);
		return -1;
	}
	if (mdb_migrate(s->db, "mdm", migrations, CELLS_ARRAY_SIZE(migrations), err) < 0) {
		if (!pg)
			cells_err_prefix(err, "%s", path);
		mdm_store_close(s);
		return -1;
	}
	*out = s;
	return 0;
}

void mdm_store_close(struct mdm_store *s)
{
	if (!s)
		return;
	mdb_close(s->db);
	free(s->notify);
	free(s);
}

static void notify_reset(struct mdm_store *s)
{
	s->nnotify = 0;
	s->notify_all = false;
	s->seq_lo = s->seq_hi = 0;
}

int mdm_store_begin(struct mdm_store *s, cells_err_t *err)
{
	notify_reset(s);
	return mdb_begin(s->db, err);
}

/* The wake-ups of the transaction's queue entries (PostgreSQL delivers them at commit):
 * one per device, or a single "look at your devices" for a fan-out. */
static int notify_flush(struct mdm_store *s, cells_err_t *err)
{
	int rc = 0;
	if (s->notify_all) {
		char all[64];
		snprintf(all, sizeof all, MDM_QUEUE_ALL " %lld %lld", (long long)s->seq_lo,
			 (long long)s->seq_hi);
		rc = mdb_notify(s->db, MDM_QUEUE_CHANNEL, all, err);
	}
	for (size_t i = 0; rc == 0 && !s->notify_all && i < s->nnotify; i++)
		rc = mdb_notify(s->db, MDM_QUEUE_CHANNEL, s->notify[i], err);
	notify_reset(s);
	return rc;
}

int mdm_store_commit(struct mdm_store *s, cells_err_t *err)
{
	if (notify_flush(s, err) < 0) {
		mdb_rollback(s->db);
		return -1;
	}
	return mdb_commit(s->db, err);
}

struct mdb *mdm_store_db(struct mdm_store *s)
{
	return s->db;
}

static void token_hash(const char *token, char out[65])
{
	uint8_t h[SHA256_DIGEST_LENGTH];
	SHA256((const unsigned char *)token, strlen(token), h);
	cells_hex(h, sizeof h, out);
}

int mdm_store_token_add(struct mdm_store *s, const char *token, int64_t expires, cells_err_t *err)
{
	char h[65];
	token_hash(token, h);
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	if (mdb_prepare(s->db, "INSERT INTO tokens(hash, created, expires) VALUES(?,?,?)", &st,
			err) < 0)
		return -1;
	mdb_bind_text(st, 1, h);
	mdb_bind_int64(st, 2, cells_now_us() / 1000000);
	mdb_bind_int64(st, 3, expires);
	if (mdb_step(st) != MDB_DONE)
		return mdb_err(s->db, "add token", err);
	return 0;
}

int mdm_store_token_consume(struct mdm_store *s, const char *token, int64_t now, cells_err_t *err)
{
	char h[65];
	token_hash(token, h);
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	/* one statement: a token is used at most once even with several front ends */
	if (mdb_prepare(s->db, "UPDATE tokens SET used=1 WHERE hash=? AND used=0 AND expires>?",
			&st, err) < 0)
		return -1;
	mdb_bind_text(st, 1, h);
	mdb_bind_int64(st, 2, now);
	if (mdb_step(st) != MDB_DONE)
		return mdb_err(s->db, "consume token", err);
	if (mdb_changes(s->db) == 1)
		return 0;
	cleanup_mdb_stmt struct mdb_stmt *q = NULL;
	if (mdb_prepare(s->db, "SELECT used, expires FROM tokens WHERE hash=?", &q, err) < 0)
		return -1;
	mdb_bind_text(q, 1, h);
	if (mdb_step(q) == MDB_ROW && !mdb_column_int(q, 0))
		return cells_err_set(err, ETIME, "enrollment token expired");
	return cells_err_set(err, EACCES, "enrollment token unknown or already used");
}

int mdm_store_device_enroll(struct mdm_store *s, const char *id, const char *cert_serial,
			    int64_t now, cells_err_t *err)
{
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	if (mdb_prepare(s->db,
			"INSERT INTO devices(id, cert_serial, enrolled_at) VALUES(?,?,?) "
			"ON CONFLICT(id) DO UPDATE SET cert_serial=excluded.cert_serial, "
			"enrolled_at=excluded.enrolled_at, active=1",
			&st, err) < 0)
		return -1;
	mdb_bind_text(st, 1, id);
	mdb_bind_text(st, 2, cert_serial);
	mdb_bind_int64(st, 3, now);
	if (mdb_step(st) != MDB_DONE)
		return mdb_err(s->db, "enroll device", err);
	return 0;
}

int mdm_store_device_keys_set(struct mdm_store *s, const char *id, const uint8_t identity[32],
			      const uint8_t tls[32], cells_err_t *err)
{
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	if (mdb_prepare(
		s->db,
		"INSERT INTO device_keys(id, identity_key, tls_key) VALUES(?,?,?) ON CONFLICT(id) "
		"DO UPDATE SET identity_key=excluded.identity_key, tls_key=excluded.tls_key",
		&st, err) < 0)
		return -1;
	mdb_bind_text(st, 1, id);
	mdb_bind_blob(st, 2, identity, 32);
	mdb_bind_blob(st, 3, tls, 32);
	if (mdb_step(st) != MDB_DONE)
		return mdb_err(s->db, "device keys", err);
	return 0;
}

int mdm_store_device_keys(struct mdm_store *s, const char *id, uint8_t identity[32],
			  uint8_t tls[32], cells_err_t *err)
{
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	if (mdb_prepare(s->db, "SELECT identity_key, tls_key FROM device_keys WHERE id=?", &st,
			err) < 0)
		return -1;
	mdb_bind_text(st, 1, id);
	int r = mdb_step(st);
	if (r == MDB_DONE)
		return 0;
	if (r != MDB_ROW)
		return mdb_err(s->db, "device keys", err);
	if (mdb_column_bytes(st, 0) != 32 || mdb_column_bytes(st, 1) != 32)
		return cells_err_set(err, EIO, "device keys of %s: corrupt", id);
	memcpy(identity, mdb_column_blob(st, 0), 32);
	memcpy(tls, mdb_column_blob(st, 1), 32);
	return 1;
}

int mdm_store_device_report(struct mdm_store *s, const char *id, const char *reasons_json,
			    const char *vps_json, uint64_t head, uint64_t uploaded, int64_t now,
			    char flag[200], cells_err_t *err)
{
	flag[0] = 0;
	uint64_t max_head = 0, prev_up = 0, prev_head = 0;
	cleanup_mdb_stmt struct mdb_stmt *q = NULL;
	if (mdb_prepare(
		s->db,
		"SELECT audit_head, audit_uploaded, audit_max_head FROM device_report WHERE id=?",
		&q, err) < 0)
		return -1;
	mdb_bind_text(q, 1, id);
	if (mdb_step(q) == MDB_ROW) {
		prev_head = (uint64_t)mdb_column_int64(q, 0);
		prev_up = (uint64_t)mdb_column_int64(q, 1);
		max_head = (uint64_t)mdb_column_int64(q, 2);
	}
	(void)prev_head;
	/* a head below one reported before, or below what was uploaded: the device's log
	 * lost its tail (records and checkpoints cut) */
	if (head < max_head)
		snprintf(flag, 200, "audit head went backwards: %llu, earlier %llu",
			 (unsigned long long)head, (unsigned long long)max_head);
	else if (head < uploaded || head < prev_up)
		snprintf(flag, 200, "audit head %llu is below the uploaded %llu",
			 (unsigned long long)head,
			 (unsigned long long)(uploaded > prev_up ? uploaded : prev_up));
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	if (mdb_prepare(
		s->db,
		"INSERT INTO device_report(id, compliance_reasons, audit_head, audit_uploaded,"
		" audit_max_head, audit_flag, audit_flag_at, vps) VALUES(?1,?2,?3,?4,?5,?6,?7,?8) "
		"ON CONFLICT(id) DO UPDATE SET compliance_reasons=?2, audit_head=?3, vps=?8,"
		" audit_uploaded=?4, audit_max_head=CASE WHEN device_report.audit_max_head>?5"
		" THEN device_report.audit_max_head ELSE ?5 END,"
		" audit_flag=CASE WHEN ?6<>'' THEN ?6 ELSE device_report.audit_flag END,"
		" audit_flag_at=CASE WHEN ?6<>'' THEN ?7 ELSE device_report.audit_flag_at END",
		&st, err) < 0)
		return -1;
	mdb_bind_text(st, 1, id);
	mdb_bind_text(st, 2, reasons_json);
	mdb_bind_int64(st, 3, (int64_t)head);
	mdb_bind_int64(st, 4, (int64_t)uploaded);
	mdb_bind_int64(st, 5, (int64_t)head);
	mdb_bind_text(st, 6, flag);
	mdb_bind_int64(st, 7, now);
	mdb_bind_text(st, 8, vps_json);
	if (mdb_step(st) != MDB_DONE)
		return mdb_err(s->db, "device report", err);
	return 0;
}

int mdm_store_latest_policy_blob(struct mdm_store *s, const char *id, uint64_t *installed,
				 uint8_t **blob, size_t *len, cells_err_t *err)
{
	*blob = NULL;
	*len = 0;
	*installed = 0;
	cleanup_mdb_stmt struct mdb_stmt *q = NULL;
	if (mdb_prepare(s->db, "SELECT policy_version FROM devices WHERE id=?", &q, err) < 0)
		return -1;
	mdb_bind_text(q, 1, id);
	if (mdb_step(q) == MDB_ROW)
		*installed = (uint64_t)mdb_column_int64(q, 0);
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	if (mdb_prepare(s->db,
			"SELECT blob FROM queue WHERE device=? AND kind=1 AND state IN (0,1,2) "
			"ORDER BY seq DESC LIMIT 1",
			&st, err) < 0)
		return -1;
	mdb_bind_text(st, 1, id);
	if (mdb_step(st) != MDB_ROW)
		return 0;
	size_t n = (size_t)mdb_column_bytes(st, 0);
	*blob = malloc(n ? n : 1);
	if (!*blob)
		return cells_err_sys(err, ENOMEM, "policy blob");
	memcpy(*blob, mdb_column_blob(st, 0), n);
	*len = n;
	return 1;
}

int mdm_store_device_known(struct mdm_store *s, const char *id, cells_err_t *err)
{
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	if (mdb_prepare(s->db, "SELECT 1 FROM devices WHERE id=? AND active=1", &st, err) < 0)
		return -1;
	mdb_bind_text(st, 1, id);
	int r = mdb_step(st);
	if (r == MDB_ROW)
		return 1;
	if (r == MDB_DONE)
		return 0;
	return mdb_err(s->db, "device lookup", err);
}

int mdm_store_device_seen(struct mdm_store *s, const char *id, bool online, int64_t now,
			  uint64_t policy_version, const char *agent_version, int compliance,
			  cells_err_t *err)
{
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	/* online: the session is ours (frontend); offline only while it is still ours (a
	 * session that moved to another front end stays online there) */
	if (agent_version) {
		if (mdb_prepare(s->db,
				"UPDATE devices SET online=?1, last_seen=?2, policy_version=?3, "
				"agent_version=?4, compliance=?5, frontend=?7 WHERE id=?6",
				&st, err) < 0)
			return -1;
		mdb_bind_int64(st, 3, (int64_t)policy_version);
		mdb_bind_text(st, 4, agent_version);
		mdb_bind_int64(st, 5, compliance);
		mdb_bind_text(st, 6, id);
		mdb_bind_text(st, 7, s->frontend);
	} else {
		if (mdb_prepare(s->db,
				online
				    ? "UPDATE devices SET online=?1, last_seen=?2, frontend=?4 "
				      "WHERE id=?3"
				    : "UPDATE devices SET online=?1, last_seen=?2 WHERE id=?3 AND "
				      "frontend=?4",
				&st, err) < 0)
			return -1;
		mdb_bind_text(st, 3, id);
		mdb_bind_text(st, 4, s->frontend);
	}
	mdb_bind_int64(st, 1, online);
	mdb_bind_int64(st, 2, now);
	if (mdb_step(st) != MDB_DONE)
		return mdb_err(s->db, "device seen", err);
	return 0;
}

int mdm_store_frontend_start(struct mdm_store *s, const char *id, int64_t now, cells_err_t *err)
{
	snprintf(s->frontend, sizeof s->frontend, "%s", id);
	cleanup_mdb_stmt struct mdb_stmt *d = NULL;
	if (mdb_begin(s->db, err) < 0)
		return -1;
	/* dead front ends (lease run out) and the online flag of the devices they held */
	if (mdb_prepare(s->db, "DELETE FROM frontends WHERE lease_until<?", &d, err) < 0)
		goto fail;
	mdb_bind_int64(d, 1, now);
	if (mdb_step_done(d, "front ends", err) < 0 ||
	    mdb_exec(s->db,
		     "UPDATE devices SET online=0 WHERE online<>0 AND frontend<>'' AND frontend "
		     "NOT IN (SELECT id FROM frontends)",
		     err) < 0 ||
	    mdm_store_frontend_refresh(s, now, err) < 0)
		goto fail;
	return mdb_commit(s->db, err);
fail:
	mdb_rollback(s->db);
	return -1;
}

int mdm_store_frontend_refresh(struct mdm_store *s, int64_t now, cells_err_t *err)
{
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	if (mdb_prepare(s->db,
			"INSERT INTO frontends(id, started, lease_until) VALUES(?1,?2,?3) "
			"ON CONFLICT(id) DO UPDATE SET lease_until=excluded.lease_until",
			&st, err) < 0)
		return -1;
	mdb_bind_text(st, 1, s->frontend);
	mdb_bind_int64(st, 2, now);
	mdb_bind_int64(st, 3, now + MDM_FRONTEND_LEASE_S);
	return mdb_step_done(st, "front end lease", err);
}

int mdm_store_frontend_stop(struct mdm_store *s, cells_err_t *err)
{
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	cleanup_mdb_stmt struct mdb_stmt *u = NULL;
	if (mdb_prepare(s->db, "UPDATE devices SET online=0 WHERE online<>0 AND frontend=?", &u,
			err) < 0 ||
	    mdb_prepare(s->db, "DELETE FROM frontends WHERE id=?", &st, err) < 0)
		return -1;
	mdb_bind_text(u, 1, s->frontend);
	mdb_bind_text(st, 1, s->frontend);
	if (mdb_step_done(u, "front end stop", err) < 0 ||
	    mdb_step_done(st, "front end stop", err) < 0)
		return -1;
	return 0;
}

int mdm_store_devices_reset_online(struct mdm_store *s, cells_err_t *err)
{
	return mdb_exec(s->db, "UPDATE devices SET online=0 WHERE online<>0", err);
}

static const char *const compliance_names[] = {
    "unknown",	    "compliant",  "no-policy",	   "policy-expired",
    "apply-failed", "audit-full", "non-compliant",
};

/* A JSON array stored by us in column c (an empty array when NULL or not an array). */
static json_object *json_array_column(struct mdb_stmt *st, int c)
{
	const char *t = mdb_column_text(st, c);
	json_object *a = t ? json_tokener_parse(t) : NULL;
	if (!a || !json_object_is_type(a, json_type_array)) {
		json_object_put(a);
		a = json_object_new_array();
	}
	return a;
}

int mdm_store_devices_json(struct mdm_store *s, json_object **out, cells_err_t *err)
{
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	if (mdb_prepare(s->db,
			"SELECT d.id, d.enrolled_at, d.last_seen, "
			"d.online<>0 AND (d.frontend='' OR EXISTS(SELECT 1 FROM frontends f WHERE "
			"f.id=d.frontend AND f.lease_until>=?1)), d.policy_version, "
			"d.agent_version, d.compliance, "
			"(SELECT count(*) FROM queue q WHERE q.device=d.id AND q.state IN (0,1)), "
			"(SELECT count(*) FROM queue q WHERE q.device=d.id AND q.state=2), "
			"(SELECT count(*) FROM queue q WHERE q.device=d.id AND q.state=3), "
			"r.compliance_reasons, r.audit_head, r.audit_uploaded, r.audit_flag, "
			"r.audit_flag_at, k.id IS NOT NULL, r.vps "
			"FROM devices d LEFT JOIN device_report r ON r.id=d.id "
			"LEFT JOIN device_keys k ON k.id=d.id "
			"WHERE d.active=1 ORDER BY d.enrolled_at, d.id",
			&st, err) < 0)
		return -1;
	mdb_bind_int64(st, 1, time(NULL));
	json_object *arr = json_object_new_array();
	int r;
	while ((r = mdb_step(st)) == MDB_ROW) {
		json_object *o = json_object_new_object();
		int c = mdb_column_int(st, 6);
		json_object_object_add(o, "device_id",
				       json_object_new_string(mdb_column_text(st, 0)));
		json_object_object_add(o, "enrolled_at",
				       json_object_new_int64(mdb_column_int64(st, 1)));
		json_object_object_add(o, "last_seen",
				       json_object_new_int64(mdb_column_int64(st, 2)));
		json_object_object_add(o, "online", json_object_new_boolean(mdb_column_int(st, 3)));
		json_object_object_add(o, "policy_version",
				       json_object_new_int64(mdb_column_int64(st, 4)));
		json_object_object_add(o, "agent_version",
				       json_object_new_string(mdb_column_text(st, 5)));
		json_object_object_add(
		    o, "compliance",
		    json_object_new_string(c >= 0 && c < (int)CELLS_ARRAY_SIZE(compliance_names)
					       ? compliance_names[c]
					       : "unknown"));
		json_object_object_add(o, "pending",
				       json_object_new_int64(mdb_column_int64(st, 7)));
		json_object_object_add(o, "acknowledged",
				       json_object_new_int64(mdb_column_int64(st, 8)));
		json_object_object_add(o, "failed", json_object_new_int64(mdb_column_int64(st, 9)));
		json_object_object_add(o, "compliance_reasons", json_array_column(st, 10));
		json_object_object_add(o, "audit_head_seq",
				       json_object_new_int64(mdb_column_int64(st, 11)));
		json_object_object_add(o, "audit_uploaded_seq",
				       json_object_new_int64(mdb_column_int64(st, 12)));
		const char *fl = mdb_column_text(st, 13);
		json_object_object_add(o, "audit_flag", json_object_new_string(fl ? fl : ""));
		json_object_object_add(o, "audit_flag_at",
				       json_object_new_int64(mdb_column_int64(st, 14)));
		json_object_object_add(o, "identity_bound",
				       json_object_new_boolean(mdb_column_int(st, 15)));
		json_object_object_add(o, "vps", json_array_column(st, 16));
		json_object_array_add(arr, o);
	}
	if (r != MDB_DONE) {
		json_object_put(arr);
		return mdb_err(s->db, "list devices", err);
	}
	*out = arr;
	return 0;
}

void mdm_store_free_ids(char **ids, size_t n)
{
	if (!ids)
		return;
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
}

static int collect_ids(struct mdm_store *s, struct mdb_stmt *st, char ***ids, size_t *n,
		       cells_err_t *err)
{
	char **v = NULL;
	size_t cnt = 0, cap = 0;
	int r;
	while ((r = mdb_step(st)) == MDB_ROW) {
		if (cnt == cap) {
			size_t nc = cap ? cap * 2 : 64;
			char **nv = realloc(v, nc * sizeof *nv);
			if (!nv) {
				mdm_store_free_ids(v, cnt);
				return cells_err_sys(err, ENOMEM, "ids");
			}
			v = nv;
			cap = nc;
		}
		v[cnt] = strdup(mdb_column_text(st, 0));
		if (!v[cnt]) {
			mdm_store_free_ids(v, cnt);
			return cells_err_sys(err, ENOMEM, "ids");
		}
		cnt++;
	}
	if (r != MDB_DONE) {
		mdm_store_free_ids(v, cnt);
		return mdb_err(s->db, "ids", err);
	}
	*ids = v;
	*n = cnt;
	return 0;
}

int mdm_store_device_ids(struct mdm_store *s, char ***ids, size_t *n, cells_err_t *err)
{
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	if (mdb_prepare(s->db, "SELECT id FROM devices WHERE active=1 ORDER BY id", &st, err) < 0)
		return -1;
	return collect_ids(s, st, ids, n, err);
}

void mdm_qentry_clear(struct mdm_qentry *e)
{
	free(e->blob);
	e->blob = NULL;
	e->blob_len = 0;
}

const char *mdm_qstate_name(int state)
{
	static const char *const names[] = {"queued", "delivered", "acknowledged",
					    "failed", "expired",   "cancelled"};
	return state >= 0 && state < (int)CELLS_ARRAY_SIZE(names) ? names[state] : "unknown";
}

static void row_to_entry(struct mdb_stmt *st, struct mdm_qentry *e)
{
	e->seq = mdb_column_int64(st, 0);
	snprintf(e->id, sizeof e->id, "%s", mdb_column_text(st, 1));
	snprintf(e->device, sizeof e->device, "%s", mdb_column_text(st, 2));
	e->kind = mdb_column_int(st, 3);
	e->priority = mdb_column_int(st, 4);
	e->state = mdb_column_int(st, 5);
	e->created = mdb_column_int64(st, 6);
	e->expires = mdb_column_int64(st, 7);
	snprintf(e->dedup, sizeof e->dedup, "%s", mdb_column_text(st, 8));
	snprintf(e->what, sizeof e->what, "%s", mdb_column_text(st, 9));
}
#define ENTRY_COLS "seq, id, device, kind, priority, state, created, expires, dedup, what"

/* PostgreSQL: the wake-up of device's front end for entry seq just queued - now, or in a
 * transaction just before its commit (one per device; past MDM_NOTIFY_EACH of them one
 * MDM_QUEUE_ALL with the range of the transaction's seqs). */
static int notify_queued(struct mdm_store *s, const char *device, int64_t seq, cells_err_t *err)
{
	if (!mdb_pg(s->db) || !mdb_in_transaction(s->db))
		return mdb_notify(s->db, MDM_QUEUE_CHANNEL, device, err);
	if (!s->seq_lo || seq < s->seq_lo)
		s->seq_lo = seq;
	if (seq > s->seq_hi)
		s->seq_hi = seq;
	if (s->notify_all)
		return 0;
	if (s->nnotify == MDM_NOTIFY_EACH) {
		s->notify_all = true;
		return 0;
	}
	if (!s->notify && !(s->notify = calloc(MDM_NOTIFY_EACH, sizeof *s->notify)))
		return cells_err_sys(err, ENOMEM, "notify");
	snprintf(s->notify[s->nnotify++], sizeof *s->notify, "%s", device);
	return 0;
}

/* The existing live entry with e's dedup key, into e (blob freed): 1, or 0 none. */
static int queue_dup(struct mdm_store *s, struct mdm_qentry *e, cells_err_t *err)
{
	cleanup_mdb_stmt struct mdb_stmt *q = NULL;
	if (mdb_prepare(s->db,
			"SELECT " ENTRY_COLS " FROM queue WHERE device=? AND dedup=? AND "
			"state IN (0,1) ORDER BY seq DESC LIMIT 1",
			&q, err) < 0)
		return -1;
	mdb_bind_text(q, 1, e->device);
	mdb_bind_text(q, 2, e->dedup);
	int r = mdb_step(q);
	if (r == MDB_DONE)
		return 0;
	if (r != MDB_ROW)
		return mdb_err(s->db, "queue add", err);
	mdm_qentry_clear(e);
	row_to_entry(q, e);
	return 1;
}

struct add_many {
	struct mdm_qentry *e;
	bool *added;
};

static void add_bind(struct mdb_stmt *st, size_t i, void *arg)
{
	const struct mdm_qentry *e = &((struct add_many *)arg)->e[i];
	mdb_bind_text(st, 1, e->id);
	mdb_bind_text(st, 2, e->device);
	mdb_bind_int64(st, 3, e->kind);
	mdb_bind_int64(st, 4, e->priority);
	mdb_bind_int64(st, 5, e->created);
	mdb_bind_int64(st, 6, e->expires);
	mdb_bind_text(st, 7, e->dedup);
	mdb_bind_text(st, 8, e->what);
	mdb_bind_blob(st, 9, e->blob, e->blob_len);
}

static int add_row(struct mdb_stmt *st, size_t i, void *arg)
{
	struct add_many *a = arg;
	a->e[i].seq = mdb_column_int64(st, 0);
	a->e[i].state = MDM_Q_QUEUED;
	a->added[i] = true;
	return 0;
}

int mdm_store_queue_add_many(struct mdm_store *s, struct mdm_qentry *e, size_t n, int *dup,
			     cells_err_t *err)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t rnd[8];
		char hex[17];
		if (RAND_bytes(rnd, sizeof rnd) != 1)
			return cells_err_set(err, EIO, "random");
		cells_hex(rnd, sizeof rnd, hex);
		snprintf(e[i].id, sizeof e[i].id, "q-%s", hex);
	}
	cleanup_free bool *added = calloc(n ? n : 1, sizeof *added);
	if (!added)
		return cells_err_sys(err, ENOMEM, "queue add");
	struct add_many a = {e, added};
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	/* the de-duplication in the same statement: no row back when a live entry with the
	 * key exists (then looked up, below: rare) */
	if (mdb_prepare(
		s->db,
		"INSERT INTO queue(id, device, kind, priority, state, created, expires, "
		"dedup, what, blob) SELECT ?1,?2,?3,?4,0,?5,?6,?7,?8,?9 WHERE ?7='' OR NOT "
		"EXISTS(SELECT 1 FROM queue WHERE device=?2 AND dedup=?7 AND state IN (0,1)) "
		"RETURNING seq",
		&st, err) < 0 ||
	    mdb_step_each(st, n, add_bind, add_row, &a, "queue add", err) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int r = added[i] ? 0 : queue_dup(s, &e[i], err);
		if (r < 0)
			return -1;
		if (!added[i] && r == 0) /* gone in between (another front end's expiry) */
			return cells_err_set(err, EAGAIN, "queue add: entry %s lost its duplicate",
					     e[i].id);
		if (dup)
			dup[i] = !added[i];
		if (added[i] && notify_queued(s, e[i].device, e[i].seq, err) < 0)
			return -1;
	}
	return 0;
}

int mdm_store_queue_add(struct mdm_store *s, struct mdm_qentry *e, bool replace, cells_err_t *err)
{
	int dup = 0;
	if (replace && e->dedup[0]) {
		struct mdm_qentry old = *e;
		old.blob = NULL;
		int r = queue_dup(s, &old, err);
		if (r < 0)
			return -1;
		if (r == 1 && mdm_store_queue_cancel(s, old.id, err) < 0)
			return -1;
	}
	if (mdm_store_queue_add_many(s, e, 1, &dup, err) < 0)
		return -1;
	return dup;
}

/* Step a "SELECT ENTRY_COLS, blob" statement: 1 and *e filled (blob owned), 0 no row. */
static int step_entry(struct mdm_store *s, struct mdb_stmt *st, struct mdm_qentry *e,
		      const char *what, cells_err_t *err)
{
	int r = mdb_step(st);
	if (r == MDB_DONE)
		return 0;
	if (r != MDB_ROW)
		return mdb_err(s->db, what, err);
	memset(e, 0, sizeof *e);
	row_to_entry(st, e);
	int n = mdb_column_bytes(st, 10);
	e->blob = malloc(n ? (size_t)n : 1);
	if (!e->blob)
		return cells_err_sys(err, ENOMEM, "%s", what);
	memcpy(e->blob, mdb_column_blob(st, 10), (size_t)n);
	e->blob_len = (size_t)n;
	return 1;
}

int mdm_store_queue_next(struct mdm_store *s, const char *device, int64_t now, struct mdm_qentry *e,
			 cells_err_t *err)
{
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	if (mdb_prepare(s->db,
			"SELECT " ENTRY_COLS ", blob FROM queue WHERE device=?1 AND state=0 AND "
			"(expires=0 OR expires>?2) ORDER BY priority DESC, seq LIMIT 1",
			&st, err) < 0)
		return -1;
	mdb_bind_text(st, 1, device);
	mdb_bind_int64(st, 2, now);
	return step_entry(s, st, e, "queue next", err);
}

/* up to ?3 entries to send to device ?1 at time ?2 (mdm_store_queue_next's order), taken
 * only by the front end ?4 that holds the device's newest session (devices.frontend): a
 * session another front end still has (a connection gone half-open, not noticed yet)
 * takes nothing once the device said HELLO elsewhere */
#define TAKE_SQL                                                                                   \
	"SELECT " ENTRY_COLS ", blob FROM queue WHERE device=?1 AND state=0 AND "                  \
	"(expires=0 OR expires>?2) AND EXISTS(SELECT 1 FROM devices WHERE id=?1 AND "              \
	"frontend=?4) ORDER BY priority DESC, seq LIMIT ?3"

int mdm_store_queue_take(struct mdm_store *s, const char *device, int64_t now, size_t max,
			 struct mdm_qentry *e, size_t *n, cells_err_t *err)
{
	*n = 0;
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	if (mdb_prepare(s->db, TAKE_SQL, &st, err) < 0)
		return -1;
	mdb_bind_text(st, 1, device);
	mdb_bind_int64(st, 2, now);
	mdb_bind_int64(st, 3, (int64_t)max);
	mdb_bind_text(st, 4, s->frontend);
	int r = 0;
	while (*n < max && (r = step_entry(s, st, &e[*n], "queue next", err)) == 1)
		(*n)++;
	mdb_reset(st);
	for (size_t i = 0; r >= 0 && i < *n; i++)
		r = mdm_store_queue_set_state_later(s, e[i].id, device, MDM_Q_DELIVERED, NULL, now,
						    err);
	if (r < 0) {
		for (size_t i = 0; i < *n; i++)
			mdm_qentry_clear(&e[i]);
		*n = 0;
		return -1;
	}
	return 0;
}

struct take_each {
	const char *frontend;
	char *const *dev;
	const size_t *max;
	int64_t now;
	void (*fn)(size_t i, struct mdm_qentry *e, void *arg);
	void *arg;
	struct taken {
		char id[MDM_QID_LEN + 1];
		size_t i;
	} * t; /* the entries taken, marked delivered after */
	size_t nt, cap;
};

static void take_bind(struct mdb_stmt *st, size_t i, void *arg)
{
	struct take_each *a = arg;
	mdb_bind_text(st, 1, a->dev[i]);
	mdb_bind_int64(st, 2, a->now);
	mdb_bind_int64(st, 3, (int64_t)a->max[i]);
	mdb_bind_text(st, 4, a->frontend);
}

static int take_row(struct mdb_stmt *st, size_t i, void *arg)
{
	struct take_each *a = arg;
	if (a->nt == a->cap) {
		size_t nc = a->cap ? a->cap * 2 : 256;
		struct taken *nt = realloc(a->t, nc * sizeof *nt);
		if (!nt)
			return -1;
		a->t = nt;
		a->cap = nc;
	}
	struct mdm_qentry e = {0};
	row_to_entry(st, &e);
	e.blob = (uint8_t *)mdb_column_blob(st, 10); /* borrowed for the call */
	e.blob_len = mdb_column_bytes(st, 10);
	snprintf(a->t[a->nt].id, sizeof a->t[a->nt].id, "%s", e.id);
	a->t[a->nt++].i = i;
	a->fn(i, &e, a->arg);
	return 0;
}

int mdm_store_queue_take_each(struct mdm_store *s, char *const *devices, const size_t *max,
			      size_t n, int64_t now,
			      void (*fn)(size_t i, struct mdm_qentry *e, void *arg), void *arg,
			      cells_err_t *err)
{
	struct take_each a = {s->frontend, devices, max, now, fn, arg, NULL, 0, 0};
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	int r = mdb_prepare(s->db, TAKE_SQL, &st, err);
	if (r == 0)
		r = mdb_step_each(st, n, take_bind, take_row, &a, "queue take", err);
	/* after the reads (sqlite: not while its SELECT steps over these rows) */
	for (size_t k = 0; k < a.nt && r == 0; k++)
		r = mdm_store_queue_set_state_later(s, a.t[k].id, devices[a.t[k].i],
						    MDM_Q_DELIVERED, NULL, now, err);
	free(a.t);
	return r;
}

static int set_state_stmt(struct mdm_store *s, const char *id, const char *device, int state,
			  const char *reason, int64_t now, struct mdb_stmt **st, cells_err_t *err)
{
	const char *sql =
	    state == MDM_Q_DELIVERED
		? "UPDATE queue SET state=1, delivered_at=?3, attempts=attempts+1 WHERE id=?1 "
		  "AND device=?2 AND state=0"
		: "UPDATE queue SET state=?4, done_at=?3, reason=?5 WHERE id=?1 AND device=?2 "
		  "AND state IN (0,1)";
	if (mdb_prepare(s->db, sql, st, err) < 0)
		return -1;
	mdb_bind_text(*st, 1, id);
	mdb_bind_text(*st, 2, device);
	mdb_bind_int64(*st, 3, now);
	if (state != MDM_Q_DELIVERED) {
		mdb_bind_int64(*st, 4, state);
		mdb_bind_text(*st, 5, reason ? reason : "");
	}
	return 0;
}

int mdm_store_queue_set_state(struct mdm_store *s, const char *id, const char *device, int state,
			      const char *reason, int64_t now, cells_err_t *err)
{
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	if (set_state_stmt(s, id, device, state, reason, now, &st, err) < 0)
		return -1;
	if (mdb_step(st) != MDB_DONE)
		return mdb_err(s->db, "queue state", err);
	return mdb_changes(s->db);
}

int mdm_store_queue_set_state_later(struct mdm_store *s, const char *id, const char *device,
				    int state, const char *reason, int64_t now, cells_err_t *err)
{
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	if (set_state_stmt(s, id, device, state, reason, now, &st, err) < 0)
		return -1;
	return mdb_step_later(st, "queue state", err);
}

int mdm_store_queue_expire(struct mdm_store *s, int64_t now, cells_err_t *err)
{
	cleanup_mdb_stmt struct mdb_stmt *x = NULL;
	if (mdb_prepare(s->db,
			"UPDATE queue SET state=4, done_at=?1, reason='expired before delivery' "
			"WHERE state=0 AND expires>0 AND expires<=?1",
			&x, err) < 0)
		return -1;
	mdb_bind_int64(x, 1, now);
	if (mdb_step(x) != MDB_DONE)
		return mdb_err(s->db, "queue expire", err);
	return 0;
}

int mdm_store_queue_requeue(struct mdm_store *s, const char *device, cells_err_t *err)
{
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	if (mdb_prepare(s->db, "UPDATE queue SET state=0 WHERE device=? AND state=1", &st, err) < 0)
		return -1;
	mdb_bind_text(st, 1, device);
	if (mdb_step(st) != MDB_DONE)
		return mdb_err(s->db, "requeue", err);
	/* queued again: the front end holding the device's session (maybe another one)
	 * sends them (the agent applies an id once) */
	return mdb_changes(s->db) > 0 ? mdb_notify(s->db, MDM_QUEUE_CHANNEL, device, err) : 0;
}

int mdm_store_queue_requeue_all(struct mdm_store *s, cells_err_t *err)
{
	return mdb_exec(s->db, "UPDATE queue SET state=0 WHERE state=1", err);
}

int mdm_store_queue_cancel(struct mdm_store *s, const char *id, cells_err_t *err)
{
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	if (mdb_prepare(s->db,
			"UPDATE queue SET state=5, done_at=?2, reason='cancelled by the admin' "
			"WHERE id=?1 AND state IN (0,1)",
			&st, err) < 0)
		return -1;
	mdb_bind_text(st, 1, id);
	mdb_bind_int64(st, 2, cells_now_us() / 1000000);
	if (mdb_step(st) != MDB_DONE)
		return mdb_err(s->db, "cancel", err);
	if (mdb_changes(s->db) == 1)
		return 0;
	cleanup_mdb_stmt struct mdb_stmt *q = NULL;
	if (mdb_prepare(s->db, "SELECT state FROM queue WHERE id=?", &q, err) < 0)
		return -1;
	mdb_bind_text(q, 1, id);
	if (mdb_step(q) == MDB_ROW)
		return cells_err_set(err, EALREADY, "command %s is already %s", id,
				     mdm_qstate_name(mdb_column_int(q, 0)));
	return cells_err_set(err, ENOENT, "no command %s", id);
}

int mdm_store_queue_json(struct mdm_store *s, const char *device, json_object **out,
			 cells_err_t *err)
{
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	if (mdb_prepare(s->db,
			"SELECT " ENTRY_COLS ", delivered_at, done_at, attempts, reason FROM queue "
			"WHERE ?1 IS NULL OR device=?1 ORDER BY seq",
			&st, err) < 0)
		return -1;
	mdb_bind_text(st, 1, device);
	json_object *arr = json_object_new_array();
	int r;
	while ((r = mdb_step(st)) == MDB_ROW) {
		struct mdm_qentry e = {0};
		row_to_entry(st, &e);
		json_object *o = json_object_new_object();
		json_object_object_add(o, "id", json_object_new_string(e.id));
		json_object_object_add(o, "device_id", json_object_new_string(e.device));
		json_object_object_add(o, "what", json_object_new_string(e.what));
		json_object_object_add(o, "priority", json_object_new_int(e.priority));
		json_object_object_add(o, "state",
				       json_object_new_string(mdm_qstate_name(e.state)));
		json_object_object_add(o, "created", json_object_new_int64(e.created));
		json_object_object_add(o, "expires", json_object_new_int64(e.expires));
		json_object_object_add(o, "delivered_at",
				       json_object_new_int64(mdb_column_int64(st, 10)));
		json_object_object_add(o, "done_at",
				       json_object_new_int64(mdb_column_int64(st, 11)));
		json_object_object_add(o, "attempts", json_object_new_int(mdb_column_int(st, 12)));
		json_object_object_add(o, "reason",
				       json_object_new_string(mdb_column_text(st, 13)));
		json_object_array_add(arr, o);
	}
	if (r != MDB_DONE) {
		json_object_put(arr);
		return mdb_err(s->db, "list queue", err);
	}
	*out = arr;
	return 0;
}

int mdm_store_queue_changed(struct mdm_store *s, int64_t *since, char ***ids, size_t *n,
			    cells_err_t *err)
{
	cleanup_mdb_stmt struct mdb_stmt *m = NULL;
	if (mdb_prepare(s->db, "SELECT coalesce(max(seq),0) FROM queue", &m, err) < 0)
		return -1;
	if (mdb_step(m) != MDB_ROW)
		return mdb_err(s->db, "queue max", err);
	int64_t top = mdb_column_int64(m, 0);
	*ids = NULL;
	*n = 0;
	if (top <= *since)
		return 0;
	if (mdm_store_queue_in(s, *since + 1, top, ids, n, err) < 0)
		return -1;
	*since = top;
	return 0;
}

int mdm_store_queue_in(struct mdm_store *s, int64_t lo, int64_t hi, char ***ids, size_t *n,
		       cells_err_t *err)
{
	*ids = NULL;
	*n = 0;
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	if (mdb_prepare(s->db,
			"SELECT DISTINCT device FROM queue WHERE seq>=? AND seq<=? AND state=0",
			&st, err) < 0)
		return -1;
	mdb_bind_int64(st, 1, lo);
	mdb_bind_int64(st, 2, hi);
	return collect_ids(s, st, ids, n, err);
}

int mdm_queue_all_parse(const char *payload, int64_t *lo, int64_t *hi)
{
	long long a, b;
	int end = 0;
	if (sscanf(payload, MDM_QUEUE_ALL " %lld %lld%n", &a, &b, &end) != 2 || payload[end] ||
	    a < 1 || b < a)
		return -1;
	*lo = a;
	*hi = b;
	return 0;
}

int mdm_store_queue_get(struct mdm_store *s, const char *id, const char *device,
			struct mdm_qentry *e, cells_err_t *err)
{
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	if (mdb_prepare(s->db, "SELECT " ENTRY_COLS ", blob FROM queue WHERE id=? AND device=?",
			&st, err) < 0)
		return -1;
	mdb_bind_text(st, 1, id);
	mdb_bind_text(st, 2, device);
	return step_entry(s, st, e, "queue get", err);
}

int mdm_store_receipt_put(struct mdm_store *s, const struct mdm_receipt *r, cells_err_t *err)
{
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	/* a verified receipt replaces only a refused one; a refused one replaces nothing */
	const char *sql =
	    r->verified
		? "INSERT INTO receipts VALUES(?1,?2,?3,?4,?5,?6,?7,?8,1,?9,?10,?11,?12) "
		  "ON CONFLICT(device, command_id) DO UPDATE SET vp=?3, queue_id=?4, wiped_at=?5, "
		  "key_status=?6, wrapped_key_destroyed=?7, recreated=?8, verified=1, reason=?9, "
		  "signed=?10, device_key=?11, received_at=?12 WHERE receipts.verified=0"
		: "INSERT INTO receipts VALUES(?1,?2,?3,?4,?5,?6,?7,?8,0,?9,?10,?11,?12) "
		  "ON CONFLICT(device, command_id) DO NOTHING";
	if (mdb_prepare(s->db, sql, &st, err) < 0)
		return -1;
	mdb_bind_text(st, 1, r->device);
	mdb_bind_text(st, 2, r->command_id);
	mdb_bind_text(st, 3, r->vp ? r->vp : "");
	mdb_bind_text(st, 4, r->queue_id ? r->queue_id : "");
	mdb_bind_int64(st, 5, r->wiped_at);
	mdb_bind_int64(st, 6, r->key_status);
	mdb_bind_int64(st, 7, r->wrapped_key_destroyed);
	mdb_bind_int64(st, 8, r->recreated);
	mdb_bind_text(st, 9, r->reason ? r->reason : "");
	mdb_bind_blob(st, 10, r->blob, r->blob_len);
	mdb_bind_blob(st, 11, r->device_key, 32);
	mdb_bind_int64(st, 12, r->received_at);
	if (mdb_step(st) != MDB_DONE)
		return mdb_err(s->db, "store receipt", err);
	return mdb_changes(s->db) > 0;
}

int mdm_store_receipts_json(struct mdm_store *s, const char *device, json_object **out,
			    cells_err_t *err)
{
	static const char *const ks[] = {"unspecified", "absent", "present", "not-encrypted"};
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	if (mdb_prepare(s->db,
			"SELECT device, vp, command_id, queue_id, wiped_at, key_status, "
			"wrapped_key_destroyed, recreated, verified, reason, received_at, signed "
			"FROM receipts WHERE ?1 IS NULL OR device=?1 ORDER BY received_at, device, "
			"command_id",
			&st, err) < 0)
		return -1;
	mdb_bind_text(st, 1, device);
	json_object *arr = json_object_new_array();
	int r;
	while ((r = mdb_step(st)) == MDB_ROW) {
		json_object *o = json_object_new_object();
		int k = mdb_column_int(st, 5);
		int n = mdb_column_bytes(st, 11);
		cleanup_free char *hex = malloc((size_t)n * 2 + 1);
		if (!hex) {
			json_object_put(o);
			json_object_put(arr);
			return cells_err_sys(err, ENOMEM, "receipts");
		}
		cells_hex(mdb_column_blob(st, 11), (size_t)n, hex);
#define S(i) json_object_new_string(mdb_column_text(st, i))
		json_object_object_add(o, "device_id", S(0));
		json_object_object_add(o, "vp", S(1));
		json_object_object_add(o, "command_id", S(2));
		json_object_object_add(o, "queue_id", S(3));
		json_object_object_add(o, "wiped_at",
				       json_object_new_int64(mdb_column_int64(st, 4)));
		json_object_object_add(
		    o, "key_status",
		    json_object_new_string(k >= 0 && k < (int)CELLS_ARRAY_SIZE(ks) ? ks[k]
										   : "unknown"));
		json_object_object_add(o, "wrapped_key_destroyed",
				       json_object_new_boolean(mdb_column_int(st, 6)));
		json_object_object_add(o, "recreated",
				       json_object_new_boolean(mdb_column_int(st, 7)));
		json_object_object_add(o, "verified",
				       json_object_new_boolean(mdb_column_int(st, 8)));
		json_object_object_add(o, "reason", S(9));
		json_object_object_add(o, "received_at",
				       json_object_new_int64(mdb_column_int64(st, 10)));
		json_object_object_add(o, "receipt", json_object_new_string(hex));
#undef S
		json_object_array_add(arr, o);
	}
	if (r != MDB_DONE) {
		json_object_put(arr);
		return mdb_err(s->db, "list receipts", err);
	}
	*out = arr;
	return 0;
}

int mdm_store_queue_receipt_verified(struct mdm_store *s, const char *id, const char *device,
				     int64_t now, cells_err_t *err)
{
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	if (mdb_prepare(
		s->db,
		"UPDATE queue SET state=2, done_at=?3, reason='' WHERE id=?1 AND device=?2 AND "
		"(state IN (0,1) OR (state=3 AND reason LIKE 'receipt refused:%'))",
		&st, err) < 0)
		return -1;
	mdb_bind_text(st, 1, id);
	mdb_bind_text(st, 2, device);
	mdb_bind_int64(st, 3, now);
	if (mdb_step(st) != MDB_DONE)
		return mdb_err(s->db, "queue state", err);
	return mdb_changes(s->db);
}
