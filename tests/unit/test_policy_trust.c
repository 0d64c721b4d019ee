/* test_policy_trust.c - libcells-policy: the trust update walk (pol_trust_advance) that
 * `cells-mdm keys push` feeds devices: a good rotation chain, a skipped version, a
 * rollback and a replay, a rotation forged by the new key only, a chain ending in a
 * forgery, out-of-order rotations, revocation by a later serial (held delegations dropped,
 * a revoked one refused), an expired delegation, a self-revoking one; and the decoder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pol_sig.h"
#include "pol_trust.h"
#include "wire.h"

static EVP_PKEY *rk[4]; /* root keys of versions 1..3 (rk[0] unused) */
static EVP_PKEY *sk[3]; /* signing keys */
static int64_t now;

static void pub(EVP_PKEY *k, uint8_t out[32])
{
	assert_int_equal(pol_key_raw_public(k, out, NULL), 0);
}

static Cells__V1__Signed *new_signed(void)
{
	Cells__V1__Signed *s = calloc(1, sizeof *s);
	cells__v1__signed__init(s);
	return s;
}

static void signed_free(Cells__V1__Signed *s)
{
	if (s) {
		pol_signed_clear(s);
		free(s);
	}
}

/* The rotation to a one-key root `to` of version ver, signed by the keys a and b. */
static Cells__V1__Signed *rotation(uint64_t ver, EVP_PKEY *to, EVP_PKEY *a, EVP_PKEY *b)
{
	struct pol_root r = {.version = ver, .threshold = 1, .nkeys = 1};
	pub(to, r.keys[0]);
	uint8_t *tb;
	size_t tn;
	assert_int_equal(pol_root_encode(&r, &tb, &tn, NULL), 0);
	Cells__V1__Signed *s = new_signed();
	if (a)
		assert_int_equal(
		    pol_sign(s, CELLS__V1__SIGNED_KIND__SIGNED_ROOT_ROTATION, tb, tn, a, NULL), 0);
	if (b)
		assert_int_equal(
		    pol_sign(s, CELLS__V1__SIGNED_KIND__SIGNED_ROOT_ROTATION, tb, tn, b, NULL), 0);
	free(tb);
	return s;
}

static Cells__V1__Signed *delegation(EVP_PKEY *by, EVP_PKEY *k, uint64_t serial,
				     uint64_t revoke_below, int64_t expires)
{
	Cells__V1__KeyDelegation d = CELLS__V1__KEY_DELEGATION__INIT;
	Cells__V1__KeyRole roles[] = {CELLS__V1__KEY_ROLE__KEY_ROLE_POLICY,
				      CELLS__V1__KEY_ROLE__KEY_ROLE_COMMAND};
	uint8_t p[32];
	pub(k, p);
	d.public_key.data = p;
	d.public_key.len = 32;
	d.roles = roles;
	d.n_roles = 2;
	d.not_before = now - 60;
	d.expires_at = expires;
	d.serial = serial;
	d.revoke_below = revoke_below;
	uint8_t buf[1024];
	size_t n = cells__v1__key_delegation__pack(&d, buf);
	Cells__V1__Signed *s = new_signed();
	assert_int_equal(
	    pol_sign(s, CELLS__V1__SIGNED_KIND__SIGNED_KEY_DELEGATION, buf, n, by, NULL), 0);
	return s;
}

/* A device holding root version ver (key rk[ver]) and no delegations. */
static void trust_at(struct pol_trust *t, uint64_t ver)
{
	memset(t, 0, sizeof *t);
	t->root.version = ver;
	t->root.threshold = 1;
	t->root.nkeys = 1;
	pub(rk[ver], t->root.keys[0]);
}

static void expect(int r, const cells_err_t *err, int code, const char *needle)
{
	assert_int_equal(r, -1);
	if (err->code != code || !strstr(err->msg, needle))
		fail_msg("expected errno %d and '%s', got %d '%s'", code, needle, err->code,
			 err->msg);
}

