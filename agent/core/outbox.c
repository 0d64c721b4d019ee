/* outbox.c - the durable outbox of messages for the MDM (see outbox.h). */
#include "outbox.h"
#include "cleanup.h"
#include "cleanup_sqlite.h"
#include "sqldb.h"
#include "util.h"

#include <stdio.h>
#include <time.h>

#include <openssl/rand.h>

static struct {
	outbox_send_fn fn;
	void *ctx;
} sender;

void outbox_msg_id(char out[40], const char *prefix)
{
	uint8_t b[12];
	char hex[25];
	RAND_bytes(b, sizeof b);
	cells_hex(b, sizeof b, hex);
	snprintf(out, 40, "%s-%s", prefix, hex);
}

void outbox_set_sender(outbox_send_fn fn, void *ctx)
{
	sender.fn = fn;
	sender.ctx = ctx;
}

int outbox_store(struct cellsd *d, const Cells__V1__Envelope *env, char id_out[40], uint8_t **bytes,
		 size_t *len, cells_err_t *err)
{
	Cells__V1__Envelope e = *env;
	char mid[40];
	if (!e.message_id || !e.message_id[0]) {
		outbox_msg_id(mid, "o");
		e.message_id = mid;
	}
	if (!e.correlation_id)
		e.correlation_id = "";
	if (cells_envelope_encode(&e, bytes, len, err) < 0)
		return -1;
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db,
			  "INSERT OR IGNORE INTO mgmt_outbox(message_id, envelope, created) "
			  "VALUES(?,?,?)",
			  &st, err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, e.message_id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_blob(st, 2, *bytes, (int)*len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, time(NULL));
	if (sqldb_step_done(d->db, st, "outbox", err) < 0)
		return -1;
	if (id_out)
		snprintf(id_out, 40, "%s", e.message_id);
	return 0;
}

int outbox_put(struct cellsd *d, const Cells__V1__Envelope *env, cells_err_t *err)
{
	cleanup_free uint8_t *b = NULL;
	size_t n;
	if (outbox_store(d, env, NULL, &b, &n, err) < 0)
		return -1;
	if (sender.fn)
		sender.fn(sender.ctx, b, n);
	return 0;
}

int outbox_drop(struct cellsd *d, const char *message_id, cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db, "DELETE FROM mgmt_outbox WHERE message_id=?", &st, err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, message_id, -1, SQLITE_TRANSIENT);
	return sqldb_step_done(d->db, st, "outbox", err);
}

Cells__V1__Envelope *outbox_get(struct cellsd *d, const char *message_id)
{
	cleanup_stmt sqlite3_stmt *q = NULL;
	Cells__V1__Envelope *env = NULL;
	if (sqldb_prepare(d->db, "SELECT envelope FROM mgmt_outbox WHERE message_id=?", &q, NULL) <
	    0)
		return NULL;
	sqlite3_bind_text(q, 1, message_id, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(q) != SQLITE_ROW ||
	    cells_envelope_decode(sqlite3_column_blob(q, 0), (size_t)sqlite3_column_bytes(q, 0),
				  &env, NULL) < 0)
		return NULL;
	return env;
}

int outbox_has(struct cellsd *d, const char *message_id)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db, "SELECT 1 FROM mgmt_outbox WHERE message_id=?", &st, NULL) < 0)
		return -1;
	sqlite3_bind_text(st, 1, message_id, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int64_t outbox_count(struct cellsd *d)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db, "SELECT count(*) FROM mgmt_outbox", &st, NULL) < 0 ||
	    sqlite3_step(st) != SQLITE_ROW)
		return 0;
	return sqlite3_column_int64(st, 0);
}

int outbox_each(struct cellsd *d, int64_t after, int max, outbox_each_fn fn, void *ctx)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db,
			  "SELECT seq, envelope FROM mgmt_outbox WHERE seq>? ORDER BY seq LIMIT ?",
			  &st, NULL) < 0)
		return -1;
	sqlite3_bind_int64(st, 1, after);
	sqlite3_bind_int(st, 2, max);
	int rows = 0, rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		rows++;
		fn(ctx, sqlite3_column_int64(st, 0), sqlite3_column_blob(st, 1),
		   (size_t)sqlite3_column_bytes(st, 1));
	}
	return rc == SQLITE_DONE ? rows : -1;
}
