/* test_audit.c - the audit chain (known-answer vectors from docs/PROTOCOL.md), the
 * agent's audit log on a real sqlite file, upload batches, and the server's storage
 * with its continuity checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "audit.h"
#include "audit_chain.h"
#include "cleanup_ssl.h"
#include "mdm_audit.h"
#include "pol_sig.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void unhex(const char *h, uint8_t *out, size_t n)
{
	assert_int_equal(cells_unhex(h, out, n), 0);
}

/* The vectors of docs/PROTOCOL.md "Audit chain", computed independently (Python). */
static void test_known_answer(void **state)
{
	struct audit_rec r = {.seq = 1,
			      .time_us = 1700000000000000,
			      .vp = "work",
			      .actor = "uid:0",
			      .event = "policy.accepted",
			      .outcome = "ok",
			      .details = "{\"version\":3}"};
	uint8_t c[AUDIT_CANONICAL_MAX], want_c[82], h1[32], want[32], zero[32] = {0};
	cells_err_t err;
	int n = audit_canonical(&r, c, &err);
	assert_int_equal(n, 82);
	unhex("000000000000000100060a24181e40000004776f726b00057569643a30000f706f6c6963792e61636365"
	      "7074656400026f6b9af23cea10a478f3bb916ff35c07a36debe444adf9b56814ab63861ec674ab8b",
	      want_c, 82);
	assert_memory_equal(c, want_c, 82);
	assert_int_equal(audit_rec_hash(&r, zero, h1, &err), 0);
	unhex("b939d1918a83d3dd16da45829c3edf7075af46c69323aed456c73e78e41a6ef4", want, 32);
	assert_memory_equal(h1, want, 32);
	struct audit_rec r2 = {.seq = 2,
			       .time_us = 1700000000000001,
			       .vp = "",
			       .actor = "cellsd",
			       .event = "agent.started",
			       .outcome = "ok",
			       .details = "{}"};
	uint8_t h2[32];
	assert_int_equal(audit_rec_hash(&r2, h1, h2, &err), 0);
	unhex("03b6a842530333d2157c64679693a0d5c6a21d994b83b7387c2bb7ab70421abb", want, 32);
	assert_memory_equal(h2, want, 32);

	/* withheld details: the same hash from details_hash */
	struct audit_rec w = r;
	w.details = NULL;
	w.details_withheld = true;
	audit_details_hash("{\"version\":3}", w.details_hash);
	uint8_t hw[32];
	assert_int_equal(audit_rec_hash(&w, zero, hw, &err), 0);
	assert_memory_equal(hw, h1, 32);

	/* the verifier: chain ok, then each kind of break */
	memcpy(r.prev_hash, zero, 32);
	memcpy(r.hash, h1, 32);
	memcpy(r2.prev_hash, h1, 32);
	memcpy(r2.hash, h2, 32);
	struct audit_verifier v;
	audit_verifier_init(&v);
	assert_int_equal(audit_verifier_record(&v, &r, &err), 0);
	assert_int_equal(audit_verifier_record(&v, &r2, &err), 0);
	assert_int_equal(audit_verifier_finish(&v, &err), 0);
	assert_int_equal(v.records, 2);

	audit_verifier_init(&v);
	struct audit_rec e = r;
	e.outcome = "refused";
	assert_int_equal(audit_verifier_record(&v, &e, &err), -1);
	assert_int_equal(v.bad_seq, 1);
	assert_non_null(strstr(err.msg, "edited"));

	audit_verifier_init(&v);
	assert_int_equal(audit_verifier_record(&v, &r2, &err), -1); /* starts at 2 */
	assert_int_equal(v.bad_seq, 2);

	audit_verifier_init(&v);
	assert_int_equal(audit_verifier_record(&v, &r, &err), 0);
	struct audit_rec r3 = r2;
	r3.seq = 3;
	assert_int_equal(audit_verifier_record(&v, &r3, &err), -1); /* 2 deleted */
	assert_int_equal(v.bad_seq, 2);

	/* a checkpoint beyond the end: truncated */
	audit_verifier_init(&v);
	assert_int_equal(audit_verifier_record(&v, &r, &err), 0);
	struct audit_cp cp = {.seq = 2};
	memcpy(cp.head_hash, h2, 32);
	assert_int_equal(audit_verifier_checkpoint(&v, &cp, &err), 0);
	assert_int_equal(audit_verifier_finish(&v, &err), -1);
	assert_int_equal(v.bad_seq, 2);
	assert_non_null(strstr(err.msg, "truncated"));

	/* oversize fields are refused, not hashed */
	char big[300];
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = 0;
	e = r;
	e.actor = big;
	assert_int_equal(audit_canonical(&e, c, &err), -1);
}

