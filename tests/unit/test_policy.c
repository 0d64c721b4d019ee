/* test_policy.c - libcells-policy: every acceptance rule of a signed policy refuses with
 * its own reason; key hierarchy (delegation roles/expiry, k-of-n, rotation); commands;
 * strict JSON; Argon2id RFC 9106 vector through the wrapper; throttle schedule;
 * Ed25519 edge cases (non-canonical S, small-order keys) as SECURITY.md documents. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/sha.h>

#include "cleanup.h"
#include "cleanup_ssl.h"
#include "pol_image.h"
#include "pol_json.h"
#include "pol_password.h"
#include "pol_model.h"
#include "pol_policy.h"
#include "pol_sig.h"
#include "pol_throttle.h"
#include "pol_trust.h"
#include "wire.h"

#define DEV "0123456789abcdef0123456789abcdef"

static EVP_PKEY *root_key, *sign_key, *other_key;
static struct pol_root root;

static uint8_t *pub_of(EVP_PKEY *k)
{
	static uint8_t pub[4][32];
	static int i;
	uint8_t *p = pub[i++ % 4];
	assert_int_equal(pol_key_raw_public(k, p, NULL), 0);
	return p;
}

/* A Signed delegation of `k` by `by` (owned by the caller: pol_signed_clear + free). */
static Cells__V1__Signed *delegate(EVP_PKEY *by, EVP_PKEY *k, uint32_t roles, int64_t nb,
				   int64_t exp, uint64_t serial)
{
	Cells__V1__KeyDelegation d = CELLS__V1__KEY_DELEGATION__INIT;
	Cells__V1__KeyRole r[2];
	size_t nr = 0;
	if (roles & 1)
		r[nr++] = CELLS__V1__KEY_ROLE__KEY_ROLE_POLICY;
	if (roles & 2)
		r[nr++] = CELLS__V1__KEY_ROLE__KEY_ROLE_COMMAND;
	d.public_key.data = pub_of(k);
	d.public_key.len = 32;
	d.roles = r;
	d.n_roles = nr;
	d.not_before = nb;
	d.expires_at = exp;
	d.serial = serial;
	uint8_t buf[1024];
	size_t n = cells__v1__key_delegation__pack(&d, buf);
	Cells__V1__Signed *s = calloc(1, sizeof *s);
	cells__v1__signed__init(s);
	assert_int_equal(
	    pol_sign(s, CELLS__V1__SIGNED_KIND__SIGNED_KEY_DELEGATION, buf, n, by, NULL), 0);
	return s;
}

static void signed_free(Cells__V1__Signed *s)
{
	pol_signed_clear(s);
	free(s);
}

static struct pol_delegation verified_delegation(EVP_PKEY *k, uint32_t roles, int64_t nb,
						 int64_t exp)
{
	Cells__V1__Signed *s = delegate(root_key, k, roles, nb, exp, 1);
	struct pol_delegation d;
	cells_err_t err;
	assert_int_equal(pol_delegation_verify(&root, s, &d, &err), 0);
	signed_free(s);
	return d;
}

static char *policy_json(uint64_t version, const char *dev, int64_t expires, const char *extra_vp)
{
	char *s = NULL;
	assert_true(asprintf(&s,
			     "{\"version\": %llu, \"device\": \"%s\", \"issued_at\": 1000, "
			     "\"expires_at\": %lld, \"vps\": [{\"name\": \"work\", \"devices\": "
			     "{\"camera\": \"exclusive\", \"display\": \"shared\"}, \"net\": "
			     "\"nat\"}%s]}",
			     (unsigned long long)version, dev, (long long)expires,
			     extra_vp ? extra_vp : "") > 0);
	return s;
}

/* Sign a policy payload with k (a Signed on the heap). */
static Cells__V1__Signed *sign_payload(const uint8_t *p, size_t n, EVP_PKEY *k)
{
	Cells__V1__Signed *s = calloc(1, sizeof *s);
	cells__v1__signed__init(s);
	assert_int_equal(pol_sign(s, CELLS__V1__SIGNED_KIND__SIGNED_POLICY, p, n, k, NULL), 0);
	return s;
}

static Cells__V1__Signed *signed_policy(uint64_t version, const char *dev, int64_t expires,
					EVP_PKEY *k)
{
	cleanup_free char *j = policy_json(version, dev, expires, NULL);
	cleanup_free uint8_t *p = NULL;
	size_t n;
	cells_err_t err;
	if (pol_json_to_policy(j, strlen(j), &p, &n, &err) < 0)
		fail_msg("%s", err.msg);
	return sign_payload(p, n, k);
}

static int group_setup(void **state)
{
	root_key = pol_key_generate(NULL);
	sign_key = pol_key_generate(NULL);
	other_key = pol_key_generate(NULL);
	pol_root_from_key(pub_of(root_key), &root);
	return 0;
}

static int group_teardown(void **state)
{
	EVP_PKEY_free(root_key);
	EVP_PKEY_free(sign_key);
	EVP_PKEY_free(other_key);
	return 0;
}

/* Verify s against one delegation of sign_key with roles, valid [nb, exp). */
static int verify_with(Cells__V1__Signed *s, uint32_t roles, int64_t nb, int64_t exp,
		       const struct pol_installed *inst, cells_err_t *err)
{
	struct pol_delegation d = verified_delegation(sign_key, roles, nb, exp);
	Cells__V1__Policy *p = NULL;
	int r = pol_policy_verify(s, &d, 1, DEV, time(NULL), inst, &p, err);
	if (p)
		cells__v1__policy__free_unpacked(p, NULL);
	return r;
}

