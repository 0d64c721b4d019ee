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
#include "device_key.h"
#include "mdm.h"
#include "mdm_audit.h"
#include "pol_sig.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/sha.h>
#include <openssl/x509.h>
#include <sqlite3.h>

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

/* A full record whose details_hash is not the hash of its details: refused (the server
 * answers Error 9), nothing stored. */
static void test_full_record_details_hash(void **state)
{
	struct fixture *f = *state;
	cells_err_t err;
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s/mdm-audit3.db", f->dir);
	struct mdm_audit_store *s = NULL;
	assert_int_equal(mdm_audit_store_open(p, &s, &err), 0);
	struct mdm_audit_store_result res;
	append_n(f->a, "", 3);
	Cells__V1__AuditBatch *b = NULL;
	assert_int_equal(audit_upload_batch(f->a, 1, 3, NULL, NULL, &b, &err), 0);
	assert_int_equal(b->n_records, 3);
	assert_false(b->records[1]->details_withheld);
	uint8_t h[32], wrong[32] = {7};
	audit_details_hash(b->records[1]->details, h);
	/* the right hash on a full record is fine */
	uint8_t *saved = b->records[1]->details_hash.data;
	size_t saved_len = b->records[1]->details_hash.len;
	b->records[1]->details_hash.data = h;
	b->records[1]->details_hash.len = 32;
	assert_int_equal(mdm_audit_store_batch(s, f->id, f->pub, b, &res, &err), 0);
	/* a wrong one is refused */
	b->records[1]->details_hash.data = wrong;
	assert_int_equal(mdm_audit_store_batch(s, f->id, f->pub, b, &res, &err), -1);
	assert_non_null(strstr(err.msg, "details_hash does not match"));
	b->records[1]->details_hash.data = saved;
	b->records[1]->details_hash.len = saved_len;
	audit_batch_free(b);
	mdm_audit_store_close(s);
}

/* The trust-root digest: the agent's and the server's computations agree, depend on
 * every key, the key order and the threshold, and tokens parse strictly. */
static void test_root_digest(void **state)
{
	(void)state;
	cells_err_t err;
	uint8_t k1[32], k2[32];
	memset(k1, 0x11, 32);
	memset(k2, 0x22, 32);
	ProtobufCBinaryData keys[2] = {{32, k1}, {32, k2}};
	Cells__V1__TrustRoot tr = CELLS__V1__TRUST_ROOT__INIT;
	tr.version = 1;
	tr.root_keys = keys;
	tr.n_root_keys = 2;
	tr.threshold = 1;
	uint8_t buf[512], a[32], b[32], c[32];
	size_t n = cells__v1__trust_root__pack(&tr, buf);
	assert_int_equal(trust_root_digest(&tr, a, &err), 0);
	assert_int_equal(mdm_root_digest(buf, n, b, &err), 0);
	assert_memory_equal(a, b, 32);
	/* the definition, spelled out */
	uint8_t m[21 + 8 + 64] = "cells.v1.root-digest";
	memcpy(m + 21, "\0\0\0\1\0\0\0\2", 8);
	memcpy(m + 29, k1, 32);
	memcpy(m + 61, k2, 32);
	SHA256(m, sizeof m, c);
	assert_memory_equal(a, c, 32);
	tr.threshold = 2;
	assert_int_equal(trust_root_digest(&tr, c, &err), 0);
	assert_memory_not_equal(a, c, 32);
	tr.threshold = 1;
	keys[0].data = k2;
	keys[1].data = k1;
	assert_int_equal(trust_root_digest(&tr, c, &err), 0);
	assert_memory_not_equal(a, c, 32);
	tr.n_root_keys = 0;
	assert_int_equal(trust_root_digest(&tr, c, &err), -1);
	/* tokens */
	char tok[200], hex[65];
	cells_hex(a, 32, hex);
	snprintf(tok, sizeof tok, "00ff.%s", hex);
	assert_int_equal(enroll_token_digest(tok, c, &err), 0);
	assert_memory_equal(a, c, 32);
	assert_int_equal(enroll_token_digest("00ff", c, &err), -1);
	assert_int_equal(enroll_token_digest(hex, c, &err), -1); /* no secret, no dot */
	snprintf(tok, sizeof tok, ".%s", hex);
	assert_int_equal(enroll_token_digest(tok, c, &err), -1);
	snprintf(tok, sizeof tok, "00ff.%s0", hex);
	assert_int_equal(enroll_token_digest(tok, c, &err), -1);
	hex[5] = 'A';
	snprintf(tok, sizeof tok, "00ff.%s", hex);
	assert_int_equal(enroll_token_digest(tok, c, &err), -1);
}

