/* audit.c - first cut of the audit log: durable sqlite append. The hash chain, signed
 * checkpoints, query and verification come with the audit log issue. */
#include "audit.h"
#include "cleanup_sqlite.h"
#include "statedb.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>

struct audit {
	sqlite3 *db;
};

static const char *const audit_schema[] = {
    "CREATE TABLE audit(seq INTEGER PRIMARY KEY, time_us INTEGER NOT NULL, vp TEXT NOT NULL,"
    " actor TEXT NOT NULL, event TEXT NOT NULL, outcome TEXT NOT NULL, details TEXT NOT NULL)",
};

int audit_open(const char *path, struct audit **out, cells_err_t *err)
{
	struct audit *a = calloc(1, sizeof *a);
	if (!a)
		return cells_err_sys(err, ENOMEM, "audit");
	if (statedb_open(path, &a->db, err) < 0 ||
	    statedb_migrate(a->db, "audit", audit_schema, 1, err) < 0) {
		audit_close(a);
		return cells_err_prefix(err, "audit log");
	}
	*out = a;
	return 0;
}

void audit_close(struct audit *a)
{
	if (!a)
		return;
	sqlite3_close_v2(a->db);
	free(a);
}

int audit_append(struct audit *a, const char *vp, const char *actor, const char *event,
		 const char *outcome, json_object *details, uint64_t *seq, cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (statedb_prepare(a->db,
			    "INSERT INTO audit(time_us,vp,actor,event,outcome,details) "
			    "VALUES(?,?,?,?,?,?)",
			    &st, err) < 0)
		return -1;
	sqlite3_bind_int64(st, 1, cells_now_us());
	sqlite3_bind_text(st, 2, vp ? vp : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, actor, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, event, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, outcome, -1, SQLITE_STATIC);
	sqlite3_bind_text(
	    st, 6, details ? json_object_to_json_string_ext(details, JSON_C_TO_STRING_PLAIN) : "{}",
	    -1, SQLITE_TRANSIENT);
	if (sqlite3_step(st) != SQLITE_DONE)
		return statedb_err(a->db, "audit append", err);
	if (seq)
		*seq = (uint64_t)sqlite3_last_insert_rowid(a->db);
	return 0;
}
