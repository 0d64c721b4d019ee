/* mdm_db.c - the SQL layer of the MDM's store: sqlite (common/sqldb.h) and PostgreSQL
 * (libpq) behind one API (mdm_db.h). Everything that differs between the two engines is
 * in this file. */
#include "mdm_db.h"
#include "cleanup.h"
#include "sqldb.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#define MDB_MAXP 32 /* parameters of one statement */
#define MDB_MAXC 32 /* columns whose blobs are decoded per row */
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_TEXT 25
/* pg_advisory_xact_lock key serialising migrations of several front ends ("cell") */
#define MIGRATE_LOCK 0x63656c6c
/* Finished statements kept for their next use (by their SQL text): a prepare is most of
 * a simple query's cost on sqlite (the parser and its allocations), and a fan-out runs
 * the same few queries 10,000 times. */
#define MDB_CACHE 48
/* PostgreSQL pipeline mode: statements sent without waiting for their results, read at
 * the next statement that needs its own (it travels in the same flight) or at a commit.
 * At most this many in flight: their results (a few bytes each) must fit in the socket
 * buffers while we are still writing, or both ends would wait for the other. */
#define MDB_PIPELINE_MAX 256

struct mdb {
	sqlite3 *lite;
	PGconn *pg;
	int64_t changes;
	int code; /* errno of the last PostgreSQL error */
	char msg[CELLS_ERR_MSG_MAX];
	struct mdb_stmt *cache[MDB_CACHE]; /* reset, unbound, ready for mdb_prepare */
	size_t ncache;
	int pending; /* PostgreSQL: statements sent in pipeline mode, results not read yet */
};

struct mdb_stmt {
	struct mdb *db;
	char *text; /* the SQL as given to mdb_prepare (the cache's key) */
	sqlite3_stmt *lite;
	/* PostgreSQL: the translated text, parameters, and the result being stepped */
	char *sql;
	int nparams;
	char *val[MDB_MAXP];
	int len[MDB_MAXP], fmt[MDB_MAXP];
	unsigned oid[MDB_MAXP];
	PGresult *res;
	int row, nrows;
	unsigned char *dec[MDB_MAXC];
	size_t declen[MDB_MAXC];
};

bool mdb_is_pg(const char *where)
{
	return where &&
	       (!strncmp(where, "postgresql://", 13) || !strncmp(where, "postgres://", 11) ||
		strstr(where, "dbname=") || strstr(where, "host="));
}

bool mdb_pg(const struct mdb *db)
{
	return db->pg != NULL;
}

/* PostgreSQL's message on one line. */
static void pg_msg(struct mdb *db, const char *m, const char *state)
{
	snprintf(db->msg, sizeof db->msg, "%s", m && *m ? m : "unknown error");
	for (char *p = db->msg; *p; p++)
		if (*p == '\n' || *p == '\t')
			*p = p[1] ? ' ' : 0;
	db->code = EIO;
	if (state && !strncmp(state, "53", 2))
		db->code = ENOSPC; /* insufficient resources */
	else if (state &&
		 (!strcmp(state, "40001") || !strcmp(state, "40P01") || !strcmp(state, "55P03")))
		db->code = EBUSY; /* serialization failure, deadlock, lock not available */
	else if ((state && !strncmp(state, "08", 2)) || PQstatus(db->pg) != CONNECTION_OK)
		db->code = ECONNRESET;
}

static void pg_res_msg(struct mdb *db, const PGresult *r)
{
	pg_msg(db, r ? PQresultErrorMessage(r) : PQerrorMessage(db->pg),
	       r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL);
}

static void pg_quiet(void *arg, const char *message)
{
	(void)arg;
	(void)message; /* NOTICEs ("already exists, skipping") are not errors */
}

/* sqlite's SQL in PostgreSQL's words: ?N and ? parameters become $N (*np: the highest),
 * INTEGER BIGINT (an INTEGER PRIMARY KEY a BIGSERIAL one), BLOB BYTEA, AUTOINCREMENT and
 * WITHOUT ROWID nothing, each only in capitals. Quoted text is copied as it is. */