static int group_setup(void **state)
{
	(void)state;
	now = time(NULL);
	for (int i = 1; i < 4; i++)
		rk[i] = pol_key_generate(NULL);
	for (int i = 0; i < 3; i++)
		sk[i] = pol_key_generate(NULL);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	for (int i = 1; i < 4; i++)
		EVP_PKEY_free(rk[i]);
	for (int i = 0; i < 3; i++)
		EVP_PKEY_free(sk[i]);
	return 0;
}

static void test_good_chain(void **state)
{
	(void)state;
	struct pol_trust cur, out;
	struct pol_trust_result res;
	cells_err_t err = {0};
	trust_at(&cur, 1);
	Cells__V1__Signed *rots[] = {rotation(2, rk[2], rk[1], rk[2]),
				     rotation(3, rk[3], rk[2], rk[3])};
	Cells__V1__Signed *dels[] = {delegation(rk[3], sk[0], 5, 5, now + 3600)};
	if (pol_trust_advance(&cur, rots, 2, dels, 1, now, POL_TRUST_STRICT, &out, &res, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(out.root.version, 3);
	assert_true(res.rotated);
	assert_true(res.taken[0]);
	assert_int_equal(out.ndels, 1);
	assert_int_equal(out.dels[0].serial, 5);
	assert_int_equal(res.floor, 5);
	/* a device already at version 2 walks the same chain from its root */
	trust_at(&cur, 2);
	assert_int_equal(
	    pol_trust_advance(&cur, rots, 2, dels, 1, now, POL_TRUST_STRICT, &out, &res, &err), 0);
	assert_int_equal(out.root.version, 3);
	/* at version 3 the whole chain is history: the same update is a replay */
	struct pol_trust held = out;
	expect(pol_trust_advance(&held, rots, 2, dels, 1, now, POL_TRUST_STRICT, &out, &res, &err),
	       &err, ESTALE, "nothing newer");
	/* a bundle (not strict) carrying it is fine */
	assert_int_equal(pol_trust_advance(&held, rots, 2, dels, 1, now, 0, &out, &res, &err), 0);
	assert_false(res.rotated);
	for (int i = 0; i < 2; i++)
		signed_free(rots[i]);
	signed_free(dels[0]);
}

static void test_skipped_version(void **state)
{
	(void)state;
	struct pol_trust cur, out;
	struct pol_trust_result res;
	cells_err_t err = {0};
	trust_at(&cur, 1);
	/* version 3 straight from 1, signed by both roots: refused, version 2 is skipped */
	Cells__V1__Signed *rot = rotation(3, rk[3], rk[1], rk[3]);
	expect(pol_trust_advance(&cur, &rot, 1, NULL, 0, now, POL_TRUST_STRICT, &out, &res, &err),
	       &err, ERANGE, "skips version 2");
	expect(pol_trust_advance(&cur, &rot, 1, NULL, 0, now, 0, &out, &res, &err), &err, ERANGE,
	       "skips version 2");
	signed_free(rot);
}

static void test_rollback(void **state)
{
	(void)state;
	struct pol_trust cur, out;
	struct pol_trust_result res;
	cells_err_t err = {0};
	trust_at(&cur, 2);
	/* "version 1" signed by the current root and the old key: never a way back */
	Cells__V1__Signed *rot = rotation(1, rk[1], rk[2], rk[1]);
	expect(pol_trust_advance(&cur, &rot, 1, NULL, 0, now, POL_TRUST_STRICT, &out, &res, &err),
	       &err, ESTALE, "nothing newer");
	/* as a bundle it changes nothing either */
	assert_int_equal(pol_trust_advance(&cur, &rot, 1, NULL, 0, now, 0, &out, &res, &err), 0);
	assert_int_equal(out.root.version, 2);
	assert_false(res.rotated);
	/* out of order: 2 then 2 again after the chain moved */
	trust_at(&cur, 1);
	Cells__V1__Signed *r2 = rotation(2, rk[2], rk[1], rk[2]);
	Cells__V1__Signed *r2b = rotation(2, rk[3], rk[2], rk[3]);
	Cells__V1__Signed *rots[] = {r2, r2b};
	expect(pol_trust_advance(&cur, rots, 2, NULL, 0, now, POL_TRUST_STRICT, &out, &res, &err),
	       &err, ESTALE, "out of order");
	signed_free(rot);
	signed_free(r2);
	signed_free(r2b);
}

static void test_forged_by_new_key_only(void **state)
{
	(void)state;
	struct pol_trust cur, out;
	struct pol_trust_result res;
	cells_err_t err = {0};
	trust_at(&cur, 1);
	Cells__V1__Signed *rot = rotation(2, rk[2], rk[2], NULL);
	Cells__V1__Signed *del = delegation(rk[2], sk[0], 2, 2, now + 3600);
	expect(pol_trust_advance(&cur, &rot, 1, &del, 1, now, POL_TRUST_STRICT, &out, &res, &err),
	       &err, EKEYREJECTED, "by the current root");
	/* by the old root only: the new root did not sign itself */
	Cells__V1__Signed *rot2 = rotation(2, rk[2], rk[1], NULL);
	expect(pol_trust_advance(&cur, &rot2, 1, &del, 1, now, POL_TRUST_STRICT, &out, &res, &err),
	       &err, EKEYREJECTED, "by the new root");
	/* a good rotation followed by a forged one: the chain cannot end in a forgery */
	Cells__V1__Signed *good = rotation(2, rk[2], rk[1], rk[2]);
	Cells__V1__Signed *forged = rotation(3, rk[3], rk[3], NULL);
	Cells__V1__Signed *rots[] = {good, forged};
	expect(pol_trust_advance(&cur, rots, 2, NULL, 0, now, POL_TRUST_STRICT, &out, &res, &err),
	       &err, EKEYREJECTED, "by the current root");
	/* a tampered signature */
	good->signatures[1]->signature.data[5] ^= 1;
	expect(pol_trust_advance(&cur, &good, 1, NULL, 0, now, POL_TRUST_STRICT, &out, &res, &err),
	       &err, EKEYREJECTED, "by the new root");
	signed_free(rot);
	signed_free(rot2);
	signed_free(del);
	signed_free(good);
	signed_free(forged);
}

static void test_revoked_serial(void **state)
{
	(void)state;
	struct pol_trust cur, out;
	struct pol_trust_result res;
	cells_err_t err = {0};
	trust_at(&cur, 1);
	Cells__V1__Signed *d1 = delegation(rk[1], sk[0], 1, 1, now + 3600);
	assert_int_equal(
	    pol_trust_advance(&cur, NULL, 0, &d1, 1, now, POL_TRUST_STRICT, &out, &res, &err), 0);
	cur = out;
	/* serial 2 for a new key supersedes serial 1: the old key is dropped */
	Cells__V1__Signed *d2 = delegation(rk[1], sk[1], 2, 2, now + 3600);
	assert_int_equal(
	    pol_trust_advance(&cur, NULL, 0, &d2, 1, now, POL_TRUST_STRICT, &out, &res, &err), 0);
	assert_true(res.dropped);
	assert_int_equal(out.ndels, 1);
	assert_int_equal(out.dels[0].serial, 2);
	cur = out;
	/* a policy signed by the revoked key: unknown to the device now */
	uint8_t payload[] = {0x08, 0x01};
	Cells__V1__Signed pol = CELLS__V1__SIGNED__INIT;
	assert_int_equal(pol_sign(&pol, CELLS__V1__SIGNED_KIND__SIGNED_POLICY, payload,
				  sizeof payload, sk[0], NULL),
			 0);
	expect(pol_signed_by_role(cur.dels, cur.ndels, &pol, CELLS__V1__KEY_ROLE__KEY_ROLE_POLICY,
				  now, &err),
	       &err, EKEYREJECTED, "unknown key");
	pol_signed_clear(&pol);
	/* the revoked delegation offered again (a replay of the old update): refused */
	expect(pol_trust_advance(&cur, NULL, 0, &d1, 1, now, POL_TRUST_STRICT, &out, &res, &err),
	       &err, ESTALE, "is revoked (serials below 2 are)");
	/* in a bundle it is skipped, not taken */
	assert_int_equal(pol_trust_advance(&cur, NULL, 0, &d1, 1, now, 0, &out, &res, &err), 0);
	assert_false(res.taken[0]);
	assert_int_equal(out.ndels, 1);
	/* the same key renewed (serial 3) replaces its serial 2; serial 2 again is older */
	Cells__V1__Signed *d3 = delegation(rk[1], sk[1], 3, 3, now + 7200);
	assert_int_equal(
	    pol_trust_advance(&cur, NULL, 0, &d3, 1, now, POL_TRUST_STRICT, &out, &res, &err), 0);
	assert_int_equal(out.ndels, 1);
	assert_int_equal(out.dels[0].expires_at, now + 7200);
	cur = out;
	expect(pol_trust_advance(&cur, NULL, 0, &d2, 1, now, POL_TRUST_STRICT, &out, &res, &err),
	       &err, ESTALE, "is revoked");
	/* a delegation that revokes itself is malformed */
	Cells__V1__Signed *bad = delegation(rk[1], sk[2], 4, 5, now + 3600);
	expect(pol_trust_advance(&cur, NULL, 0, &bad, 1, now, 0, &out, &res, &err), &err, EBADMSG,
	       "revokes itself");
	/* a rotation drops every delegation of the old root */
	Cells__V1__Signed *rot = rotation(2, rk[2], rk[1], rk[2]);
	assert_int_equal(
	    pol_trust_advance(&cur, &rot, 1, NULL, 0, now, POL_TRUST_STRICT, &out, &res, &err), 0);
	assert_int_equal(out.ndels, 0);
	signed_free(d1);
	signed_free(d2);
	signed_free(d3);
	signed_free(bad);
	signed_free(rot);
}

static void test_expired_delegation(void **state)
{
	(void)state;
	struct pol_trust cur, out;
	struct pol_trust_result res;
	cells_err_t err = {0};
	trust_at(&cur, 1);
	Cells__V1__Signed *d = delegation(rk[1], sk[0], 1, 1, now - 10);
	expect(pol_trust_advance(&cur, NULL, 0, &d, 1, now, POL_TRUST_STRICT, &out, &res, &err),
	       &err, EKEYEXPIRED, "expired at");
	/* a delegation signed by a key that is not the root */
	Cells__V1__Signed *f = delegation(sk[1], sk[0], 1, 1, now + 60);
	expect(pol_trust_advance(&cur, NULL, 0, &f, 1, now, POL_TRUST_STRICT, &out, &res, &err),
	       &err, EKEYREJECTED, "root signature");
	signed_free(d);
	signed_free(f);
}

static void test_update_decode(void **state)
{
	(void)state;
	cells_err_t err = {0};
	Cells__V1__TrustUpdate u = CELLS__V1__TRUST_UPDATE__INIT;
	Cells__V1__Signed *rot = rotation(2, rk[2], rk[1], rk[2]);
	Cells__V1__Signed *del = delegation(rk[2], sk[0], 1, 1, now + 60);
	u.root_rotations = &rot;
	u.n_root_rotations = 1;
	u.delegations = &del;
	u.n_delegations = 1;
	uint8_t buf[8192];
	size_t n = cells__v1__trust_update__pack(&u, buf);
	Cells__V1__TrustUpdate *out = NULL;
	assert_int_equal(pol_trust_update_decode(buf, n, &out, &err), 0);
	assert_int_equal(out->n_root_rotations, 1);
	cells__v1__trust_update__free_unpacked(out, NULL);
	/* the kinds are those of their positions */
	u.root_rotations = &del;
	n = cells__v1__trust_update__pack(&u, buf);
	expect(pol_trust_update_decode(buf, n, &out, &err), &err, EBADMSG, "rotation 0");
	expect(pol_trust_update_decode(buf, POL_MAX_TRUST_UPDATE + 1, &out, &err), &err, EMSGSIZE,
	       "over the limit");
	expect(pol_trust_update_decode((const uint8_t *)"\xff\xff", 2, &out, &err), &err, EBADMSG,
	       "protobuf");
	signed_free(rot);
	signed_free(del);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good_chain),	   cmocka_unit_test(test_skipped_version),
	    cmocka_unit_test(test_rollback),	   cmocka_unit_test(test_forged_by_new_key_only),
	    cmocka_unit_test(test_revoked_serial), cmocka_unit_test(test_expired_delegation),
	    cmocka_unit_test(test_update_decode),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