static void test_accepts_valid(void **state)
{
	Cells__V1__Signed *s = signed_policy(3, DEV, 0, sign_key);
	cells_err_t err = {0};
	int64_t now = time(NULL);
	assert_int_equal(verify_with(s, 1, now - 10, now + 3600, NULL, &err), 0);
	signed_free(s);
}

static void expect(int r, const cells_err_t *err, int code, const char *needle)
{
	assert_int_equal(r, -1);
	if (err->code != code || !strstr(err->msg, needle))
		fail_msg("expected errno %d and '%s', got %d '%s'", code, needle, err->code,
			 err->msg);
}

static void test_forged_signature(void **state)
{
	Cells__V1__Signed *s = signed_policy(3, DEV, 0, sign_key);
	s->signatures[0]->signature.data[10] ^= 1;
	cells_err_t err = {0};
	int64_t now = time(NULL);
	expect(verify_with(s, 1, now - 10, now + 3600, NULL, &err), &err, EKEYREJECTED,
	       "does not verify");
	signed_free(s);
	/* a flipped payload bit too */
	s = signed_policy(3, DEV, 0, sign_key);
	s->payload.data[s->payload.len - 1] ^= 0x20;
	expect(verify_with(s, 1, now - 10, now + 3600, NULL, &err), &err, EKEYREJECTED,
	       "does not verify");
	signed_free(s);
}

static void test_unknown_key(void **state)
{
	Cells__V1__Signed *s = signed_policy(3, DEV, 0, other_key);
	cells_err_t err = {0};
	int64_t now = time(NULL);
	expect(verify_with(s, 1, now - 10, now + 3600, NULL, &err), &err, EKEYREJECTED,
	       "unknown key");
	signed_free(s);
}

static void test_expired_delegation(void **state)
{
	Cells__V1__Signed *s = signed_policy(3, DEV, 0, sign_key);
	cells_err_t err = {0};
	int64_t now = time(NULL);
	expect(verify_with(s, 1, now - 7200, now - 3600, NULL, &err), &err, EKEYEXPIRED, "expired");
	expect(verify_with(s, 1, now + 3600, now + 7200, NULL, &err), &err, EKEYEXPIRED,
	       "not valid before");
	signed_free(s);
}

static void test_wrong_role(void **state)
{
	Cells__V1__Signed *s = signed_policy(3, DEV, 0, sign_key);
	cells_err_t err = {0};
	int64_t now = time(NULL);
	expect(verify_with(s, 2 /* command only */, now - 10, now + 3600, NULL, &err), &err,
	       EKEYREJECTED, "not delegated for the policy role");
	signed_free(s);
}

static void test_rollback_and_same_version(void **state)
{
	Cells__V1__Signed *s = signed_policy(3, DEV, 0, sign_key);
	cells_err_t err = {0};
	int64_t now = time(NULL);
	struct pol_installed inst = {.have = true, .version = 5};
	expect(verify_with(s, 1, now - 10, now + 3600, &inst, &err), &err, ESTALE, "rollback");
	inst.version = 3;
	memset(inst.hash, 0xaa, 32);
	expect(verify_with(s, 1, now - 10, now + 3600, &inst, &err), &err, ESTALE,
	       "different contents");
	/* same version, same bytes: not an error, reported as 1 */
	SHA256(s->payload.data, s->payload.len, inst.hash);
	assert_int_equal(verify_with(s, 1, now - 10, now + 3600, &inst, &err), 1);
	inst.version = 2;
	assert_int_equal(verify_with(s, 1, now - 10, now + 3600, &inst, &err), 0);
	signed_free(s);
}

static void test_other_device_and_expired(void **state)
{
	Cells__V1__Signed *s = signed_policy(3, "fedcba9876543210fedcba9876543210", 0, sign_key);
	cells_err_t err = {0};
	int64_t now = time(NULL);
	expect(verify_with(s, 1, now - 10, now + 3600, NULL, &err), &err, ENODEV,
	       "is for device fedcba9876543210fedcba9876543210");
	signed_free(s);
	s = signed_policy(3, DEV, 2000, sign_key);
	expect(verify_with(s, 1, now - 10, now + 3600, NULL, &err), &err, ETIME, "expired at 2000");
	signed_free(s);
}

static void test_truncated_and_oversized(void **state)
{
	Cells__V1__Signed *s = signed_policy(3, DEV, 0, sign_key);
	Cells__V1__PolicyBundle b = CELLS__V1__POLICY_BUNDLE__INIT;
	b.policy = s;
	size_t n = cells__v1__policy_bundle__get_packed_size(&b);
	uint8_t *buf = malloc(n);
	cells__v1__policy_bundle__pack(&b, buf);
	struct pol_bundle pb;
	cells_err_t err = {0};
	assert_int_equal(pol_bundle_decode(buf, n, &pb, &err), 0);
	pol_bundle_free(&pb);
	for (size_t cut = 1; cut < n; cut += 7) {
		int r = pol_bundle_decode(buf, n - cut, &pb, &err);
		if (r == 0) {
			/* a cut that still parses must fail verification */
			struct pol_delegation d = verified_delegation(sign_key, 1, 0, INT64_MAX);
			Cells__V1__Policy *p = NULL;
			r = pol_policy_verify(pb.policy, &d, 1, DEV, time(NULL), NULL, &p, &err);
			pol_bundle_free(&pb);
			assert_int_equal(r, -1);
		}
	}
	free(buf);
	uint8_t *big = calloc(1, POL_MAX_BUNDLE + 1);
	expect(pol_bundle_decode(big, POL_MAX_BUNDLE + 1, &pb, &err), &err, EMSGSIZE,
	       "over the limit");
	free(big);
	uint8_t *bigp = calloc(1, CELLS_MAX_POLICY + 1);
	Cells__V1__Policy *p = NULL;
	expect(pol_policy_decode(bigp, CELLS_MAX_POLICY + 1, &p, &err), &err, EMSGSIZE,
	       "over the limit");
	free(bigp);
	signed_free(s);
}