struct fixture {
	char dir[64];
	char path[PATH_MAX];
	struct audit *a;
	EVP_PKEY *key; /* a reference of the signer */
	uint8_t pub[32];
	char id[AUDIT_DEVICE_ID_LEN + 1];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/cells-test-audit.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof f->path, "%s/audit.db", f->dir);
	cells_err_t err;
	assert_int_equal(audit_open(f->path, &f->a, &err), 0);
	EVP_PKEY *k = pol_key_generate(&err);
	assert_non_null(k);
	assert_int_equal(pol_key_raw_public(k, f->pub, &err), 0);
	audit_device_id(f->pub, f->id);
	EVP_PKEY_up_ref(k);
	f->key = k;
	assert_int_equal(audit_set_signer(f->a, k, &err), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	audit_close(f->a);
	EVP_PKEY_free(f->key);
	cells_rm_rf(f->dir, NULL);
	free(f);
	return 0;
}

static void append_n(struct audit *a, const char *vp, int n)
{
	cells_err_t err;
	for (int i = 0; i < n; i++) {
		json_object *d = json_object_new_object();
		json_object_object_add(d, "number", json_object_new_string("+15551234567"));
		json_object_object_add(d, "count", json_object_new_int(i));
		json_object_object_add(d, "class", json_object_new_string("camera"));
		assert_int_equal(audit_append(a, vp, "uid:0", "call.placed", "ok", d, NULL, &err),
				 0);
		json_object_put(d);
	}
}

static void test_append_verify_private(void **state)
{
	struct fixture *f = *state;
	cells_err_t err;
	append_n(f->a, "work", 5);
	append_n(f->a, "personal", 3);
	uint64_t seq;
	assert_int_equal(audit_checkpoint_now(f->a, &seq, &err), 0);
	assert_int_equal(seq, 8);
	struct audit_verify_result r;
	assert_int_equal(audit_verify(f->a, &r, &err), 0);
	assert_true(r.ok);
	assert_int_equal(r.records, 8);
	assert_int_equal(r.checkpoints, 1);

	/* personal: no content (the number is gone), metadata kept; work: kept */
	json_object *arr = json_object_new_array();
	struct audit_filter q = {.vp = "personal"};
	assert_int_equal(audit_query(f->a, &q, arr, &err), 0);
	assert_int_equal(json_object_array_length(arr), 3);
	const char *d = json_object_to_json_string(
	    json_object_object_get(json_object_array_get_idx(arr, 0), "details"));
	assert_null(strstr(d, "5551234567"));
	assert_non_null(strstr(d, "camera"));
	assert_non_null(strstr(d, "content_withheld"));
	json_object_put(arr);
	arr = json_object_new_array();
	struct audit_filter q2 = {.vp = "work", .grep = "5551234567", .type = "call", .limit = 2};
	assert_int_equal(audit_query(f->a, &q2, arr, &err), 0);
	assert_int_equal(json_object_array_length(arr), 2);
	assert_int_equal(
	    json_object_get_int(json_object_object_get(json_object_array_get_idx(arr, 1), "seq")),
	    5);
	json_object_put(arr);

	/* batched append is one transaction of consecutive records */
	struct audit_entry e[3] = {{"work", "t", "x.a", "ok", NULL},
				   {"work", "t", "x.b", "ok", NULL},
				   {"work", "t", "x.c", "ok", NULL}};
	assert_int_equal(audit_append_batch(f->a, e, 3, &seq, &err), 0);
	assert_int_equal(seq, 11);
	/* a bad entry fails the whole batch: nothing half-written */
	e[1].outcome = NULL;
	assert_int_equal(audit_append_batch(f->a, e, 3, &seq, &err), -1);
	uint64_t head;
	assert_int_equal(audit_head(f->a, &head, NULL, &err), 0);
	assert_int_equal(head, 11);
	assert_int_equal(audit_verify(f->a, &r, &err), 0);
	assert_true(r.ok);
}