static char *pg_sql(const char *in, int *np)
{
	size_t cap = strlen(in) * 2 + 64, o = 0;
	char *out = malloc(cap);
	int maxp = 0;
	if (!out)
		return NULL;
	for (const char *p = in; *p;) {
		if (o + 32 >= cap) {
			char *n = realloc(out, cap *= 2);
			if (!n) {
				free(out);
				return NULL;
			}
			out = n;
		}
		if (*p == '\'') {
			const char *e = strchr(p + 1, '\'');
			size_t l = e ? (size_t)(e - p) + 1 : strlen(p);
			while (o + l + 32 >= cap) {
				char *n = realloc(out, cap *= 2);
				if (!n) {
					free(out);
					return NULL;
				}
				out = n;
			}
			memcpy(out + o, p, l);
			o += l;
			p += l;
		} else if (*p == '?') {
			int n = 0;
			p++;
			if (isdigit((unsigned char)*p))
				while (isdigit((unsigned char)*p))
					n = n * 10 + (*p++ - '0');
			else
				n = maxp + 1;
			if (n > maxp)
				maxp = n;
			o += (size_t)sprintf(out + o, "$%d", n);
		} else if (isalpha((unsigned char)*p) || *p == '_') {
			const char *w = p;
			while (isalnum((unsigned char)*p) || *p == '_')
				p++;
			size_t l = (size_t)(p - w);
			const char *rest = p;
			while (*rest == ' ')
				rest++;
/* a type is written in capitals (a column may be named blob: the same name on both) */
#define IS(word) (l == strlen(word) && !strncmp(w, word, l))
			const char *rep = NULL;
			if (IS("INTEGER"))
				rep =
				    !strncasecmp(rest, "PRIMARY KEY", 11) ? "BIGSERIAL" : "BIGINT";
			else if (IS("BLOB"))
				rep = "BYTEA";
			else if (IS("AUTOINCREMENT"))
				rep = "";
			else if (IS("WITHOUT") && !strncasecmp(rest, "ROWID", 5)) {
				rep = "";
				p = rest + 5;
			}
#undef IS
			if (rep) {
				o += (size_t)sprintf(out + o, "%s", rep);
			} else {
				while (o + l + 32 >= cap) {
					char *n = realloc(out, cap *= 2);
					if (!n) {
						free(out);
						return NULL;
					}
					out = n;
				}
				memcpy(out + o, w, l);
				o += l;
			}
		} else {
			out[o++] = *p++;
		}
	}
	out[o] = 0;
	if (np)
		*np = maxp;
	return out;
}

int mdb_open(const char *where, const char *sqlite_pragmas, struct mdb **out, cells_err_t *err)
{
	struct mdb *db = calloc(1, sizeof *db);
	if (!db)
		return cells_err_sys(err, ENOMEM, "database");
	if (!mdb_is_pg(where)) {
		if (sqldb_open(where, sqlite_pragmas, 10000, &db->lite, err) < 0) {
			free(db);
			return -1;
		}
		*out = db;
		return 0;
	}
	db->pg = PQconnectdb(where);
	if (!db->pg || PQstatus(db->pg) != CONNECTION_OK) {
		if (db->pg)
			pg_msg(db, PQerrorMessage(db->pg), NULL);
		cells_err_set(err, ECONNREFUSED, "postgresql: %s",
			      db->pg ? db->msg : "out of memory");
		mdb_close(db);
		return -1;
	}
	PQsetNoticeProcessor(db->pg, pg_quiet, NULL);
	*out = db;
	return 0;
}

static void stmt_free(struct mdb_stmt *st);

void mdb_close(struct mdb *db)
{
	if (!db)
		return;
	for (size_t i = 0; i < db->ncache; i++)
		stmt_free(db->cache[i]);
	db->ncache = 0;
	if (db->lite)
		sqlite3_close_v2(db->lite);
	if (db->pg)
		PQfinish(db->pg);
	free(db);
}