/* The EnrollBinding: made by the identity key over the CSR; the server accepts it for
 * that CSR only, signed by the key it names, of its kind. */
static void test_enroll_binding(void **state)
{
	(void)state;
	cells_err_t err;
	cleanup_pkey EVP_PKEY *id = pol_key_generate(&err);
	cleanup_pkey EVP_PKEY *other = pol_key_generate(&err);
	assert_non_null(id);
	assert_non_null(other);
	uint8_t csr[100], pub[32], got[32];
	memset(csr, 0x5a, sizeof csr);
	assert_int_equal(pol_key_raw_public(id, pub, &err), 0);
	Cells__V1__Signed *b = NULL;
	assert_int_equal(device_enroll_binding(id, csr, sizeof csr, &b, &err), 0);
	int64_t now = time(NULL);
	assert_int_equal(mdm_enroll_binding_verify(b, csr, sizeof csr, now, got, &err), 0);
	assert_memory_equal(got, pub, 32);
	/* another CSR */
	csr[0] ^= 1;
	assert_int_equal(mdm_enroll_binding_verify(b, csr, sizeof csr, now, got, &err), -1);
	assert_non_null(strstr(err.msg, "another CSR"));
	csr[0] ^= 1;
	/* long ago */
	assert_int_equal(mdm_enroll_binding_verify(b, csr, sizeof csr, now + 7200, got, &err), -1);
	/* a signature flipped */
	b->signatures[0]->signature.data[3] ^= 1;
	assert_int_equal(mdm_enroll_binding_verify(b, csr, sizeof csr, now, got, &err), -1);
	assert_non_null(strstr(err.msg, "not signed by the identity key"));
	b->signatures[0]->signature.data[3] ^= 1;
	/* the wrong kind */
	b->kind = CELLS__V1__SIGNED_KIND__SIGNED_WIPE_RECEIPT;
	assert_int_equal(mdm_enroll_binding_verify(b, csr, sizeof csr, now, got, &err), -1);
	b->kind = CELLS__V1__SIGNED_KIND__SIGNED_ENROLL_BINDING;
	cells__v1__signed__free_unpacked(b, NULL);
	/* signed by a key other than the one it names */
	Cells__V1__Signed *b2 = NULL;
	assert_int_equal(device_enroll_binding(other, csr, sizeof csr, &b2, &err), 0);
	Cells__V1__EnrollBinding *eb =
	    cells__v1__enroll_binding__unpack(NULL, b2->payload.len, b2->payload.data);
	assert_non_null(eb);
	memcpy(eb->identity_key.data, pub, 32); /* claims id, signed by other */
	b2->payload.len = cells__v1__enroll_binding__pack(eb, b2->payload.data);
	cells__v1__enroll_binding__free_unpacked(eb, NULL);
	assert_int_equal(mdm_enroll_binding_verify(b2, csr, sizeof csr, now, got, &err), -1);
	cells__v1__signed__free_unpacked(b2, NULL);
	/* none */
	assert_int_equal(mdm_enroll_binding_verify(NULL, csr, sizeof csr, now, got, &err), -1);
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
	    cmocka_unit_test_setup_teardown(test_full_record_details_hash, setup, teardown),
	    cmocka_unit_test(test_root_digest),
	    cmocka_unit_test(test_enroll_binding),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
