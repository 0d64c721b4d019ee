/* test_policy_image.c - libcells-policy: signed image manifests (pol_image.h): a good
 * bundle (delegation for the images role carried in it), a bare Signed manifest under
 * held delegations, a key without the images role, a forged signature, an expired
 * manifest, rollback and a same-version re-offer, every invalid field, the device's size
 * limit, and the decoder's limits and kinds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pol_image.h"
#include "pol_sig.h"
#include "pol_trust.h"
#include "wire.h"

static EVP_PKEY *root, *sk;
static struct pol_trust trust0; /* the pinned root only */
static int64_t now;

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

static Cells__V1__Signed *delegation(Cells__V1__KeyRole role, int64_t expires)
{
	Cells__V1__KeyDelegation d = CELLS__V1__KEY_DELEGATION__INIT;
	uint8_t p[32];
	assert_int_equal(pol_key_raw_public(sk, p, NULL), 0);
	d.public_key.data = p;
	d.public_key.len = 32;
	d.roles = &role;
	d.n_roles = 1;
	d.not_before = now - 60;
	d.expires_at = expires;
	d.serial = 1;
	uint8_t buf[1024];
	size_t n = cells__v1__key_delegation__pack(&d, buf);
	Cells__V1__Signed *s = new_signed();
	assert_int_equal(
	    pol_sign(s, CELLS__V1__SIGNED_KIND__SIGNED_KEY_DELEGATION, buf, n, root, NULL), 0);
	return s;
}

struct mf {
	const char *name, *fs;
	uint64_t version, size;
	size_t shalen;
	int64_t created, expires;
};

static struct mf good(void)
{
	return (struct mf){"work-base", "erofs", 3, 4096, 32, now - 10, now + 3600};
}

static Cells__V1__Signed *manifest(struct mf f, EVP_PKEY *by)
{
	Cells__V1__ImageManifest m = CELLS__V1__IMAGE_MANIFEST__INIT;
	uint8_t sha[40];
	memset(sha, 0xab, sizeof sha);
	m.name = (char *)f.name;
	m.version = f.version;
	m.size = f.size;
	m.sha256.data = sha;
	m.sha256.len = f.shalen;
	m.created = f.created;
	m.expires_at = f.expires;
	m.fs_type = (char *)f.fs;
	uint8_t buf[1024];
	size_t n = cells__v1__image_manifest__pack(&m, buf);
	Cells__V1__Signed *s = new_signed();
	assert_int_equal(
	    pol_sign(s, CELLS__V1__SIGNED_KIND__SIGNED_IMAGE_MANIFEST, buf, n, by, NULL), 0);
	return s;
}

/* Pack manifest + delegation into an ImageBundle (out: malloc'd) */
static uint8_t *bundle(Cells__V1__Signed *m, Cells__V1__Signed *del, size_t *n)
{
	Cells__V1__ImageBundle b = CELLS__V1__IMAGE_BUNDLE__INIT;
	b.manifest = m;
	b.delegations = &del;
	b.n_delegations = del ? 1 : 0;
	*n = cells__v1__image_bundle__get_packed_size(&b);
	uint8_t *out = malloc(*n);
	cells__v1__image_bundle__pack(&b, out);
	return out;
}

static uint64_t held_version, held_size;

static void highest(void *ctx, const char *name, uint64_t *v, uint64_t *size, uint8_t sha[32])
{
	(void)ctx;
	if (!strcmp(name, "work-base")) {
		*v = held_version;
		*size = held_size;
		memset(sha, 0xab, 32);
	}
}

static struct pol_image_limits lim = {.max_size = 1 << 20, .highest = highest};

/* Verify f signed by sk, with a delegation of role carried in a bundle. */
static int check(struct mf f, Cells__V1__KeyRole role, struct pol_image_manifest *out,
		 cells_err_t *err)
{
	Cells__V1__Signed *m = manifest(f, sk), *d = delegation(role, now + 3600);
	size_t n;
	uint8_t *b = bundle(m, d, &n);
	struct pol_image_bundle ib;
	int r = pol_image_bundle_decode(b, n, &ib, err);
	if (r == 0) {
		r = pol_image_bundle_verify(&trust0, &ib, now, &lim, out, NULL, err);
		pol_image_bundle_free(&ib);
	}
	free(b);
	signed_free(m);
	signed_free(d);
	return r;
}

static void test_good_bundle(void **state)
{
	(void)state;
	struct pol_image_manifest out;
	cells_err_t err = {0};
	held_version = 0;
	assert_int_equal(check(good(), CELLS__V1__KEY_ROLE__KEY_ROLE_IMAGES, &out, &err), 0);
	assert_string_equal(out.name, "work-base");
	assert_int_equal(out.version, 3);
	assert_int_equal(out.size, 4096);
	assert_string_equal(out.fs_type, "erofs");
	assert_int_equal(out.sha256[31], 0xab);
	char hex[65];
	pol_image_hex(out.sha256, hex);
	assert_int_equal(strlen(hex), 64);
	assert_int_equal(hex[0], 'a');
}