static void test_conflicting_exclusive(void **state)
{
	/* JSON refuses it... */
	cleanup_free char *j = policy_json(
	    3, DEV, 0, ", {\"name\": \"personal\", \"devices\": {\"camera\": \"exclusive\"}}");
	uint8_t *p = NULL;
	size_t n;
	cells_err_t err = {0};
	expect(pol_json_to_policy(j, strlen(j), &p, &n, &err), &err, EINVAL,
	       "VPs work and personal are both exclusive on camera");
	/* ...and so does the device when such a policy is signed anyway */
	Cells__V1__Policy pol = CELLS__V1__POLICY__INIT;
	Cells__V1__VpRule r1 = CELLS__V1__VP_RULE__INIT, r2 = CELLS__V1__VP_RULE__INIT;
	Cells__V1__DeviceRule d = CELLS__V1__DEVICE_RULE__INIT;
	Cells__V1__DeviceRule *dp = &d;
	Cells__V1__VpRule *rs[2] = {&r1, &r2};
	d.device_class = "camera";
	d.mode = CELLS__V1__ACCESS_MODE__ACCESS_EXCLUSIVE;
	r1.vp = "work";
	r2.vp = "personal";
	r1.devices = r2.devices = &dp;
	r1.n_devices = r2.n_devices = 1;
	pol.version = 4;
	pol.device_id = DEV;
	pol.vps = rs;
	pol.n_vps = 2;
	uint8_t buf[512];
	n = cells__v1__policy__pack(&pol, buf);
	Cells__V1__Signed *s = sign_payload(buf, n, sign_key);
	int64_t now = time(NULL);
	expect(verify_with(s, 1, now - 10, now + 3600, NULL, &err), &err, EINVAL,
	       "both exclusive on camera");
	signed_free(s);
	/* the display is the foreground's: exclusive for several VPs means "while in front" */
	d.device_class = "display";
	n = cells__v1__policy__pack(&pol, buf);
	s = sign_payload(buf, n, sign_key);
	assert_int_equal(verify_with(s, 1, now - 10, now + 3600, NULL, &err), 0);
	signed_free(s);
	free(p);
	p = NULL;
	cleanup_free char *j2 = NULL;
	assert_true(asprintf(&j2,
			     "{\"version\": 3, \"device\": \"%s\", \"vps\": [{\"name\": \"work\", "
			     "\"devices\": {\"display\": \"exclusive\"}}, {\"name\": \"personal\", "
			     "\"devices\": {\"display\": \"exclusive\"}}]}",
			     DEV) > 0);
	assert_int_equal(pol_json_to_policy(j2, strlen(j2), &p, &n, &err), 0);
	free(p);
}