static int pg_sync(struct mdb *db, PGresult **own, int nown);

/* Run a command (no parameters, no rows) on PostgreSQL. The statements still in the
 * pipeline are read first: one that failed fails this command too (the transaction is
 * aborted), except a ROLLBACK, which runs anyway. */
static int pg_exec(struct mdb *db, const char *sql, const char *want_tag, cells_err_t *err)
{
	if (db->pending && pg_sync(db, NULL, 0) < 0 && strcmp(sql, "ROLLBACK"))
		return cells_err_set(err, db->code, "sql: %s", db->msg);
	PGresult *r = PQexec(db->pg, sql);
	ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
		pg_res_msg(db, r);
		PQclear(r);
		return cells_err_set(err, db->code, "sql: %s", db->msg);
	}
	/* COMMIT of a failed transaction "succeeds" as ROLLBACK */
	if (want_tag && strcmp(PQcmdStatus(r), want_tag)) {
		snprintf(db->msg, sizeof db->msg, "transaction rolled back");
		db->code = EIO;
		PQclear(r);
		return cells_err_set(err, EIO, "sql: transaction rolled back");
	}
	PQclear(r);
	return 0;
}

int mdb_exec(struct mdb *db, const char *sql, cells_err_t *err)
{
	if (db->lite)
		return sqldb_exec(db->lite, sql, err);
	cleanup_free char *t = pg_sql(sql, NULL);
	if (!t)
		return cells_err_sys(err, ENOMEM, "sql");
	return pg_exec(db, t, NULL, err);
}

int mdb_begin(struct mdb *db, cells_err_t *err)
{
	return db->lite ? sqldb_begin(db->lite, err) : pg_exec(db, "BEGIN", NULL, err);
}

int mdb_commit(struct mdb *db, cells_err_t *err)
{
	if (db->lite)
		return sqldb_commit(db->lite, err);
	if (pg_exec(db, "COMMIT", "COMMIT", err) < 0) {
		mdb_rollback(db);
		return -1;
	}
	return 0;
}

void mdb_rollback(struct mdb *db)
{
	if (db->lite)
		sqldb_rollback(db->lite);
	else
		pg_exec(db, "ROLLBACK", NULL, NULL);
}

int mdb_prepare(struct mdb *db, const char *sql, struct mdb_stmt **out, cells_err_t *err)
{
	for (size_t i = db->ncache; i-- > 0;)
		if (!strcmp(db->cache[i]->text, sql)) {
			*out = db->cache[i];
			db->cache[i] = db->cache[--db->ncache];
			return 0;
		}
	struct mdb_stmt *st = calloc(1, sizeof *st);
	if (!st || !(st->text = strdup(sql))) {
		free(st);
		return cells_err_sys(err, ENOMEM, "prepare");
	}
	st->db = db;
	if (db->lite) {
		if (sqldb_prepare(db->lite, sql, &st->lite, err) < 0) {
			free(st->text);
			free(st);
			return -1;
		}
	} else {
		st->sql = pg_sql(sql, &st->nparams);
		if (!st->sql) {
			free(st->text);
			free(st);
			return cells_err_sys(err, ENOMEM, "prepare");
		}
		if (st->nparams > MDB_MAXP) {
			stmt_free(st);
			return cells_err_set(err, EINVAL, "prepare: more than %d parameters",
					     MDB_MAXP);
		}
	}
	*out = st;
	return 0;
}

static void clear_row(struct mdb_stmt *st)
{
	for (int c = 0; c < MDB_MAXC; c++) {
		if (st->dec[c])
			PQfreemem(st->dec[c]);
		st->dec[c] = NULL;
	}
}

void mdb_reset(struct mdb_stmt *st)
{
	if (st->lite) {
		sqlite3_reset(st->lite);
		return;
	}
	clear_row(st);
	PQclear(st->res);
	st->res = NULL;
}