static void test_prune_keeps_verifiable(void **state)
{
	struct fixture *f = *state;
	cells_err_t err;
	append_n(f->a, "work", 20);
	assert_int_equal(audit_prune(f->a, 11, &err), 0);
	struct audit_verify_result r;
	assert_int_equal(audit_verify(f->a, &r, &err), 0);
	assert_true(r.ok);
	assert_int_equal(r.first_seq, 11);
	assert_int_equal(r.last_seq, 21); /* + audit.rotated */
	/* the export carries the pruning checkpoint as its anchor */
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s/x.bundle", f->dir);
	FILE *fp = fopen(p, "w+e");
	assert_non_null(fp);
	uint64_t n;
	assert_int_equal(audit_export(f->a, fileno(fp), &n, &err), 0);
	assert_int_equal(n, 11);
	fflush(fp);
	uint8_t *buf;
	size_t len;
	assert_int_equal(cells_read_file(p, 1 << 24, &buf, &len, &err), 0);
	fclose(fp);
	struct audit_verifier v;
	uint8_t pub[32];
	assert_int_equal(audit_bundle_verify_mem(buf, len, &v, pub, &err), 0);
	assert_int_equal(v.first_seq, 11);
	assert_memory_equal(pub, f->pub, 32);
	/* flip one byte of a record's content: the bundle no longer verifies */
	char *hit = memmem(buf, len, "audit.rotated", 13);
	assert_non_null(hit);
	hit[0] = 'A';
	assert_int_equal(audit_bundle_verify_mem(buf, len, &v, pub, &err), -1);
	assert_true(v.broken);
	free(buf);
	/* pruning more than exists is refused */
	assert_int_equal(audit_prune(f->a, 1000, &err), -1);
}

static void test_near_full_fails_closed(void **state)
{
	struct fixture *f = *state;
	cells_err_t err;
	append_n(f->a, "work", 2);
	audit_set_near_full(f->a, UINT64_MAX);
	assert_int_equal(audit_append(f->a, "", "t", "x.y", "ok", NULL, NULL, &err), -1);
	assert_int_equal(err.code, ENOSPC);
	assert_int_equal(audit_append(f->a, "", "t", "x.y", "ok", NULL, NULL, &err), -1);
	json_object *arr = json_object_new_array();
	struct audit_filter q = {.type = "audit"};
	assert_int_equal(audit_query(f->a, &q, arr, &err), 0);
	assert_int_equal(json_object_array_length(arr), 1); /* exactly one near-full record */
	assert_string_equal(json_object_get_string(
				json_object_object_get(json_object_array_get_idx(arr, 0), "event")),
			    "audit.near_full");
	json_object_put(arr);
	audit_set_near_full(f->a, 0);
	assert_int_equal(audit_append(f->a, "", "t", "x.y", "ok", NULL, NULL, &err), 0);
}

static int mode_metadata(const char *vp, void *data)
{
	return strcmp(vp, "work") ? CELLS__V1__AUDIT_UPLOAD__AUDIT_UPLOAD_METADATA
				  : CELLS__V1__AUDIT_UPLOAD__AUDIT_UPLOAD_FULL;
}

