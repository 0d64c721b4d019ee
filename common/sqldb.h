/* sqldb.h - the one sqlite helper of the agent (STATE_DIR/state.db) and the MDM
 * (mdm.db, audit.db): open with the durability a database needs, errors as cells_err_t
 * (SQLITE_FULL -> ENOSPC, SQLITE_BUSY -> EBUSY, else EIO), transactions, per-module
 * migrations. Each module owns its tables and migrates them with sqldb_migrate() at
 * start-up: migration i (0-based) of module M runs once, in a transaction with the
 * recorded version bump, so a crash never leaves a half-migrated schema. */
#ifndef CELLS_SQLDB_H
#define CELLS_SQLDB_H

#include <sqlite3.h>
#include <stddef.h>

#include "err.h"

/* The agent's state DB: a committed change survives power loss; foreign keys; deleted
 * content overwritten. */
#define SQLDB_DURABLE                                                                              \
	"PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; "               \
	"PRAGMA secure_delete=ON;"
/* A server database shared by the server and its admin tools: a committed change
 * survives a crash of the process. */
#define SQLDB_SHARED "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"

/* Open (create) path, wait up to busy_ms for a lock held by another process, run
 * pragmas (SQLDB_DURABLE, SQLDB_SHARED or the caller's). */
int sqldb_open(const char *path, const char *pragmas, int busy_ms, sqlite3 **out, cells_err_t *err);
int sqldb_migrate(sqlite3 *db, const char *module, const char *const *steps, size_t nsteps,
		  cells_err_t *err);
/* Run SQL without results; err gets sqlite's message. */
int sqldb_exec(sqlite3 *db, const char *sql, cells_err_t *err);
int sqldb_begin(sqlite3 *db, cells_err_t *err); /* BEGIN IMMEDIATE */
int sqldb_commit(sqlite3 *db, cells_err_t *err);
void sqldb_rollback(sqlite3 *db);
/* Prepare or fail with a clear message. */
int sqldb_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st, cells_err_t *err);
int sqldb_err(sqlite3 *db, const char *what, cells_err_t *err);
/* Step a statement that returns no row: 0 on SQLITE_DONE, else -1 with err ("what: ..."). */
int sqldb_step_done(sqlite3 *db, sqlite3_stmt *st, const char *what, cells_err_t *err);

#endif
