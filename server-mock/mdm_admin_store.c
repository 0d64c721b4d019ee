/* mdm_admin_store.c - the sqlite backend of the admin tables (mdm_admin.h): admins and
 * the hash-chained admin audit log in STATE_DIR/admin.db (a file of its own: serve's
 * connection to mdm.db batches its writes in one transaction per loop turn, and the
 * admin API runs inside that turn; own migrations, module "mdm_admin"), and the searches
 * of uploaded audit records in audit.db (read-only). */
#include "cleanup.h"
#include "cleanup_sqlite.h"
#include "cleanup_ssl.h"
#include "mdm_admin.h"
#include "sqldb.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <unistd.h>

struct mdm_admin_store {
	sqlite3 *db;
	char head[PATH_MAX]; /* STATE_DIR/admin-audit.head: "SEQ HASH\n" of the newest entry */
};

static const char *const admin_schema[] = {
    "CREATE TABLE admins(serial TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL,"
    " created INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX admins_name ON admins(name, revoked);"
    "CREATE TABLE admin_audit(seq INTEGER PRIMARY KEY, at INTEGER NOT NULL,"
    " admin TEXT NOT NULL, role TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL,"
    " detail TEXT NOT NULL, outcome TEXT NOT NULL, hash TEXT NOT NULL);",
};

static const char *const role_names[] = {"admin", "helpdesk", "auditor"};

enum mdm_role mdm_role_parse(const char *s)
{
	for (size_t i = 0; s && i < CELLS_ARRAY_SIZE(role_names); i++)
		if (!strcmp(s, role_names[i]))
			return (enum mdm_role)(1u << i);
	return MDM_ROLE_NONE;
}

const char *mdm_role_name(enum mdm_role r)
{
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(role_names); i++)
		if (r == (enum mdm_role)(1u << i))
			return role_names[i];
	return NULL;
}

int mdm_admin_store_open(const char *state_dir, struct mdm_admin_store **out, cells_err_t *err)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/admin.db", state_dir);
	struct mdm_admin_store *s = calloc(1, sizeof *s);
	if (!s)
		return cells_err_sys(err, ENOMEM, "admin store");
	snprintf(s->head, sizeof s->head, "%s/admin-audit.head", state_dir);
	if (sqldb_open(path, SQLDB_SHARED, 10000, &s->db, err) < 0 ||
	    sqldb_migrate(s->db, "mdm_admin", admin_schema, CELLS_ARRAY_SIZE(admin_schema), err) <
		0) {
		cells_err_prefix(err, "%s", path);
		mdm_admin_store_close(s);
		return -1;
	}
	*out = s;
	return 0;
}

void mdm_admin_store_close(struct mdm_admin_store *s)
{
	if (!s)
		return;
	sqlite3_close_v2(s->db);
	free(s);
}

int mdm_admin_store_add(struct mdm_admin_store *s, const char *name, enum mdm_role role,
			const char *serial, int64_t now, cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (!mdm_role_name(role))
		return cells_err_set(err, EINVAL, "no such role");
	if (sqldb_prepare(s->db, "INSERT INTO admins(serial, name, role, created) VALUES(?,?,?,?)",
			  &st, err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, mdm_role_name(role), -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, now);
	return sqldb_step_done(s->db, st, "add admin", err);
}

int mdm_admin_store_active(struct mdm_admin_store *s, const char *name, cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(s->db, "SELECT 1 FROM admins WHERE name=? AND revoked=0", &st, err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	int r = sqlite3_step(st);
	if (r == SQLITE_ROW)
		return 1;
	if (r != SQLITE_DONE)
		return sqldb_err(s->db, "admin lookup", err);
	return 0;
}

int mdm_admin_store_revoke(struct mdm_admin_store *s, const char *name, int64_t now,
			   cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(s->db, "UPDATE admins SET revoked=? WHERE name=? AND revoked=0", &st,
			  err) < 0)
		return -1;
	sqlite3_bind_int64(st, 1, now > 0 ? now : 1);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	if (sqldb_step_done(s->db, st, "revoke admin", err) < 0)
		return -1;
	return sqlite3_changes(s->db);
}

int mdm_admin_store_lookup(struct mdm_admin_store *s, const char *serial, char name[64],
			   enum mdm_role *role, cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(s->db, "SELECT name, role FROM admins WHERE serial=? AND revoked=0", &st,
			  err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
	int r = sqlite3_step(st);
	if (r == SQLITE_DONE)
		return 0;
	if (r != SQLITE_ROW)
		return sqldb_err(s->db, "admin lookup", err);
	const char *n = (const char *)sqlite3_column_text(st, 0);
	snprintf(name, 64, "%s", n ? n : "");
	*role = mdm_role_parse((const char *)sqlite3_column_text(st, 1));
	return *role == MDM_ROLE_NONE ? 0 : 1;
}

int mdm_admin_store_list(struct mdm_admin_store *s, json_object **out, cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(
		s->db,
		"SELECT name, role, serial, created, revoked FROM admins ORDER BY created, "
		"name",
		&st, err) < 0)
		return -1;
	json_object *arr = json_object_new_array();
	int r;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		json_object *o = json_object_new_object();
		json_object_object_add(
		    o, "name", json_object_new_string((const char *)sqlite3_column_text(st, 0)));
		json_object_object_add(
		    o, "role", json_object_new_string((const char *)sqlite3_column_text(st, 1)));
		json_object_object_add(
		    o, "serial", json_object_new_string((const char *)sqlite3_column_text(st, 2)));
		json_object_object_add(o, "created",
				       json_object_new_int64(sqlite3_column_int64(st, 3)));
		json_object_object_add(o, "revoked",
				       json_object_new_int64(sqlite3_column_int64(st, 4)));
		json_object_array_add(arr, o);
	}
	if (r != SQLITE_DONE) {
		json_object_put(arr);
		return sqldb_err(s->db, "list admins", err);
	}
	*out = arr;
	return 0;
}