static void test_upload_and_server_continuity(void **state)
{
	struct fixture *f = *state;
	cells_err_t err;
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s/mdm-audit.db", f->dir);
	struct mdm_audit_store *s = NULL;
	assert_int_equal(mdm_audit_store_open(p, &s, &err), 0);
	struct mdm_audit_store_result res;

	append_n(f->a, "work", 4);
	append_n(f->a, "personal", 4);
	Cells__V1__AuditBatch *b = NULL;
	assert_int_equal(audit_upload_batch(f->a, 1, 5, mode_metadata, NULL, &b, &err), 0);
	assert_int_equal(b->n_records, 5);
	assert_false(b->records[0]->details_withheld);
	assert_true(b->records[4]->details_withheld); /* personal: metadata only */
	assert_int_equal(b->records[4]->details[0], 0);
	/* the withheld batch still verifies */
	struct audit_verifier v;
	audit_verifier_init(&v);
	assert_int_equal(audit_verifier_batch(&v, b, f->pub, &err), 0);
	assert_int_equal(mdm_audit_store_batch(s, f->id, f->pub, b, &res, &err), 0);
	assert_int_equal(res.stored, 5);
	assert_int_equal(res.checkpoint_seq, 8);
	/* a re-upload is fine and stores nothing new */
	assert_int_equal(mdm_audit_store_batch(s, f->id, f->pub, b, &res, &err), 0);
	assert_int_equal(res.stored, 0);
	audit_batch_free(b);
	/* the rest links on */
	assert_int_equal(audit_upload_batch(f->a, 6, 1000, mode_metadata, NULL, &b, &err), 0);
	assert_int_equal(mdm_audit_store_batch(s, f->id, f->pub, b, &res, &err), 0);
	assert_int_equal(res.stored, 3);
	audit_batch_free(b);
	bool ok = false;
	json_object *rep = NULL;
	assert_int_equal(mdm_audit_verify_device(s, f->id, &ok, &rep, &err), 0);
	assert_true(ok);
	json_object_put(rep);

	/* a batch that is not the device's: refused without touching the store */
	uint8_t other[32] = {1};
	assert_int_equal(audit_upload_batch(f->a, 1, 2, NULL, NULL, &b, &err), 0);
	assert_int_equal(mdm_audit_store_batch(s, f->id, other, b, &res, &err), -1);
	/* a tampered record in an upload: refused and alerted */
	b->records[1]->outcome[0] = 'X';
	assert_int_equal(mdm_audit_store_batch(s, f->id, f->pub, b, &res, &err), -1);
	assert_true(res.alert);
	audit_batch_free(b);
	assert_int_equal(mdm_audit_verify_device(s, f->id, &ok, &rep, &err), 0);
	assert_false(ok);
	json_object_put(rep);
	mdm_audit_store_close(s);

	/* pure truncation after an uploaded checkpoint: a later checkpoint covers less */
	snprintf(p, sizeof p, "%s/mdm-audit2.db", f->dir);
	assert_int_equal(mdm_audit_store_open(p, &s, &err), 0);
	assert_int_equal(audit_upload_batch(f->a, 1, 0, NULL, NULL, &b, &err), 0); /* cp only */
	assert_int_equal(b->n_records, 0);
	assert_int_equal(mdm_audit_store_batch(s, f->id, f->pub, b, &res, &err), 0);
	audit_batch_free(b);
	/* root deletes records 7.. and the checkpoints on the device */
	sqlite3 *db;
	snprintf(p, sizeof p, "%s/audit.db", f->dir);
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
				      "DELETE FROM audit WHERE seq>=7; DELETE FROM "
				      "audit_checkpoint",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	audit_close(f->a);
	assert_int_equal(audit_open(f->path, &f->a, &err), 0);
	EVP_PKEY_up_ref(f->key);
	assert_int_equal(audit_set_signer(f->a, f->key, &err), 0);
	usleep(2000);
	assert_int_equal(audit_upload_batch(f->a, 1, 0, NULL, NULL, &b, &err), 0);
	assert_int_equal(mdm_audit_store_batch(s, f->id, f->pub, b, &res, &err), -1);
	assert_true(res.alert);
	assert_non_null(strstr(err.msg, "truncated"));
	audit_batch_free(b);
	assert_int_equal(mdm_audit_verify_device(s, f->id, &ok, &rep, &err), 0);
	assert_false(ok);
	assert_int_equal(json_object_get_int(json_object_object_get(rep, "bad_seq")), 7);
	json_object_put(rep);
	mdm_audit_store_close(s);
}

static void test_bundle_garbage(void **state)
{
	cells_err_t err;
	struct audit_verifier v;
	uint8_t pub[32];
	uint8_t junk[100] = "CELLS-AUDIT-EXPORT-1\n";
	assert_int_equal(audit_bundle_verify_mem(junk, 10, &v, pub, &err), -1);
	/* header then a frame length beyond the end */
	junk[53] = 0xff;
	assert_int_equal(audit_bundle_verify_mem(junk, 60, &v, pub, &err), -1);
	Cells__V1__AuditBatch *b = NULL;
	assert_int_equal(audit_batch_decode(junk, sizeof junk, &b, &err), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_known_answer),
	    cmocka_unit_test_setup_teardown(test_append_verify_private, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_prune_keeps_verifiable, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_near_full_fails_closed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_upload_and_server_continuity, setup, teardown),
	    cmocka_unit_test(test_bundle_garbage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