static void test_validation_rules(void **state)
{
	static const struct {
		const char *json, *needle;
	} cases[] = {
	    {"{\"version\": 1, \"device\": \"" DEV "\", \"vps\": [], \"colour\": 1}",
	     "colour: unknown key"},
	    {"{\"version\": 1, \"device\": \"" DEV "\", \"vps\": [{\"name\": \"w\", \"netz\": 1}]}",
	     "vps[0].netz: unknown key"},
	    {"{\"version\": 1, \"device\": \"" DEV
	     "\", \"vps\": [{\"name\": \"w\", \"devices\": {\"toaster\": \"shared\"}}]}",
	     "unknown device class"},
	    {"{\"version\": 1, \"device\": \"" DEV
	     "\", \"vps\": [{\"name\": \"w\", \"devices\": {\"camera\": \"maybe\"}}]}",
	     "mode must be"},
	    {"{\"version\": 0, \"device\": \"" DEV "\", \"vps\": []}", "out of range"},
	    {"{\"version\": 1, \"device\": \"xyz\", \"vps\": []}", "not 32 hex"},
	    {"{\"version\": 1, \"device\": \"" DEV "\", \"vps\": [{\"name\": \"w\"}, {\"name\": "
	     "\"w\"}]}",
	     "named twice"},
	    {"{\"version\": 1, \"device\": \"" DEV "\", \"vps\": [{\"name\": \"Bad Name\"}]}",
	     "VP name"},
	    {"{\"version\": 1, \"device\": \"" DEV "\", \"vps\": [{\"name\": \"w\", \"net\": "
	     "\"wide\"}]}",
	     "none or nat"},
	    {"{\"version\": \"1\", \"device\": \"" DEV "\", \"vps\": []}", "not an integer"},
	    {"{\"version\": 1, \"device\": \"" DEV "\", \"vps\": []} x", "does not parse"},
	    {"{\"version\": 1, \"device\": \"" DEV "\"}", "vps: missing"},
	    {"{\"version\": 1, \"device\": \"" DEV "\", \"issued_at\": 10, \"expires_at\": 5, "
	     "\"vps\": []}",
	     "before it is issued"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint8_t *p = NULL;
		size_t n;
		cells_err_t err = {0};
		int r = pol_json_to_policy(cases[i].json, strlen(cases[i].json), &p, &n, &err);
		if (r == 0 || !strstr(err.msg, cases[i].needle))
			fail_msg("case %zu: expected '%s', got r=%d '%s'", i, cases[i].needle, r,
				 err.msg);
	}
}

static void test_json_roundtrip(void **state)
{
	cleanup_free char *j = policy_json(7, DEV, 99999, NULL);
	cleanup_free uint8_t *p = NULL;
	cleanup_free uint8_t *p2 = NULL;
	size_t n, n2;
	cells_err_t err;
	assert_int_equal(pol_json_to_policy(j, strlen(j), &p, &n, &err), 0);
	Cells__V1__Policy *pol = NULL;
	assert_int_equal(pol_policy_decode(p, n, &pol, &err), 0);
	json_object *o = pol_policy_to_json(pol);
	const char *t = json_object_to_json_string(o);
	assert_int_equal(pol_json_to_policy(t, strlen(t), &p2, &n2, &err), 0);
	Cells__V1__Policy *pol2 = NULL;
	assert_int_equal(pol_policy_decode(p2, n2, &pol2, &err), 0);
	assert_int_equal(pol2->version, 7);
	assert_int_equal(pol2->expires_at, 99999);
	assert_int_equal(pol_rule_device_mode(pol2->vps[0], "camera"),
			 CELLS__V1__ACCESS_MODE__ACCESS_EXCLUSIVE);
	assert_int_equal(pol_rule_device_mode(pol2->vps[0], "gps"),
			 CELLS__V1__ACCESS_MODE__ACCESS_NO_ACCESS);
	assert_int_equal(pol2->vps[0]->net, CELLS__V1__NET_MODE__NET_NAT);
	json_object_put(o);
	cells__v1__policy__free_unpacked(pol, NULL);
	cells__v1__policy__free_unpacked(pol2, NULL);
}

/* A VP rule's image "NAME@VERSION": parsed, refused when malformed, kept through JSON. */
static void test_image_ref(void **state)
{
	(void)state;
	char name[POL_IMAGE_NAME_MAX + 1];
	uint64_t v = 0;
	cells_err_t err;
	assert_int_equal(pol_image_ref_parse("debian-min.v2_x@9223372036854775807", name, &v, &err),
			 0);
	assert_string_equal(name, "debian-min.v2_x");
	assert_true(v == INT64_MAX);
	assert_int_equal(pol_image_ref_parse(NULL, name, &v, &err), -1);
	static const char *const bad[] = {"",
					  "work@-1",
					  "a/b@1",
					  "busybox",
					  "busybox@",
					  "busybox@0",
					  "busybox@01",
					  "busybox@1x",
					  "Busybox@1",
					  "-busybox@1",
					  "busy box@1",
					  "@1",
					  "busybox@9223372036854775808",
					  "a23456789012345678901234567890123@1"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		assert_int_equal(pol_image_ref_parse(bad[i], name, &v, &err), -1);
		assert_int_equal(err.code, EINVAL);
	}
	const char *j = "{\"version\":3,\"device\":\"" DEV "\",\"vps\":[{\"name\":\"work\","
			"\"image\":\"debian@4\"}]}";
	cleanup_free uint8_t *p = NULL;
	size_t n;
	assert_int_equal(pol_json_to_policy(j, strlen(j), &p, &n, &err), 0);
	Cells__V1__Policy *pol = NULL;
	assert_int_equal(pol_policy_decode(p, n, &pol, &err), 0);
	assert_string_equal(pol->vps[0]->image, "debian@4");
	struct pol_model m;
	assert_int_equal(pol_model_from(pol, &m, &err), 0);
	assert_string_equal(m.vps[0].image, "debian@4");
	json_object *o = pol_policy_to_json(pol);
	assert_string_equal(
	    json_object_get_string(json_object_object_get(
		json_object_array_get_idx(json_object_object_get(o, "vps"), 0), "image")),
	    "debian@4");
	json_object_put(o);
	/* a malformed reference in JSON and in a decoded policy */
	const char *jb = "{\"version\":3,\"device\":\"" DEV "\",\"vps\":[{\"name\":\"work\","
			 "\"image\":\"debian\"}]}";
	cleanup_free uint8_t *pb = NULL;
	assert_int_equal(pol_json_to_policy(jb, strlen(jb), &pb, &n, &err), -1);
	assert_non_null(strstr(err.msg, "vps[0].image"));
	char *keep = pol->vps[0]->image;
	pol->vps[0]->image = "debian@0";
	assert_int_equal(pol_policy_validate(pol, &err), -1);
	assert_non_null(strstr(err.msg, "VP work: image"));
	pol->vps[0]->image = keep;
	cells__v1__policy__free_unpacked(pol, NULL);
}

static void test_delegation_rules(void **state)
{
	cells_err_t err = {0};
	struct pol_delegation d;
	/* not signed by the root */
	Cells__V1__Signed *s = delegate(other_key, sign_key, 1, 0, INT64_MAX, 1);
	expect(pol_delegation_verify(&root, s, &d, &err), &err, EKEYREJECTED,
	       "0 valid root signature(s), 1 needed");
	signed_free(s);
	/* no expiry */
	s = delegate(root_key, sign_key, 1, 0, 0, 1);
	expect(pol_delegation_verify(&root, s, &d, &err), &err, EBADMSG, "no expiry");
	signed_free(s);
}

static void test_threshold_and_rotation(void **state)
{
	EVP_PKEY *k[3], *n[2];
	for (int i = 0; i < 3; i++)
		k[i] = pol_key_generate(NULL);
	for (int i = 0; i < 2; i++)
		n[i] = pol_key_generate(NULL);
	struct pol_root r2 = {.version = 1, .threshold = 2, .nkeys = 3};
	for (int i = 0; i < 3; i++)
		pol_key_raw_public(k[i], r2.keys[i], NULL);
	cells_err_t err = {0};
	struct pol_delegation d;
	/* 2-of-3: one root signature is not enough, two are */
	Cells__V1__Signed *s = delegate(k[0], sign_key, 1, 0, INT64_MAX, 1);
	expect(pol_delegation_verify(&r2, s, &d, &err), &err, EKEYREJECTED, "1 valid root");
	/* the same key twice does not count twice */
	pol_sign(s, s->kind, s->payload.data, s->payload.len, k[0], NULL);
	expect(pol_delegation_verify(&r2, s, &d, &err), &err, EKEYREJECTED, "1 valid root");
	pol_sign(s, s->kind, s->payload.data, s->payload.len, k[2], NULL);
	assert_int_equal(pol_delegation_verify(&r2, s, &d, &err), 0);
	signed_free(s);

	/* rotation to a 1-of-2 root of version 2 */
	struct pol_root nr = {.version = 2, .threshold = 1, .nkeys = 2}, out;
	for (int i = 0; i < 2; i++)
		pol_key_raw_public(n[i], nr.keys[i], NULL);
	uint8_t *tb;
	size_t tn;
	assert_int_equal(pol_root_encode(&nr, &tb, &tn, &err), 0);
	Cells__V1__Signed rot = CELLS__V1__SIGNED__INIT;
	pol_sign(&rot, CELLS__V1__SIGNED_KIND__SIGNED_ROOT_ROTATION, tb, tn, k[0], NULL);
	pol_sign(&rot, rot.kind, tb, tn, k[1], NULL);
	/* signed by the old root only */
	expect(pol_root_rotate(&r2, &rot, &out, &err), &err, EKEYREJECTED, "by the new root");
	pol_sign(&rot, rot.kind, tb, tn, n[1], NULL);
	assert_int_equal(pol_root_rotate(&r2, &rot, &out, &err), 0);
	assert_int_equal(out.version, 2);
	assert_int_equal(out.nkeys, 2);
	/* not newer than the current one */
	r2.version = 2;
	expect(pol_root_rotate(&r2, &rot, &out, &err), &err, ESTALE, "not newer");
	/* new-root-only signatures are not enough */
	Cells__V1__Signed rot2 = CELLS__V1__SIGNED__INIT;
	pol_sign(&rot2, CELLS__V1__SIGNED_KIND__SIGNED_ROOT_ROTATION, tb, tn, n[0], NULL);
	r2.version = 1;
	expect(pol_root_rotate(&r2, &rot2, &out, &err), &err, EKEYREJECTED, "by the current root");
	pol_signed_clear(&rot);
	pol_signed_clear(&rot2);
	free(tb);
	for (int i = 0; i < 3; i++)
		EVP_PKEY_free(k[i]);
	for (int i = 0; i < 2; i++)
		EVP_PKEY_free(n[i]);
}

static void test_command_verify(void **state)
{
	Cells__V1__Command c = CELLS__V1__COMMAND__INIT;
	Cells__V1__LockVp lk = CELLS__V1__LOCK_VP__INIT;
	lk.vp = "work";
	c.command_id = "cmd-1";
	c.device_id = DEV;
	c.expires_at = time(NULL) + 600;
	c.action_case = CELLS__V1__COMMAND__ACTION_LOCK;
	c.lock = &lk;
	uint8_t buf[512];
	size_t n = cells__v1__command__pack(&c, buf);
	Cells__V1__Signed s = CELLS__V1__SIGNED__INIT;
	pol_sign(&s, CELLS__V1__SIGNED_KIND__SIGNED_COMMAND, buf, n, sign_key, NULL);
	int64_t now = time(NULL);
	struct pol_delegation dpol = verified_delegation(sign_key, 1, now - 10, now + 3600);
	struct pol_delegation dcmd = verified_delegation(sign_key, 2, now - 10, now + 3600);
	cells_err_t err = {0};
	Cells__V1__Command *out = NULL;
	expect(pol_command_verify(&s, &dpol, 1, DEV, now, &out, &err), &err, EKEYREJECTED,
	       "not delegated for the command role");
	expect(
	    pol_command_verify(&s, &dcmd, 1, "fedcba9876543210fedcba9876543210", now, &out, &err),
	    &err, ENODEV, "for device");
	expect(pol_command_verify(&s, &dcmd, 1, DEV, now + 601, &out, &err), &err, ETIME,
	       "expired");
	assert_int_equal(pol_command_verify(&s, &dcmd, 1, DEV, now, &out, &err), 0);
	assert_string_equal(out->command_id, "cmd-1");
	cells__v1__command__free_unpacked(out, NULL);
	/* a policy signature is never a command signature (domain separation) */
	s.kind = CELLS__V1__SIGNED_KIND__SIGNED_POLICY;
	struct pol_delegation both = verified_delegation(sign_key, 3, now - 10, now + 3600);
	expect(pol_command_verify(&s, &both, 1, DEV, now, &out, &err), &err, EBADMSG, "expected a");
	pol_signed_clear(&s);
}

static void test_trust_pin_parse(void **state)
{
	cleanup_free char *pem = NULL;
	cells_err_t err;
	struct pol_root r;
	assert_int_equal(pol_key_to_pem(root_key, false, &pem, &err), 0);
	assert_int_equal(pol_root_parse_any((uint8_t *)pem, strlen(pem), &r, &err), 0);
	assert_memory_equal(r.keys[0], root.keys[0], 32);
	assert_int_equal(pol_root_parse_any(root.keys[0], 32, &r, &err), 0);
	uint8_t *tb;
	size_t tn;
	assert_int_equal(pol_root_encode(&root, &tb, &tn, &err), 0);
	assert_int_equal(pol_root_parse_any(tb, tn, &r, &err), 0);
	free(tb);
	assert_int_equal(pol_root_parse_any((const uint8_t *)"junk", 4, &r, &err), -1);
}

/* RFC 9106 section 5.3: Argon2id test vector, through the project's wrapper. */
static void test_argon2id_rfc9106(void **state)
{
	uint8_t pw[32], salt[16], secret[8], ad[12], tag[32];
	memset(pw, 0x01, sizeof pw);
	memset(salt, 0x02, sizeof salt);
	memset(secret, 0x03, sizeof secret);
	memset(ad, 0x04, sizeof ad);
	static const uint8_t want[32] = {0x0d, 0x64, 0x0d, 0xf5, 0x8d, 0x78, 0x76, 0x6c,
					 0x08, 0xc0, 0x37, 0xa3, 0x4a, 0x8b, 0x53, 0xc9,
					 0xd0, 0x1e, 0xf0, 0x45, 0x2d, 0x75, 0xb6, 0x5e,
					 0xb5, 0x25, 0x20, 0xe9, 0x6b, 0x01, 0xe6, 0x59};
	cells_err_t err;
	assert_int_equal(pol_argon2id(3, 32, 4, pw, sizeof pw, salt, sizeof salt, secret,
				      sizeof secret, ad, sizeof ad, tag, sizeof tag, &err),
			 0);
	assert_memory_equal(tag, want, 32);
}

static void test_password_hash(void **state)
{
	struct pol_pw_hash a, b, c;
	cells_err_t err;
	uint8_t pepper[POL_PW_PEPPER_LEN], other[POL_PW_PEPPER_LEN];
	memset(pepper, 0x5a, sizeof pepper);
	memset(other, 0x5b, sizeof other);
	assert_int_equal(
	    pol_pw_hash_new((const uint8_t *)"hunter22", 8, pepper, sizeof pepper, &a, &err), 0);
	assert_int_equal(
	    pol_pw_hash_new((const uint8_t *)"hunter22", 8, pepper, sizeof pepper, &b, &err), 0);
	assert_true(a.m_kib >= 19456 && a.t >= 2 && a.p >= 1); /* OWASP minimum */
	assert_memory_not_equal(a.salt, b.salt, sizeof a.salt);
	assert_memory_not_equal(a.hash, b.hash, sizeof a.hash);
	assert_int_equal(
	    pol_pw_check(&a, (const uint8_t *)"hunter22", 8, pepper, sizeof pepper, &err), 1);
	assert_int_equal(
	    pol_pw_check(&a, (const uint8_t *)"hunter23", 8, pepper, sizeof pepper, &err), 0);
	assert_int_equal(pol_pw_check(&a, (const uint8_t *)"", 0, pepper, sizeof pepper, &err), 0);
	/* the right password without the device secret, or with another one, does not match:
	 * the hash alone (a copied database) cannot be checked offline */
	assert_int_equal(pol_pw_check(&a, (const uint8_t *)"hunter22", 8, NULL, 0, &err), 0);
	assert_int_equal(
	    pol_pw_check(&a, (const uint8_t *)"hunter22", 8, other, sizeof other, &err), 0);
	/* a hash of an older version (no pepper) still verifies without one */
	assert_int_equal(pol_pw_hash_new((const uint8_t *)"hunter22", 8, NULL, 0, &c, &err), 0);
	assert_int_equal(pol_pw_check(&c, (const uint8_t *)"hunter22", 8, NULL, 0, &err), 1);
	a.t = 1000; /* a corrupted row is refused, not run */
	assert_int_equal(
	    pol_pw_check(&a, (const uint8_t *)"hunter22", 8, pepper, sizeof pepper, &err), -1);
}

/* The wait with a fake monotonic clock: counted from the last failure, rounded up, over
 * when the delay has passed; a clock that went back does not shorten it, and the wall
 * clock is not an input at all. */
static void test_throttle_wait(void **state)
{
	const int64_t s = 1000000000;
	assert_int_equal(pol_throttle_retry_in(4, 0), 0);
	assert_int_equal(pol_throttle_retry_in(5, 0), 30);
	assert_int_equal(pol_throttle_retry_in(5, 1), 30);
	assert_int_equal(pol_throttle_retry_in(5, 10 * s), 20);
	assert_int_equal(pol_throttle_retry_in(5, 29 * s + 1), 1);
	assert_int_equal(pol_throttle_retry_in(5, 30 * s), 0);
	assert_int_equal(pol_throttle_retry_in(5, -3600 * s), 30); /* clock went back */
	assert_int_equal(pol_throttle_retry_in(140, 3600 * s), 86400 - 3600);
	assert_int_equal(pol_throttle_retry_in(140, 86400 * s), 0);
	/* a fake clock stepping second by second: the wait never grows, ends exactly */
	uint32_t prev = pol_throttle_retry_in(40, 0);
	assert_int_equal(prev, 60);
	for (int64_t t = 0; t <= 61 * s; t += s / 2) {
		uint32_t w = pol_throttle_retry_in(40, t);
		assert_true(w <= prev);
		assert_true(w == 0 || t < 60 * s);
		prev = w;
	}
	assert_int_equal(prev, 0);
}

static void test_throttle_schedule(void **state)
{
	static const struct {
		uint32_t failures, delay;
	} s[] = {{0, 0},   {1, 0},    {4, 0},		{5, 30},      {6, 0},
		 {9, 0},   {10, 30},  {29, 30},		{30, 30},     {39, 30},
		 {40, 60}, {50, 120}, {139, 15360 * 2}, {140, 86400}, {100000, 86400}};
	for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
		if (pol_throttle_delay_s(s[i].failures) != s[i].delay)
			fail_msg("failures %u: delay %u, want %u", s[i].failures,
				 pol_throttle_delay_s(s[i].failures), s[i].delay);
	/* never decreasing from 10 on */
	for (uint32_t f = 10; f < 200; f++)
		assert_true(pol_throttle_delay_s(f + 1) >= pol_throttle_delay_s(f));
}

/* Ed25519 edge cases (SECURITY.md "Ed25519"). */
static void test_ed25519_edges(void **state)
{
	static const uint8_t msg[] = "cells";
	/* 1. non-canonical S (S + L): OpenSSL refuses it */
	Cells__V1__Signed s = CELLS__V1__SIGNED__INIT;
	pol_sign(&s, CELLS__V1__SIGNED_KIND__SIGNED_POLICY, msg, sizeof msg, sign_key, NULL);
	uint8_t *pub = pub_of(sign_key);
	uint8_t sig[64];
	memcpy(sig, s.signatures[0]->signature.data, 64);
	assert_int_equal(pol_verify_raw(pub, s.kind, msg, sizeof msg, sig, NULL), 0);
	static const uint8_t L[32] = {0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58,	    0xd6,
				      0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, [31] = 0x10};
	unsigned carry = 0;
	for (int i = 0; i < 32; i++) {
		unsigned v = sig[32 + i] + L[i] + carry;
		sig[32 + i] = (uint8_t)v;
		carry = v >> 8;
	}
	assert_int_equal(pol_verify_raw(pub, s.kind, msg, sizeof msg, sig, NULL), -1);
	pol_signed_clear(&s);

	/* 2. small-order public keys: plain OpenSSL accepts (R = identity, S = 0) for any
	 * message; Cells refuses the keys themselves */
	uint8_t ident[32] = {1}, order2[32], zero_sig[64] = {1};
	memset(order2, 0xff, 32);
	order2[0] = 0xec;
	order2[31] = 0x7f;
	const uint8_t *bad[] = {ident, order2};
	for (int i = 0; i < 2; i++) {
		EVP_PKEY *k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, bad[i], 32);
		assert_non_null(k);
		EVP_MD_CTX *c = EVP_MD_CTX_new();
		assert_int_equal(EVP_DigestVerifyInit(c, NULL, NULL, NULL, k), 1);
		int r = EVP_DigestVerify(c, zero_sig, 64, msg, sizeof msg);
		EVP_MD_CTX_free(c);
		EVP_PKEY_free(k);
		/* documents OpenSSL's behaviour; if a future OpenSSL refuses, fine too */
		print_message("OpenSSL verify with small-order key %d: %d\n", i, r);
		assert_true(pol_key_has_small_order(bad[i]));
		cells_err_t err;
		expect(pol_verify_raw(bad[i], CELLS__V1__SIGNED_KIND__SIGNED_POLICY, msg,
				      sizeof msg, zero_sig, &err),
		       &err, EKEYREJECTED, "small-order");
		struct pol_root r2;
		expect(pol_root_parse_any(bad[i], 32, &r2, &err), &err, EKEYREJECTED,
		       "small-order");
	}
	/* the sign bit does not hide them; an ordinary key is not flagged */
	ident[31] |= 0x80;
	assert_true(pol_key_has_small_order(ident));
	assert_false(pol_key_has_small_order(pub));
	/* a delegation of a small-order key is refused */
	Cells__V1__KeyDelegation d = CELLS__V1__KEY_DELEGATION__INIT;
	Cells__V1__KeyRole role = CELLS__V1__KEY_ROLE__KEY_ROLE_POLICY;
	d.public_key.data = order2;
	d.public_key.len = 32;
	d.roles = &role;
	d.n_roles = 1;
	d.expires_at = INT64_MAX;
	uint8_t buf[256];
	size_t n = cells__v1__key_delegation__pack(&d, buf);
	Cells__V1__Signed ds = CELLS__V1__SIGNED__INIT;
	pol_sign(&ds, CELLS__V1__SIGNED_KIND__SIGNED_KEY_DELEGATION, buf, n, root_key, NULL);
	struct pol_delegation out;
	cells_err_t err;
	expect(pol_delegation_verify(&root, &ds, &out, &err), &err, EKEYREJECTED, "small-order");
	pol_signed_clear(&ds);
}