static void put_u(EVP_MD_CTX *c, uint64_t v, int bytes)
{
	uint8_t b[8];
	for (int i = 0; i < bytes; i++)
		b[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
	EVP_DigestUpdate(c, b, (size_t)bytes);
}

static void put_s(EVP_MD_CTX *c, const char *s)
{
	size_t n = s ? strlen(s) : 0;
	put_u(c, n, 4);
	if (n)
		EVP_DigestUpdate(c, s, n);
}

void mdm_admin_audit_hash(const uint8_t prev[32], uint64_t seq, int64_t at,
			  const struct mdm_admin_event *ev, uint8_t out[32])
{
	static const char domain[] = "cells.v1.admin-audit";
	cleanup_md_ctx EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned int len = 32;
	/* a security invariant: never chain an entry whose hash could not be computed */
	if (!c || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1)
		abort();
	EVP_DigestUpdate(c, domain, sizeof domain); /* with its NUL */
	EVP_DigestUpdate(c, prev, 32);
	put_u(c, seq, 8);
	put_u(c, (uint64_t)at, 8);
	put_s(c, ev->admin);
	put_s(c, ev->role);
	put_s(c, ev->action);
	put_s(c, ev->target);
	put_s(c, ev->detail);
	put_s(c, ev->outcome);
	if (EVP_DigestFinal_ex(c, out, &len) != 1)
		abort();
}

int mdm_admin_audit_append(struct mdm_admin_store *s, const struct mdm_admin_event *ev, int64_t now,
			   cells_err_t *err)
{
	/* one writer at a time (BEGIN IMMEDIATE): the entry chains to the real last one even
	 * with several front ends or the admin tools writing too */
	if (sqldb_begin(s->db, err) < 0)
		return cells_err_prefix(err, "admin audit");
	uint8_t prev[32] = {0}, h[32];
	uint64_t seq = 1;
	{
		cleanup_stmt sqlite3_stmt *q = NULL;
		if (sqldb_prepare(s->db,
				  "SELECT seq, hash FROM admin_audit ORDER BY seq DESC LIMIT 1", &q,
				  err) < 0)
			goto fail;
		int r = sqlite3_step(q);
		if (r == SQLITE_ROW) {
			const char *ph = (const char *)sqlite3_column_text(q, 1);
			seq = (uint64_t)sqlite3_column_int64(q, 0) + 1;
			if (!ph || cells_unhex(ph, prev, sizeof prev) < 0) {
				cells_err_set(err, EBADMSG,
					      "admin audit: the last entry's hash is "
					      "malformed");
				goto fail;
			}
		} else if (r != SQLITE_DONE) {
			sqldb_err(s->db, "admin audit", err);
			goto fail;
		}
	}
	mdm_admin_audit_hash(prev, seq, now, ev, h);
	char hex[65];
	cells_hex(h, sizeof h, hex);
	{
		cleanup_stmt sqlite3_stmt *st = NULL;
		if (sqldb_prepare(s->db,
				  "INSERT INTO admin_audit(seq, at, admin, role, action, target, "
				  "detail, outcome, hash) VALUES(?,?,?,?,?,?,?,?,?)",
				  &st, err) < 0)
			goto fail;
		sqlite3_bind_int64(st, 1, (int64_t)seq);
		sqlite3_bind_int64(st, 2, now);
		const char *f[] = {ev->admin,  ev->role,   ev->action,
				   ev->target, ev->detail, ev->outcome};
		for (int i = 0; i < 6; i++)
			sqlite3_bind_text(st, 3 + i, f[i] ? f[i] : "", -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 9, hex, -1, SQLITE_STATIC);
		if (sqldb_step_done(s->db, st, "admin audit", err) < 0)
			goto fail;
	}
	if (sqldb_commit(s->db, err) < 0)
		return cells_err_prefix(err, "admin audit");
	/* the head outside the database: an entry removed from the end (or the database
	 * rolled back to a copy) no longer reaches it. Written after the commit: two writers
	 * racing may leave an older head, which verifies (it only checks less). */
	char line[100];
	int n = snprintf(line, sizeof line, "%llu %s\n", (unsigned long long)seq, hex);
	if (cells_write_file_atomic(s->head, line, (size_t)n, 0644, err) < 0)
		return cells_err_prefix(err, "admin audit head");
	return 0;
fail:
	sqldb_rollback(s->db);
	return -1;
}

static const char *col(sqlite3_stmt *st, int i)
{
	const char *t = (const char *)sqlite3_column_text(st, i);
	return t ? t : "";
}

int mdm_admin_audit_json(struct mdm_admin_store *s, long limit, json_object **out, cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(s->db,
			  "SELECT * FROM (SELECT seq, at, admin, role, action, target, detail, "
			  "outcome, hash FROM admin_audit ORDER BY seq DESC LIMIT ?) ORDER BY seq",
			  &st, err) < 0)
		return -1;
	sqlite3_bind_int64(st, 1, limit > 0 ? limit : -1);
	json_object *arr = json_object_new_array();
	int r;
	static const char *const names[] = {"admin",  "role",	 "action", "target",
					    "detail", "outcome", "hash"};
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "seq",
				       json_object_new_int64(sqlite3_column_int64(st, 0)));
		json_object_object_add(o, "at", json_object_new_int64(sqlite3_column_int64(st, 1)));
		for (int i = 0; i < 7; i++)
			json_object_object_add(o, names[i], json_object_new_string(col(st, 2 + i)));
		json_object_array_add(arr, o);
	}
	if (r != SQLITE_DONE) {
		json_object_put(arr);
		return sqldb_err(s->db, "admin audit", err);
	}
	*out = arr;
	return 0;
}