static void stmt_free(struct mdb_stmt *st)
{
	if (st->lite)
		sqlite3_finalize(st->lite); /* no reset after: it is gone */
	else
		mdb_reset(st);
	for (int i = 0; i < MDB_MAXP; i++)
		free(st->val[i]);
	free(st->sql);
	free(st->text);
	free(st);
}

/* Back to the cache, reset (a sqlite SELECT not reset would keep its read transaction
 * open, and with it an old snapshot) and without its bindings; freed when the cache is
 * full or holds the same SQL already. */
void mdb_finalize(struct mdb_stmt *st)
{
	if (!st)
		return;
	struct mdb *db = st->db;
	bool keep = db->ncache < MDB_CACHE;
	for (size_t i = 0; keep && i < db->ncache; i++)
		if (!strcmp(db->cache[i]->text, st->text))
			keep = false;
	if (!keep) {
		stmt_free(st);
		return;
	}
	if (st->lite) {
		sqlite3_reset(st->lite);
		sqlite3_clear_bindings(st->lite);
	} else {
		mdb_reset(st);
		for (int i = 0; i < MDB_MAXP; i++) {
			free(st->val[i]);
			st->val[i] = NULL;
			st->len[i] = st->fmt[i] = 0;
			st->oid[i] = 0;
		}
	}
	db->cache[db->ncache++] = st;
}

/* A PostgreSQL parameter: a copy of v (NULL: SQL NULL). */
static void pg_bind(struct mdb_stmt *st, int i, const void *v, size_t n, int fmt, unsigned oid)
{
	if (i < 1 || i > MDB_MAXP)
		return;
	i--;
	free(st->val[i]);
	st->val[i] = NULL;
	st->len[i] = (int)n;
	st->fmt[i] = fmt;
	st->oid[i] = oid;
	if (!v)
		return;
	st->val[i] = malloc(n + 1);
	if (!st->val[i])
		return; /* bound as NULL: the NOT NULL constraints refuse the row */
	memcpy(st->val[i], v, n);
	st->val[i][n] = 0;
}

void mdb_bind_text(struct mdb_stmt *st, int i, const char *v)
{
	if (st->lite) {
		if (v)
			sqlite3_bind_text(st->lite, i, v, -1, SQLITE_TRANSIENT);
		else
			sqlite3_bind_null(st->lite, i);
		return;
	}
	pg_bind(st, i, v, v ? strlen(v) : 0, 0, OID_TEXT);
}

void mdb_bind_int64(struct mdb_stmt *st, int i, int64_t v)
{
	if (st->lite) {
		sqlite3_bind_int64(st->lite, i, v);
		return;
	}
	char b[24];
	int n = snprintf(b, sizeof b, "%lld", (long long)v);
	pg_bind(st, i, b, (size_t)n, 0, OID_INT8);
}

void mdb_bind_blob(struct mdb_stmt *st, int i, const void *v, size_t n)
{
	if (st->lite) {
		sqlite3_bind_blob(st->lite, i, v ? v : "", (int)n, SQLITE_TRANSIENT);
		return;
	}
	pg_bind(st, i, v ? v : "", n, 1, OID_BYTEA);
}

void mdb_bind_null(struct mdb_stmt *st, int i)
{
	if (st->lite) {
		sqlite3_bind_null(st->lite, i);
		return;
	}
	pg_bind(st, i, NULL, 0, 0, 0);
}

/* ---- PostgreSQL pipeline mode ----------------------------------------------------- */

/* Send st with its bindings in pipeline mode (entered when nothing is in flight). */
static int pg_send(struct mdb_stmt *st)
{
	struct mdb *db = st->db;
	const char *vals[MDB_MAXP];
	Oid oids[MDB_MAXP];
	for (int i = 0; i < st->nparams; i++) {
		vals[i] = st->val[i];
		oids[i] = st->oid[i];
	}
	if (!db->pending && PQpipelineStatus(db->pg) == PQ_PIPELINE_OFF &&
	    PQenterPipelineMode(db->pg) != 1) {
		pg_msg(db, PQerrorMessage(db->pg), NULL);
		return -1;
	}
	if (!PQsendQueryParams(db->pg, st->sql, st->nparams, oids, vals, st->len, st->fmt, 0)) {
		pg_msg(db, PQerrorMessage(db->pg), NULL);
		return -1;
	}
	db->pending++;
	return 0;
}

