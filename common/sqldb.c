#include "sqldb.h"
#include "cleanup_sqlite.h"

#include <errno.h>
#include <stdio.h>

int sqldb_err(sqlite3 *db, const char *what, cells_err_t *err)
{
	int code = sqlite3_errcode(db);
	int e = code == SQLITE_FULL ? ENOSPC : code == SQLITE_BUSY ? EBUSY : EIO;
	return cells_err_set(err, e, "%s: %s", what, sqlite3_errmsg(db));
}

int sqldb_exec(sqlite3 *db, const char *sql, cells_err_t *err)
{
	cleanup_sqlite_str char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		int code = sqlite3_errcode(db);
		return cells_err_set(err, code == SQLITE_FULL ? ENOSPC : EIO, "sql: %s",
				     msg ? msg : sqlite3_errmsg(db));
	}
	return 0;
}

int sqldb_begin(sqlite3 *db, cells_err_t *err)
{
	return sqldb_exec(db, "BEGIN IMMEDIATE", err);
}

int sqldb_commit(sqlite3 *db, cells_err_t *err)
{
	if (sqldb_exec(db, "COMMIT", err) < 0) {
		sqldb_rollback(db);
		return -1;
	}
	return 0;
}

void sqldb_rollback(sqlite3 *db)
{
	if (!sqlite3_get_autocommit(db))
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

int sqldb_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st, cells_err_t *err)
{
	if (sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK)
		return sqldb_err(db, "prepare", err);
	return 0;
}

int sqldb_step_done(sqlite3 *db, sqlite3_stmt *st, const char *what, cells_err_t *err)
{
	return sqlite3_step(st) == SQLITE_DONE ? 0 : sqldb_err(db, what, err);
}

int sqldb_open(const char *path, const char *pragmas, int busy_ms, sqlite3 **out, cells_err_t *err)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(
	    path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		cells_err_set(err, EIO, "open %s: %s", path, db ? sqlite3_errmsg(db) : "no memory");
		sqlite3_close_v2(db);
		return -1;
	}
	sqlite3_busy_timeout(db, busy_ms);
	if (sqldb_exec(db, pragmas, err) < 0 ||
	    sqldb_exec(db,
		       "CREATE TABLE IF NOT EXISTS schema_version("
		       "module TEXT PRIMARY KEY, version INTEGER NOT NULL)",
		       err) < 0) {
		cells_err_prefix(err, "%s", path);
		sqlite3_close_v2(db);
		return -1;
	}
	*out = db;
	return 0;
}

/* Run the next migration step of module: 1 when one ran, 0 when up to date, -1 on error. */
static int migrate_step(sqlite3 *db, const char *module, const char *const *steps, size_t nsteps,
			cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *q = NULL;
	cleanup_stmt sqlite3_stmt *u = NULL;
	long long v = 0;
	if (sqldb_prepare(db, "SELECT version FROM schema_version WHERE module=?", &q, err) < 0)
		return -1;
	sqlite3_bind_text(q, 1, module, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW)
		v = sqlite3_column_int64(q, 0);
	if (v < 0 || (size_t)v > nsteps)
		return cells_err_set(
		    err, EPROTO,
		    "database schema of %s is version %lld, newer than this program "
		    "knows (%zu)",
		    module, v, nsteps);
	if ((size_t)v == nsteps)
		return 0;
	if (sqldb_exec(db, steps[v], err) < 0)
		return cells_err_prefix(err, "migrate %s to version %lld", module, v + 1);
	if (sqldb_prepare(db,
			  "INSERT INTO schema_version(module,version) VALUES(?,?) "
			  "ON CONFLICT(module) DO UPDATE SET version=excluded.version",
			  &u, err) < 0)
		return -1;
	sqlite3_bind_text(u, 1, module, -1, SQLITE_STATIC);
	sqlite3_bind_int64(u, 2, v + 1);
	if (sqlite3_step(u) != SQLITE_DONE)
		return sqldb_err(db, "schema_version", err);
	return 1;
}

int sqldb_migrate(sqlite3 *db, const char *module, const char *const *steps, size_t nsteps,
		  cells_err_t *err)
{
	for (;;) {
		if (sqldb_begin(db, err) < 0)
			return -1;
		int r = migrate_step(db, module, steps, nsteps, err);
		if (r <= 0) {
			sqldb_rollback(db);
			return r;
		}
		if (sqldb_commit(db, err) < 0)
			return cells_err_prefix(err, "migrate %s", module);
	}
}