/* The cache of verification contexts never changes a verdict: valid, forged, valid
 * again with one key, and more keys than the cache holds. */
/* The effective policy: local settings only tighten, only what they name, and the
 * input policy is left as it was. */
static void test_effective_merge(void **state)
{
	(void)state;
	Cells__V1__Policy pol = CELLS__V1__POLICY__INIT;
	Cells__V1__VpRule r1 = CELLS__V1__VP_RULE__INIT, r2 = CELLS__V1__VP_RULE__INIT;
	Cells__V1__DeviceRule cam = CELLS__V1__DEVICE_RULE__INIT,
			      gps = CELLS__V1__DEVICE_RULE__INIT;
	Cells__V1__DeviceRule *d1[2] = {&cam, &gps};
	Cells__V1__VpRule *rs[2] = {&r1, &r2};
	cam.device_class = "camera";
	cam.mode = CELLS__V1__ACCESS_MODE__ACCESS_EXCLUSIVE;
	gps.device_class = "gps";
	gps.mode = CELLS__V1__ACCESS_MODE__ACCESS_NO_ACCESS;
	r1.vp = "work";
	r1.net = CELLS__V1__NET_MODE__NET_NAT;
	r1.devices = d1;
	r1.n_devices = 2;
	r2.vp = "personal";
	r2.net = CELLS__V1__NET_MODE__NET_NAT;
	pol.version = 7;
	pol.vps = rs;
	pol.n_vps = 2;
	const struct pol_local l[] = {
	    {"work", "device.camera", "shared"},	/* tightens */
	    {"work", "device.gps", "exclusive"},	/* would loosen: ignored */
	    {"work", "net", "none"},			/* tightens */
	    {"personal", "device.camera", "no-access"}, /* a class personal lacks */
	    {"work", "colour", "blue"},			/* an unknown key */
	    {"work", "net", "sideways"},		/* an unparsable value */
	    {"ghost", "net", "none"},			/* a VP the policy lacks */
	    {NULL, "net", "none"},
	};
	cells_err_t err;
	struct pol_model *m = malloc(sizeof *m), *e = malloc(sizeof *e);
	assert_non_null(m);
	assert_non_null(e);
	assert_int_equal(pol_model_from(&pol, m, &err), 0);
	*e = *m;
	pol_model_tighten(e, l, CELLS_ARRAY_SIZE(l));
	assert_int_equal(e->version, 7);
	assert_int_equal(e->nvps, 2);
	assert_int_equal(e->vps[0].net, CELLS__V1__NET_MODE__NET_NONE);
	assert_int_equal(pol_model_device_mode(&e->vps[0], "camera"),
			 CELLS__V1__ACCESS_MODE__ACCESS_SHARED);
	assert_int_equal(pol_model_device_mode(&e->vps[0], "gps"),
			 CELLS__V1__ACCESS_MODE__ACCESS_NO_ACCESS);
	assert_int_equal(e->vps[1].net, CELLS__V1__NET_MODE__NET_NAT);
	assert_int_equal(e->vps[1].ndevices, 0);
	/* the model it started from is untouched; the same settings again change nothing */
	assert_int_equal(m->vps[0].net, CELLS__V1__NET_MODE__NET_NAT);
	assert_int_equal(pol_model_device_mode(&m->vps[0], "camera"),
			 CELLS__V1__ACCESS_MODE__ACCESS_EXCLUSIVE);
	struct pol_model *again = malloc(sizeof *again);
	assert_non_null(again);
	*again = *e;
	pol_model_tighten(again, l, CELLS_ARRAY_SIZE(l));
	assert_memory_equal(again, e, sizeof *e);
	/* the model renders as the message does */
	json_object *jm = pol_model_to_json(m), *jp = pol_policy_to_json(&pol);
	assert_string_equal(json_object_to_json_string(jm), json_object_to_json_string(jp));
	json_object_put(jm);
	json_object_put(jp);
	/* a policy that does not fit the model is refused with a reason */
	r1.vp = "a-name-that-is-longer-than-thirty-two-bytes";
	assert_int_equal(pol_model_from(&pol, m, &err), -1);
	assert_non_null(strstr(err.msg, "VP name"));
	free(again);
	free(m);
	free(e);
}