/* A sync point after what is in flight, then read it all: the pending statements'
 * results (the first failure is kept in db->msg), then the last nown results into own[]
 * (the caller's statements, sent last; NULL where none came), and leave pipeline mode.
 * 0, or -1 when a statement failed (the transaction is then aborted) or the connection
 * broke; own[] is filled either way. */
static int pg_sync(struct mdb *db, PGresult **own, int nown)
{
	int total = db->pending, idx = 0, bad = 0, nulls = 0;
	for (int i = 0; i < nown; i++)
		own[i] = NULL;
	if (PQpipelineStatus(db->pg) == PQ_PIPELINE_OFF) {
		db->pending = 0;
		return 0;
	}
	if (!PQpipelineSync(db->pg)) {
		pg_msg(db, PQerrorMessage(db->pg), NULL);
		bad = -1;
	}
	while (PQstatus(db->pg) == CONNECTION_OK) {
		PGresult *r = PQgetResult(db->pg);
		if (!r) { /* the end of one statement's results (two in a row: nothing left) */
			if (++nulls > 1) {
				if (!bad)
					pg_msg(db, "pipeline: results out of step", NULL);
				bad = -1;
				break;
			}
			idx++;
			continue;
		}
		nulls = 0;
		ExecStatusType s = PQresultStatus(r);
		if (s == PGRES_PIPELINE_SYNC) {
			PQclear(r);
			break;
		}
		int mine = idx - (total - nown);
		if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && !bad) {
			pg_res_msg(db, r);
			bad = -1;
		}
		if (mine >= 0 && mine < nown && !own[mine])
			own[mine] = r;
		else
			PQclear(r);
	}
	if (PQstatus(db->pg) != CONNECTION_OK && !bad) {
		pg_msg(db, PQerrorMessage(db->pg), NULL);
		bad = -1;
	}
	db->pending = 0;
	if (PQexitPipelineMode(db->pg) != 1 && !bad) {
		pg_msg(db, PQerrorMessage(db->pg), NULL);
		bad = -1;
	}
	return bad;
}

/* st's result (PGresult owned by st): its rows to step, or MDB_ERROR. */
static int pg_result(struct mdb_stmt *st)
{
	struct mdb *db = st->db;
	ExecStatusType s = st->res ? PQresultStatus(st->res) : PGRES_FATAL_ERROR;
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
		if (s != PGRES_PIPELINE_ABORTED) /* else: db->msg names the failure before */
			pg_res_msg(db, st->res);
		PQclear(st->res);
		st->res = NULL;
		return MDB_ERROR;
	}
	const char *t = PQcmdTuples(st->res);
	db->changes = t && *t ? strtoll(t, NULL, 10) : 0;
	st->nrows = PQntuples(st->res);
	st->row = -1;
	return MDB_DONE;
}

int mdb_step(struct mdb_stmt *st)
{
	struct mdb *db = st->db;
	if (st->lite) {
		int r = sqlite3_step(st->lite);
		if (r == SQLITE_ROW)
			return MDB_ROW;
		if (r == SQLITE_DONE) {
			db->changes = sqlite3_changes(db->lite);
			return MDB_DONE;
		}
		return MDB_ERROR;
	}
	clear_row(st);
	if (!st->res) {
		if (db->pending) {
			/* behind the statements in flight, in the same round trip */
			int bad = pg_send(st);
			if (pg_sync(db, &st->res, 1) < 0 || bad < 0) {
				PQclear(st->res);
				st->res = NULL;
				return MDB_ERROR;
			}
		} else {
			const char *vals[MDB_MAXP];
			Oid oids[MDB_MAXP];
			for (int i = 0; i < st->nparams; i++) {
				vals[i] = st->val[i];
				oids[i] = st->oid[i];
			}
			st->res = PQexecParams(db->pg, st->sql, st->nparams, oids, vals, st->len,
					       st->fmt, 0);
		}
		if (pg_result(st) == MDB_ERROR)
			return MDB_ERROR;
	}
	if (++st->row < st->nrows)
		return MDB_ROW;
	st->row = st->nrows;
	return MDB_DONE;
}

