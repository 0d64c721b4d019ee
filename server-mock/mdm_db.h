/* mdm_db.h - the SQL layer under the MDM's storage interface (mdm_store.h, mdm_audit.h):
 * one API, two backends, chosen by where the database is:
 *
 *   a path         sqlite (common/sqldb.h): the embedded default, STATE_DIR/mdm.db
 *   postgresql://  PostgreSQL through libpq (also postgres:// and "host=... dbname=...")
 *
 * The queries are written once, in the SQL both engines accept (ON CONFLICT ... DO
 * UPDATE/NOTHING, RETURNING, CASE); parameters are sqlite's ?N / ?. What differs is
 * isolated here (mdm_db.c): PostgreSQL gets $N parameters, BIGINT for INTEGER, BYTEA
 * for BLOB, BIGSERIAL for an INTEGER PRIMARY KEY, BEGIN for BEGIN IMMEDIATE, migrations
 * serialised by an advisory lock, and NOTIFY/LISTEN as the wake-up between processes.
 * The API mirrors sqlite's (prepare, bind, step, column) so a query reads the same on
 * both. A statement's text, blob and column values stay valid until its next step. */
#ifndef CELLS_MDM_DB_H
#define CELLS_MDM_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct mdb;
struct mdb_stmt;

enum { MDB_DONE = 0, MDB_ROW = 1, MDB_ERROR = -1 };

/* true when where names a PostgreSQL database (a URL or a libpq key=value string). */
bool mdb_is_pg(const char *where);
/* Open where: a PostgreSQL conninfo, or a sqlite file opened with sqlite_pragmas
 * (SQLDB_SHARED...). */
int mdb_open(const char *where, const char *sqlite_pragmas, struct mdb **out, cells_err_t *err);
void mdb_close(struct mdb *db);
bool mdb_pg(const struct mdb *db);

/* Run SQL without results (several statements; DDL in sqlite's words is translated). */
int mdb_exec(struct mdb *db, const char *sql, cells_err_t *err);
int mdb_begin(struct mdb *db, cells_err_t *err); /* a write transaction */
int mdb_commit(struct mdb *db, cells_err_t *err);
void mdb_rollback(struct mdb *db);
/* Migrate module's tables: step i (0-based) runs once, in a transaction with the
 * recorded version bump (table schema_version, shared with sqldb_migrate). */
int mdb_migrate(struct mdb *db, const char *module, const char *const *steps, size_t nsteps,
		cells_err_t *err);

int mdb_prepare(struct mdb *db, const char *sql, struct mdb_stmt **st, cells_err_t *err);
void mdb_finalize(struct mdb_stmt *st);
/* Forget the last result (the bindings stay, as in sqlite). */
void mdb_reset(struct mdb_stmt *st);
/* Bind (1-based; values are copied). NULL text binds NULL. */
void mdb_bind_text(struct mdb_stmt *st, int i, const char *v);
void mdb_bind_int64(struct mdb_stmt *st, int i, int64_t v);
void mdb_bind_blob(struct mdb_stmt *st, int i, const void *v, size_t n);
void mdb_bind_null(struct mdb_stmt *st, int i);
/* MDB_ROW, MDB_DONE or MDB_ERROR (then mdb_err tells). */
int mdb_step(struct mdb_stmt *st);
/* Step a statement that returns no row: 0, or -1 with err ("what: ..."). */
int mdb_step_done(struct mdb_stmt *st, const char *what, cells_err_t *err);
/* Step a statement that returns no row and whose outcome is not needed now: inside a
 * transaction on PostgreSQL it is sent in pipeline mode, behind the transaction's other
 * statements, and its result is read with the next statement that needs its own (in the
 * same round trip) or at the commit; a failure then fails that statement or the commit
 * (the transaction is aborted: nothing of it is kept). Elsewhere (sqlite, or no
 * transaction) it is mdm_step_done. mdb_changes is not known after it. */
int mdb_step_later(struct mdb_stmt *st, const char *what, cells_err_t *err);
/* Run st n times: bind(st, i, arg) sets the bindings of run i, row(st, i, arg) is called
 * for each row of run i (NULL: rows ignored; it returns 0, or -1 for out of memory).
 * PostgreSQL: the runs go in pipeline mode, a few hundred per round trip; sqlite: one
 * after the other. 0, or -1 with err (the first failure; the runs after it are void). */
int mdb_step_each(struct mdb_stmt *st, size_t n, void (*bind)(struct mdb_stmt *, size_t, void *),
		  int (*row)(struct mdb_stmt *, size_t, void *), void *arg, const char *what,
		  cells_err_t *err);
int64_t mdb_column_int64(struct mdb_stmt *st, int c);
int mdb_column_int(struct mdb_stmt *st, int c);
/* NULL for SQL NULL. */
const char *mdb_column_text(struct mdb_stmt *st, int c);
const void *mdb_column_blob(struct mdb_stmt *st, int c);
size_t mdb_column_bytes(struct mdb_stmt *st, int c);
/* Rows changed by the connection's last INSERT/UPDATE/DELETE. */
int64_t mdb_changes(struct mdb *db);
/* The last error as err ("what: message"; ENOSPC, EBUSY, ECONNRESET or EIO). */
int mdb_err(struct mdb *db, const char *what, cells_err_t *err);

/* Cross-process wake-up (PostgreSQL only; no-ops on sqlite, where serve watches the
 * WAL): notify channel with payload (delivered at commit), listen to it, the
 * connection's socket to poll, and the payloads received so far (after
 * PQconsumeInput): fn is called for each, 0 or -1 (connection lost). */
int mdb_notify(struct mdb *db, const char *channel, const char *payload, cells_err_t *err);
int mdb_listen(struct mdb *db, const char *channel, cells_err_t *err);
/* true inside a transaction (mdb_begin ... mdb_commit/mdb_rollback) */
bool mdb_in_transaction(struct mdb *db);
int mdb_socket(struct mdb *db);
int mdb_notifications(struct mdb *db, void (*fn)(const char *payload, void *arg), void *arg,
		      cells_err_t *err);

static inline void mdb_finalizep(struct mdb_stmt **s)
{
	if (*s)
		mdb_finalize(*s);
}
#define cleanup_mdb_stmt __attribute__((cleanup(mdb_finalizep)))

#endif