static void test_verify_cache(void **state)
{
	static const uint8_t msg[] = "cache";
	EVP_PKEY *k[6];
	uint8_t pub[6][32], sig[6][64];
	for (int i = 0; i < 6; i++) {
		Cells__V1__Signed s = CELLS__V1__SIGNED__INIT;
		k[i] = pol_key_generate(NULL);
		pol_key_raw_public(k[i], pub[i], NULL);
		pol_sign(&s, CELLS__V1__SIGNED_KIND__SIGNED_COMMAND, msg, sizeof msg, k[i], NULL);
		memcpy(sig[i], s.signatures[0]->signature.data, 64);
		pol_signed_clear(&s);
	}
	for (int round = 0; round < 3; round++)
		for (int i = 0; i < 6; i++) {
			assert_int_equal(pol_verify_raw(pub[i],
							CELLS__V1__SIGNED_KIND__SIGNED_COMMAND, msg,
							sizeof msg, sig[i], NULL),
					 0);
			sig[i][5] ^= 1;
			assert_int_equal(pol_verify_raw(pub[i],
							CELLS__V1__SIGNED_KIND__SIGNED_COMMAND, msg,
							sizeof msg, sig[i], NULL),
					 -1);
			sig[i][5] ^= 1;
			/* the other key's signature, and the wrong domain */
			assert_int_equal(pol_verify_raw(pub[i],
							CELLS__V1__SIGNED_KIND__SIGNED_COMMAND, msg,
							sizeof msg, sig[(i + 1) % 6], NULL),
					 -1);
			assert_int_equal(pol_verify_raw(pub[i],
							CELLS__V1__SIGNED_KIND__SIGNED_POLICY, msg,
							sizeof msg, sig[i], NULL),
					 -1);
		}
	pol_verify_cache_clear();
	for (int i = 0; i < 6; i++)
		EVP_PKEY_free(k[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_accepts_valid),
	    cmocka_unit_test(test_forged_signature),
	    cmocka_unit_test(test_unknown_key),
	    cmocka_unit_test(test_expired_delegation),
	    cmocka_unit_test(test_wrong_role),
	    cmocka_unit_test(test_rollback_and_same_version),
	    cmocka_unit_test(test_other_device_and_expired),
	    cmocka_unit_test(test_truncated_and_oversized),
	    cmocka_unit_test(test_conflicting_exclusive),
	    cmocka_unit_test(test_validation_rules),
	    cmocka_unit_test(test_json_roundtrip),
	    cmocka_unit_test(test_image_ref),
	    cmocka_unit_test(test_delegation_rules),
	    cmocka_unit_test(test_threshold_and_rotation),
	    cmocka_unit_test(test_command_verify),
	    cmocka_unit_test(test_trust_pin_parse),
	    cmocka_unit_test(test_argon2id_rfc9106),
	    cmocka_unit_test(test_password_hash),
	    cmocka_unit_test(test_throttle_schedule),
	    cmocka_unit_test(test_throttle_wait),
	    cmocka_unit_test(test_ed25519_edges),
	    cmocka_unit_test(test_verify_cache),
	    cmocka_unit_test(test_effective_merge),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