int mdb_step_later(struct mdb_stmt *st, const char *what, cells_err_t *err)
{
	struct mdb *db = st->db;
	if (db->lite || (!db->pending && PQtransactionStatus(db->pg) != PQTRANS_INTRANS))
		return mdb_step_done(st, what, err);
	clear_row(st);
	PQclear(st->res);
	st->res = NULL;
	if (pg_send(st) < 0 || (db->pending >= MDB_PIPELINE_MAX && pg_sync(db, NULL, 0) < 0)) {
		if (db->pending)
			pg_sync(db, NULL, 0);
		return mdb_err(db, what, err);
	}
	db->changes = 0;
	return 0;
}

int mdb_step_each(struct mdb_stmt *st, size_t n, void (*bind)(struct mdb_stmt *, size_t, void *),
		  int (*row)(struct mdb_stmt *, size_t, void *), void *arg, const char *what,
		  cells_err_t *err)
{
	struct mdb *db = st->db;
	if (db->lite) {
		for (size_t i = 0; i < n; i++) {
			int r;
			mdb_reset(st);
			bind(st, i, arg);
			while ((r = mdb_step(st)) == MDB_ROW)
				if (row && row(st, i, arg) < 0)
					return cells_err_set(err, ENOMEM, "%s", what);
			if (r != MDB_DONE)
				return mdb_err(db, what, err);
		}
		mdb_reset(st);
		return 0;
	}
	PGresult *res[MDB_PIPELINE_MAX];
	for (size_t from = 0; from < n; from += MDB_PIPELINE_MAX) {
		int k = (int)(n - from < MDB_PIPELINE_MAX ? n - from : MDB_PIPELINE_MAX), sent = 0;
		int bad = 0;
		bool oom = false;
		mdb_reset(st);
		for (; sent < k && !bad; sent++) {
			bind(st, from + (size_t)sent, arg);
			bad = pg_send(st);
		}
		if (bad)
			sent--;
		if (pg_sync(db, res, sent) < 0)
			bad = -1;
		for (int j = 0; j < sent; j++) {
			st->res = res[j];
			res[j] = NULL;
			if (!bad && pg_result(st) == MDB_ERROR)
				bad = -1;
			while (!bad && ++st->row < st->nrows)
				if (row && row(st, from + (size_t)j, arg) < 0)
					oom = true, bad = -1;
			clear_row(st);
			PQclear(st->res);
			st->res = NULL;
		}
		if (bad)
			return oom ? cells_err_set(err, ENOMEM, "%s", what)
				   : mdb_err(db, what, err);
	}
	return 0;
}

int mdb_step_done(struct mdb_stmt *st, const char *what, cells_err_t *err)
{
	return mdb_step(st) == MDB_DONE ? 0 : mdb_err(st->db, what, err);
}

static const char *pg_value(struct mdb_stmt *st, int c)
{
	if (!st->res || st->row < 0 || st->row >= st->nrows || c < 0 || c >= PQnfields(st->res) ||
	    PQgetisnull(st->res, st->row, c))
		return NULL;
	return PQgetvalue(st->res, st->row, c);
}

int64_t mdb_column_int64(struct mdb_stmt *st, int c)
{
	if (st->lite)
		return sqlite3_column_int64(st->lite, c);
	const char *v = pg_value(st, c);
	if (!v)
		return 0;
	if (*v == 't' || *v == 'f') /* a boolean */
		return *v == 't';
	return strtoll(v, NULL, 10);
}

