/* bench_audit - audit log performance, with a peer run side by side:
 *   1. append throughput, single (one transaction each) and batched (100 per
 *      transaction), against a plain prepared INSERT of the same row into a table of the
 *      same schema with the same pragmas (WAL, synchronous=FULL), same run, interleaved;
 *   2. time to verify 1,000,000 records (chain + checkpoints);
 *   3. query latency p99 at 1,000,000 records for typical auditor queries.
 *
 * Usage: bench_audit [DIR] [RECORDS]   (DIR on the disk to measure; default ".",
 * RECORDS default 1000000). Not part of ctest. */
#include "audit.h"
#include "cleanup.h"
#include "cleanup_sqlite.h"
#include "pol_sig.h"
#include "sqldb.h"
#include "util.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static double now_s(void)
{
	return (double)cells_mono_ns() / 1e9;
}

static void die(const cells_err_t *e)
{
	fprintf(stderr, "bench_audit: %s\n", e->msg);
	exit(1);
}

static const char *const schema =
    "CREATE TABLE plain(seq INTEGER PRIMARY KEY, time_us INTEGER NOT NULL, vp TEXT NOT NULL,"
    " actor TEXT NOT NULL, event TEXT NOT NULL, outcome TEXT NOT NULL, details TEXT NOT NULL,"
    " prev_hash BLOB NOT NULL, hash BLOB NOT NULL);"
    "CREATE INDEX plain_time ON plain(time_us);";

/* n plain inserts in transactions of `per` rows; returns seconds */
static double run_plain(sqlite3 *db, sqlite3_stmt *ins, uint64_t *seq, int n, int per,
			json_object *d)
{
	uint8_t h[32] = {1, 2, 3};
	cells_err_t e;
	double t0 = now_s();
	for (int i = 0; i < n; i += per) {
		if (per > 1 && sqldb_begin(db, &e) < 0)
			die(&e);
		for (int k = 0; k < per; k++) {
			sqlite3_reset(ins);
			sqlite3_bind_int64(ins, 1, (sqlite3_int64)++ * seq);
			sqlite3_bind_int64(ins, 2, cells_now_us());
			sqlite3_bind_text(ins, 3, "work", -1, SQLITE_STATIC);
			sqlite3_bind_text(ins, 4, "uid:0", -1, SQLITE_STATIC);
			sqlite3_bind_text(ins, 5, "device.denied", -1, SQLITE_STATIC);
			sqlite3_bind_text(ins, 6, "refused", -1, SQLITE_STATIC);
			sqlite3_bind_text(ins, 7,
					  json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN),
					  -1, SQLITE_TRANSIENT);
			sqlite3_bind_blob(ins, 8, h, 32, SQLITE_STATIC);
			sqlite3_bind_blob(ins, 9, h, 32, SQLITE_STATIC);
			if (sqlite3_step(ins) != SQLITE_DONE) {
				sqldb_err(db, "plain insert", &e);
				die(&e);
			}
		}
		if (per > 1 && sqldb_commit(db, &e) < 0)
			die(&e);
	}
	return now_s() - t0;
}

static double run_audit(struct audit *a, int n, int per, json_object *d)
{
	struct audit_entry ent[100];
	for (int k = 0; k < 100; k++)
		ent[k] = (struct audit_entry){"work", "uid:0", "device.denied", "refused", d};
	cells_err_t e;
	double t0 = now_s();
	for (int i = 0; i < n; i += per)
		if (audit_append_batch(a, ent, (size_t)per, NULL, &e) < 0)
			die(&e);
	return now_s() - t0;
}

