/* statedb.h - the agent's sqlite state DB (STATE_DIR/state.db).
 * WAL journal, synchronous=FULL (a committed change survives power loss), foreign keys
 * on. Each module owns its tables and migrates them with statedb_migrate() at start-up:
 * migration i (0-based) of module M runs once, in a transaction with the recorded
 * version bump, so a crash never leaves a half-migrated schema. */
#ifndef CELLS_STATEDB_H
#define CELLS_STATEDB_H

#include <sqlite3.h>
#include <stddef.h>

#include "err.h"

int statedb_open(const char *path, sqlite3 **out, cells_err_t *err);
int statedb_migrate(sqlite3 *db, const char *module, const char *const *steps, size_t nsteps,
		    cells_err_t *err);
/* Run SQL without results; err gets sqlite's message. */
int statedb_exec(sqlite3 *db, const char *sql, cells_err_t *err);
int statedb_begin(sqlite3 *db, cells_err_t *err); /* BEGIN IMMEDIATE */
int statedb_commit(sqlite3 *db, cells_err_t *err);
void statedb_rollback(sqlite3 *db);
/* Prepare or fail with a clear message. */
int statedb_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st, cells_err_t *err);
int statedb_err(sqlite3 *db, const char *what, cells_err_t *err);

#endif