int mdb_column_int(struct mdb_stmt *st, int c)
{
	return (int)mdb_column_int64(st, c);
}

const char *mdb_column_text(struct mdb_stmt *st, int c)
{
	if (st->lite)
		return (const char *)sqlite3_column_text(st->lite, c);
	return pg_value(st, c);
}

/* A bytea column of the current row, decoded once. */
static const unsigned char *pg_blob(struct mdb_stmt *st, int c, size_t *n)
{
	const char *v = pg_value(st, c);
	*n = 0;
	if (!v)
		return NULL;
	if (PQftype(st->res, c) != OID_BYTEA || c >= MDB_MAXC) {
		*n = strlen(v);
		return (const unsigned char *)v;
	}
	if (!st->dec[c])
		st->dec[c] = PQunescapeBytea((const unsigned char *)v, &st->declen[c]);
	*n = st->dec[c] ? st->declen[c] : 0;
	return st->dec[c];
}

const void *mdb_column_blob(struct mdb_stmt *st, int c)
{
	if (st->lite)
		return sqlite3_column_blob(st->lite, c);
	size_t n;
	return pg_blob(st, c, &n);
}

size_t mdb_column_bytes(struct mdb_stmt *st, int c)
{
	if (st->lite)
		return (size_t)sqlite3_column_bytes(st->lite, c);
	size_t n;
	pg_blob(st, c, &n);
	return n;
}

int64_t mdb_changes(struct mdb *db)
{
	return db->changes;
}

int mdb_err(struct mdb *db, const char *what, cells_err_t *err)
{
	if (db->lite)
		return sqldb_err(db->lite, what, err);
	return cells_err_set(err, db->code ? db->code : EIO, "%s: %s", what, db->msg);
}

/* ---- migrations ------------------------------------------------------------------ */

/* 1 when a step ran, 0 up to date, -1 error; inside the caller's transaction. */
static int migrate_step(struct mdb *db, const char *module, const char *const *steps, size_t nsteps,
			cells_err_t *err)
{
	cleanup_mdb_stmt struct mdb_stmt *q = NULL;
	cleanup_mdb_stmt struct mdb_stmt *u = NULL;
	long long v = 0;
	if (mdb_prepare(db, "SELECT version FROM schema_version WHERE module=?", &q, err) < 0)
		return -1;
	mdb_bind_text(q, 1, module);
	int r = mdb_step(q);
	if (r == MDB_ERROR)
		return mdb_err(db, "schema_version", err);
	if (r == MDB_ROW)
		v = mdb_column_int64(q, 0);
	if (v < 0 || (size_t)v > nsteps)
		return cells_err_set(err, EPROTO,
				     "database schema of %s is version %lld, newer than this "
				     "program knows (%zu)",
				     module, v, nsteps);
	if ((size_t)v == nsteps)
		return 0;
	if (mdb_exec(db, steps[v], err) < 0)
		return cells_err_prefix(err, "migrate %s to version %lld", module, v + 1);
	if (mdb_prepare(db,
			"INSERT INTO schema_version(module,version) VALUES(?,?) "
			"ON CONFLICT(module) DO UPDATE SET version=excluded.version",
			&u, err) < 0)
		return -1;
	mdb_bind_text(u, 1, module);
	mdb_bind_int64(u, 2, v + 1);
	return mdb_step_done(u, "schema_version", err) < 0 ? -1 : 1;
}

/* A translation that took the column name blob for the type (before types had to be
 * in capitals) named queue's column bytea: renamed to the name it has on sqlite. 1 when
 * a column was renamed, 0 none (a look at the catalog, nothing written), -1. */