int mdm_admin_audit_verify(struct mdm_admin_store *s, bool *ok, json_object **report,
			   cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(s->db,
			  "SELECT seq, at, admin, role, action, target, detail, outcome, hash "
			  "FROM admin_audit ORDER BY seq",
			  &st, err) < 0)
		return -1;
	uint8_t prev[32] = {0}, h[32];
	uint64_t expect = 1, n = 0;
	char problem[256] = "", head[65] = "";
	int64_t bad = 0;
	int r;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		uint64_t seq = (uint64_t)sqlite3_column_int64(st, 0);
		n++;
		if (problem[0])
			continue;
		struct mdm_admin_event ev = {col(st, 2), col(st, 3), col(st, 4),
					     col(st, 5), col(st, 6), col(st, 7)};
		uint8_t stored[32];
		if (seq != expect) {
			snprintf(problem, sizeof problem, "entry %llu is missing",
				 (unsigned long long)expect);
			bad = (int64_t)expect;
			continue;
		}
		mdm_admin_audit_hash(prev, seq, sqlite3_column_int64(st, 1), &ev, h);
		if (cells_unhex(col(st, 8), stored, sizeof stored) < 0 ||
		    CRYPTO_memcmp(stored, h, sizeof h)) {
			snprintf(problem, sizeof problem,
				 "entry %llu does not match its hash (edited, or an earlier one "
				 "was)",
				 (unsigned long long)seq);
			bad = (int64_t)seq;
			continue;
		}
		memcpy(prev, h, sizeof h);
		cells_hex(h, sizeof h, head);
		expect++;
	}
	if (r != SQLITE_DONE)
		return sqldb_err(s->db, "admin audit", err);
	cleanup_free uint8_t *hf = NULL;
	size_t hn = 0;
	unsigned long long hseq = 0;
	char hhex[65] = "";
	if (!problem[0] && cells_read_file(s->head, 200, &hf, &hn, NULL) == 0) {
		if (sscanf((const char *)hf, "%llu %64s", &hseq, hhex) != 2) {
			snprintf(problem, sizeof problem, "admin-audit.head is malformed");
		} else if (hseq > expect - 1) {
			snprintf(problem, sizeof problem,
				 "entries %llu..%llu are missing (the head names entry %llu)",
				 (unsigned long long)expect, hseq, hseq);
			bad = (int64_t)expect;
		} else if (hseq) {
			/* the chain verified up to expect - 1: the stored hash is the real one */
			cleanup_stmt sqlite3_stmt *q = NULL;
			if (sqldb_prepare(s->db, "SELECT hash FROM admin_audit WHERE seq=?", &q,
					  err) < 0)
				return -1;
			sqlite3_bind_int64(q, 1, (int64_t)hseq);
			int qr = sqlite3_step(q);
			if (qr != SQLITE_ROW && qr != SQLITE_DONE)
				return sqldb_err(s->db, "admin audit head", err);
			if (qr != SQLITE_ROW || strcmp(col(q, 0), hhex)) {
				snprintf(problem, sizeof problem,
					 "entry %llu is not the head recorded in admin-audit.head",
					 hseq);
				bad = (int64_t)hseq;
			}
		}
	}
	*ok = !problem[0];
	json_object *o = json_object_new_object();
	json_object_object_add(o, "ok", json_object_new_boolean(*ok));
	json_object_object_add(o, "entries", json_object_new_int64((int64_t)n));
	json_object_object_add(o, "head", json_object_new_string(head));
	json_object_object_add(o, "problem", json_object_new_string(problem));
	json_object_object_add(o, "bad_seq", json_object_new_int64(bad));
	*report = o;
	return 0;
}