static void test_bare_signed_held_trust(void **state)
{
	(void)state;
	Cells__V1__Signed *m = manifest(good(), sk),
			  *d = delegation(CELLS__V1__KEY_ROLE__KEY_ROLE_IMAGES, now + 3600);
	struct pol_delegation dl;
	cells_err_t err = {0};
	assert_int_equal(pol_delegation_verify(&trust0.root, d, &dl, &err), 0);
	uint8_t buf[4096];
	size_t n = cells__v1__signed__pack(m, buf);
	struct pol_image_bundle ib;
	assert_int_equal(pol_image_bundle_decode(buf, n, &ib, &err), 0);
	assert_ptr_equal(ib.manifest, ib.pb);
	struct pol_image_manifest out;
	held_version = 0;
	assert_int_equal(pol_image_manifest_verify(ib.manifest, &dl, 1, now, &lim, &out, &err), 0);
	/* no delegation held: unknown key */
	assert_int_equal(pol_image_manifest_verify(ib.manifest, NULL, 0, now, &lim, &out, &err),
			 -1);
	assert_int_equal(err.code, EKEYREJECTED);
	pol_image_bundle_free(&ib);
	signed_free(m);
	signed_free(d);
}

static void test_wrong_role(void **state)
{
	(void)state;
	struct pol_image_manifest out;
	cells_err_t err = {0};
	held_version = 0;
	assert_int_equal(check(good(), CELLS__V1__KEY_ROLE__KEY_ROLE_POLICY, &out, &err), -1);
	assert_int_equal(err.code, EKEYREJECTED);
	assert_non_null(strstr(err.msg, "not delegated"));
}

static void test_forged(void **state)
{
	(void)state;
	Cells__V1__Signed *m = manifest(good(), sk),
			  *d = delegation(CELLS__V1__KEY_ROLE__KEY_ROLE_IMAGES, now + 3600);
	m->payload.data[m->payload.len - 1] ^= 1; /* flip a byte of the signed payload */
	size_t n;
	uint8_t *b = bundle(m, d, &n);
	struct pol_image_bundle ib;
	cells_err_t err = {0};
	struct pol_image_manifest out;
	assert_int_equal(pol_image_bundle_decode(b, n, &ib, &err), 0);
	assert_int_equal(pol_image_bundle_verify(&trust0, &ib, now, &lim, &out, NULL, &err), -1);
	assert_int_equal(err.code, EKEYREJECTED);
	assert_int_equal(out.name[0], 0); /* nothing parsed */
	pol_image_bundle_free(&ib);
	free(b);
	signed_free(m);
	signed_free(d);
}

static void test_expired(void **state)
{
	(void)state;
	struct pol_image_manifest out;
	cells_err_t err = {0};
	struct mf f = good();
	f.created = now - 100;
	f.expires = now - 1;
	held_version = 0;
	assert_int_equal(check(f, CELLS__V1__KEY_ROLE__KEY_ROLE_IMAGES, &out, &err), -1);
	assert_int_equal(err.code, EKEYEXPIRED);
	f.expires = 0;
	assert_int_equal(check(f, CELLS__V1__KEY_ROLE__KEY_ROLE_IMAGES, &out, &err), -1);
	assert_int_equal(err.code, EINVAL);
}

static void test_rollback(void **state)
{
	(void)state;
	struct pol_image_manifest out;
	cells_err_t err = {0};
	held_version = 4;
	held_size = 4096;
	assert_int_equal(check(good(), CELLS__V1__KEY_ROLE__KEY_ROLE_IMAGES, &out, &err), -1);
	assert_int_equal(err.code, ESTALE);
	assert_non_null(strstr(err.msg, "rollback"));
	held_version = 3; /* the same image again: a re-offer */
	assert_int_equal(check(good(), CELLS__V1__KEY_ROLE__KEY_ROLE_IMAGES, &out, &err), 1);
	held_size = 8192; /* same version, other contents */
	assert_int_equal(check(good(), CELLS__V1__KEY_ROLE__KEY_ROLE_IMAGES, &out, &err), -1);
	assert_int_equal(err.code, ESTALE);
	held_version = 2;
	assert_int_equal(check(good(), CELLS__V1__KEY_ROLE__KEY_ROLE_IMAGES, &out, &err), 0);
	held_version = 0;
}