static int cmp_d(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return a < b ? -1 : a > b;
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : ".";
	uint64_t big = argc > 2 ? strtoull(argv[2], NULL, 10) : 1000000;
	char base[PATH_MAX], p1[PATH_MAX + 16], p2[PATH_MAX + 16];
	snprintf(base, sizeof base, "%s/bench-audit.XXXXXX", dir);
	if (!mkdtemp(base)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(p1, sizeof p1, "%s/audit.db", base);
	snprintf(p2, sizeof p2, "%s/plain.db", base);
	cells_err_t e;
	struct audit *a;
	sqlite3 *pdb;
	cleanup_stmt sqlite3_stmt *ins = NULL;
	if (audit_open(p1, &a, &e) < 0 || sqldb_open(p2, SQLDB_DURABLE, 5000, &pdb, &e) < 0 ||
	    sqldb_exec(pdb, schema, &e) < 0 ||
	    sqldb_prepare(pdb, "INSERT INTO plain VALUES(?,?,?,?,?,?,?,?,?)", &ins, &e) < 0)
		die(&e);
	EVP_PKEY *k = pol_key_generate(&e);
	if (!k || audit_set_signer(a, k, &e) < 0)
		die(&e);
	audit_set_near_full(a, 0);
	json_object *d = json_object_new_object();
	json_object_object_add(d, "class", json_object_new_string("camera"));
	json_object_object_add(d, "count", json_object_new_int(17));
	json_object_object_add(d, "window_s", json_object_new_int(60));

	uint64_t pseq = 0;
	double ta = 0, tp = 0, tab = 0, tpb = 0;
	const int single = 1000, batched = 20000;
	for (int round = 0; round < 3; round++) {
		ta += run_audit(a, single, 1, d);
		tp += run_plain(pdb, ins, &pseq, single, 1, d);
		tab += run_audit(a, batched, 100, d);
		tpb += run_plain(pdb, ins, &pseq, batched, 100, d);
	}
	printf("append single : audit %8.0f rec/s  plain INSERT %8.0f rec/s  ratio %.2f\n",
	       3 * single / ta, 3 * single / tp, tp / ta);
	printf("append batched: audit %8.0f rec/s  plain INSERT %8.0f rec/s  ratio %.2f "
	       "(100 per transaction)\n",
	       3 * batched / tab, 3 * batched / tpb, tpb / tab);
	fflush(stdout);

	/* grow to `big` records (batched, timed for information) */
	uint64_t head;
	if (audit_head(a, &head, NULL, &e) < 0)
		die(&e);
	double t0 = now_s();
	struct audit_entry ent[1000];
	static const char *const vps[] = {"work", "personal", ""};
	static const char *const evs[] = {"device.denied", "fg.switch", "policy.accepted",
					  "call.placed", "vp.start"};
	for (uint64_t i = head; i < big;) {
		size_t n = big - i < 1000 ? (size_t)(big - i) : 1000;
		for (size_t j = 0; j < n; j++)
			ent[j] = (struct audit_entry){vps[(i + j) % 3], "uid:0", evs[(i + j) % 5],
						      (i + j) % 7 ? "ok" : "refused", d};
		if (audit_append_batch(a, ent, n, NULL, &e) < 0)
			die(&e);
		i += n;
	}
	if (audit_checkpoint_now(a, NULL, &e) < 0)
		die(&e);
	printf("filled to %" PRIu64 " records in %.1f s\n", big, now_s() - t0);
	fflush(stdout);

	struct audit_verify_result r;
	t0 = now_s();
	if (audit_verify(a, &r, &e) < 0)
		die(&e);
	double tv = now_s() - t0;
	printf("verify %" PRIu64 " records (%" PRIu64 " checkpoints): %.2f s (%.0f rec/s) %s\n",
	       r.records, r.checkpoints, tv, (double)r.records / tv, r.ok ? "ok" : r.reason);

	/* query latency: the auditor's typical queries, 100 runs each */
	int64_t now = cells_now_us();
	struct {
		const char *name;
		struct audit_filter f;
	} qs[] = {
	    {"latest 100", {0}},
	    {"--vp work --type policy", {.vp = "work", .type = "policy"}},
	    {"--outcome refused --limit 1000", {.outcome = "refused", .limit = 1000}},
	    {"--since 1h --type device", {.since_us = now - 3600000000LL, .type = "device"}},
	    {"--grep camera --limit 10", {.grep = "camera", .limit = 10}},
	};
	for (size_t qi = 0; qi < CELLS_ARRAY_SIZE(qs); qi++) {
		double lat[100];
		for (int i = 0; i < 100; i++) {
			json_object *arr = json_object_new_array();
			double s = now_s();
			if (audit_query(a, &qs[qi].f, arr, &e) < 0)
				die(&e);
			lat[i] = now_s() - s;
			json_object_put(arr);
		}
		qsort(lat, 100, sizeof lat[0], cmp_d);
		printf("query %-34s p50 %7.2f ms  p99 %7.2f ms\n", qs[qi].name, lat[50] * 1e3,
		       lat[98] * 1e3);
	}
	json_object_put(d);
	audit_close(a);
	sqlite3_close_v2(pdb);
	cells_rm_rf(base, NULL);
	return 0;
}