static int pg_rename_bytea(struct mdb *db, cells_err_t *err)
{
	PGresult *r = PQexec(db->pg, "SELECT 1 FROM information_schema.columns WHERE "
				     "table_schema=current_schema() AND column_name='bytea'");
	bool found = r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0;
	PQclear(r);
	if (!found)
		return 0;
	return pg_exec(db,
		       "DO $$DECLARE t text; BEGIN FOR t IN SELECT table_name FROM "
		       "information_schema.columns WHERE table_schema=current_schema() AND "
		       "column_name='bytea' LOOP EXECUTE format('ALTER TABLE %I RENAME COLUMN "
		       "bytea TO blob', t); END LOOP; END$$",
		       NULL, err) < 0
		   ? -1
		   : 1;
}

int mdb_migrate(struct mdb *db, const char *module, const char *const *steps, size_t nsteps,
		cells_err_t *err)
{
	for (;;) {
		int renamed = 0;
		if (mdb_begin(db, err) < 0)
			return -1;
		/* PostgreSQL: front ends starting together migrate one after the other; the
		 * version table (sqlite: made by sqldb_open) and the helpers the queries use */
		if (db->pg) {
			char lk[80];
			snprintf(lk, sizeof lk, "SELECT pg_advisory_xact_lock(%d)", MIGRATE_LOCK);
			if (pg_exec(db, lk, NULL, err) < 0 ||
			    pg_exec(db,
				    "CREATE TABLE IF NOT EXISTS schema_version(module TEXT PRIMARY "
				    "KEY, version BIGINT NOT NULL);"
				    "CREATE OR REPLACE FUNCTION instr(text, text) RETURNS integer "
				    "LANGUAGE sql IMMUTABLE AS 'SELECT strpos($1, $2)'",
				    NULL, err) < 0 ||
			    (renamed = pg_rename_bytea(db, err)) < 0) {
				mdb_rollback(db);
				return cells_err_prefix(err, "migrate %s", module);
			}
		}
		int r = migrate_step(db, module, steps, nsteps, err);
		if (r < 0 || (r == 0 && !renamed)) { /* up to date: nothing to keep */
			mdb_rollback(db);
			return r;
		}
		if (mdb_commit(db, err) < 0)
			return cells_err_prefix(err, "migrate %s", module);
		if (r == 0)
			return 0;
	}
}

/* ---- wake-ups between processes (PostgreSQL) -------------------------------------- */

int mdb_notify(struct mdb *db, const char *channel, const char *payload, cells_err_t *err)
{
	if (!db->pg)
		return 0;
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	if (mdb_prepare(db, "SELECT pg_notify(?, ?)", &st, err) < 0)
		return -1;
	mdb_bind_text(st, 1, channel);
	mdb_bind_text(st, 2, payload);
	if (mdb_step(st) == MDB_ERROR)
		return mdb_err(db, "notify", err);
	return 0;
}

bool mdb_in_transaction(struct mdb *db)
{
	if (db->lite)
		return !sqlite3_get_autocommit(db->lite);
	return PQtransactionStatus(db->pg) != PQTRANS_IDLE;
}

int mdb_listen(struct mdb *db, const char *channel, cells_err_t *err)
{
	if (!db->pg)
		return 0;
	char *q = PQescapeIdentifier(db->pg, channel, strlen(channel));
	if (!q)
		return cells_err_set(err, ENOMEM, "listen");
	char sql[200];
	snprintf(sql, sizeof sql, "LISTEN %s", q);
	PQfreemem(q);
	return pg_exec(db, sql, NULL, err);
}

int mdb_socket(struct mdb *db)
{
	return db->pg ? PQsocket(db->pg) : -1;
}

int mdb_notifications(struct mdb *db, void (*fn)(const char *payload, void *arg), void *arg,
		      cells_err_t *err)
{
	if (!db->pg)
		return 0;
	if (!PQconsumeInput(db->pg)) {
		pg_msg(db, PQerrorMessage(db->pg), NULL);
		return cells_err_set(err, ECONNRESET, "postgresql: %s", db->msg);
	}
	PGnotify *n;
	while ((n = PQnotifies(db->pg))) {
		fn(n->extra, arg);
		PQfreemem(n);
	}
	return 0;
}