static void test_invalid_fields(void **state)
{
	(void)state;
	struct pol_image_manifest out;
	cells_err_t err = {0};
	static const char *const bad_names[] = {
	    "", "Work", "-x", ".x", "a/b", "a b", "abcdefghijklmnopqrstuvwxyz0123456"};
	held_version = 0;
	for (size_t i = 0; i < sizeof bad_names / sizeof *bad_names; i++) {
		struct mf f = good();
		f.name = bad_names[i];
		assert_int_equal(check(f, CELLS__V1__KEY_ROLE__KEY_ROLE_IMAGES, &out, &err), -1);
		assert_int_equal(err.code, EINVAL);
	}
	struct mf f = good();
	f.name = "a.b_c-9";
	assert_int_equal(check(f, CELLS__V1__KEY_ROLE__KEY_ROLE_IMAGES, &out, &err), 0);
	f = good();
	f.version = 0;
	assert_int_equal(check(f, CELLS__V1__KEY_ROLE__KEY_ROLE_IMAGES, &out, &err), -1);
	assert_int_equal(err.code, EINVAL);
	f = good();
	f.size = 0;
	assert_int_equal(check(f, CELLS__V1__KEY_ROLE__KEY_ROLE_IMAGES, &out, &err), -1);
	assert_int_equal(err.code, EINVAL);
	f = good();
	f.shalen = 31;
	assert_int_equal(check(f, CELLS__V1__KEY_ROLE__KEY_ROLE_IMAGES, &out, &err), -1);
	assert_int_equal(err.code, EINVAL);
	f = good();
	f.fs = "ext4";
	assert_int_equal(check(f, CELLS__V1__KEY_ROLE__KEY_ROLE_IMAGES, &out, &err), -1);
	assert_int_equal(err.code, EINVAL);
	f = good();
	f.fs = "squashfs";
	assert_int_equal(check(f, CELLS__V1__KEY_ROLE__KEY_ROLE_IMAGES, &out, &err), 0);
	f = good();
	f.size = (1 << 20) + 1; /* over the device's limit */
	assert_int_equal(check(f, CELLS__V1__KEY_ROLE__KEY_ROLE_IMAGES, &out, &err), -1);
	assert_int_equal(err.code, EMSGSIZE);
}

static void test_decode(void **state)
{
	(void)state;
	struct pol_image_bundle ib;
	cells_err_t err = {0};
	static uint8_t big[POL_MAX_IMAGE_BUNDLE + 1];
	assert_int_equal(pol_image_bundle_decode(big, sizeof big, &ib, &err), -1);
	assert_int_equal(err.code, EMSGSIZE);
	assert_int_equal(pol_image_bundle_decode(big, 0, &ib, &err), -1);
	assert_int_equal(err.code, EBADMSG);
	assert_int_equal(pol_image_bundle_decode((const uint8_t *)"\xff\xff\xff", 3, &ib, &err),
			 -1);
	/* a Signed of another kind */
	Cells__V1__Signed *d = delegation(CELLS__V1__KEY_ROLE__KEY_ROLE_IMAGES, now + 3600);
	uint8_t buf[4096];
	size_t n = cells__v1__signed__pack(d, buf);
	assert_int_equal(pol_image_bundle_decode(buf, n, &ib, &err), -1);
	assert_int_equal(err.code, EBADMSG);
	/* a bundle whose manifest slot holds a delegation */
	size_t bn;
	uint8_t *b = bundle(d, d, &bn);
	assert_int_equal(pol_image_bundle_decode(b, bn, &ib, &err), -1);
	assert_int_equal(err.code, EBADMSG);
	free(b);
	/* too many delegations */
	Cells__V1__Signed *m = manifest(good(), sk);
	Cells__V1__Signed *many[POL_MAX_IMAGE_BUNDLE_DELEGATIONS + 1];
	for (size_t i = 0; i < POL_MAX_IMAGE_BUNDLE_DELEGATIONS + 1; i++)
		many[i] = d;
	Cells__V1__ImageBundle mb = CELLS__V1__IMAGE_BUNDLE__INIT;
	mb.manifest = m;
	mb.delegations = many;
	mb.n_delegations = POL_MAX_IMAGE_BUNDLE_DELEGATIONS + 1;
	static uint8_t mbuf[32768];
	n = cells__v1__image_bundle__pack(&mb, mbuf);
	assert_int_equal(pol_image_bundle_decode(mbuf, n, &ib, &err), -1);
	assert_int_equal(err.code, EBADMSG);
	signed_free(m);
	signed_free(d);
}

int main(void)
{
	now = time(NULL);
	root = pol_key_generate(NULL);
	sk = pol_key_generate(NULL);
	uint8_t p[32];
	pol_key_raw_public(root, p, NULL);
	pol_root_from_key(p, &trust0.root);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good_bundle),	   cmocka_unit_test(test_bare_signed_held_trust),
	    cmocka_unit_test(test_wrong_role),	   cmocka_unit_test(test_forged),
	    cmocka_unit_test(test_expired),	   cmocka_unit_test(test_rollback),
	    cmocka_unit_test(test_invalid_fields), cmocka_unit_test(test_decode),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);
	EVP_PKEY_free(root);
	EVP_PKEY_free(sk);
	return r;
}