int mdm_admin_audit_records(const char *state_dir, const char *device,
			    const struct mdm_audit_filter *f, json_object **out, cells_err_t *err)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/audit.db", state_dir);
	cleanup_sqlite sqlite3 *db = NULL;
	if (access(path, F_OK) != 0) {
		*out = json_object_new_array();
		return 0;
	}
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		return sqldb_err(db, path, err);
	sqlite3_busy_timeout(db, 5000);
	cleanup_stmt sqlite3_stmt *q = NULL;
	const char *sql =
	    "SELECT * FROM (SELECT seq,time_us,vp,actor,event,outcome,details,details_withheld "
	    "FROM mdm_audit_record WHERE device_id=:dev AND (:since=0 OR time_us>=:since) AND "
	    "(:until=0 OR time_us<=:until) AND (:vp IS NULL OR vp=:vp) AND (:type IS NULL OR "
	    "event=:type OR substr(event,1,length(:type)+1)=:type||'.') AND (:outcome IS NULL OR "
	    "outcome=:outcome) AND (:grep IS NULL OR instr(details,:grep) OR instr(event,:grep) OR "
	    "instr(actor,:grep)) ORDER BY seq DESC LIMIT :limit) ORDER BY seq";
	if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) {
		/* no table yet: nothing uploaded */
		if (strstr(sqlite3_errmsg(db), "no such table")) {
			*out = json_object_new_array();
			return 0;
		}
		return sqldb_err(db, "audit search", err);
	}
#define BIDX(n) sqlite3_bind_parameter_index(q, n)
	sqlite3_bind_text(q, BIDX(":dev"), device, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, BIDX(":since"), f->since_us);
	sqlite3_bind_int64(q, BIDX(":until"), f->until_us);
	sqlite3_bind_text(q, BIDX(":vp"), f->vp, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, BIDX(":type"), f->type, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, BIDX(":outcome"), f->outcome, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, BIDX(":grep"), f->grep, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, BIDX(":limit"), f->limit > 0 ? f->limit : 1000);
#undef BIDX
	json_object *arr = json_object_new_array();
	int r;
	static const char *const names[] = {"vp", "actor", "event", "outcome", "details"};
	while ((r = sqlite3_step(q)) == SQLITE_ROW) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "seq", json_object_new_int64(sqlite3_column_int64(q, 0)));
		json_object_object_add(o, "time_us",
				       json_object_new_int64(sqlite3_column_int64(q, 1)));
		for (int c = 0; c < 5; c++)
			json_object_object_add(
			    o, names[c],
			    json_object_new_string(
				c == 4 && sqlite3_column_int(q, 7) ? "(withheld)" : col(q, 2 + c)));
		json_object_array_add(arr, o);
	}
	if (r != SQLITE_DONE) {
		json_object_put(arr);
		return sqldb_err(db, "audit search", err);
	}
	*out = arr;
	return 0;
}
