/* image_forge - test helper: image bundles (ImageBundle) as `cells-mdm image sign`
 * makes them, and the ones an honest MDM never makes, until the server side lands.
 *   image_forge MDM_DIR MODE IMAGE NAME VERSION FSTYPE OUT
 * Signs with MDM_DIR/images.key (made on first use), delegated by MDM_DIR/root.key for
 * KEY_ROLE_IMAGES; the bundle carries that delegation. MODE: good; wrong-role (a fresh
 * key delegated for the policy role only); expired (expired an hour ago); size+N (the
 * manifest claims N bytes more than IMAGE has); sha-flip (the manifest's SHA-256 with
 * one bit flipped); manifest (OUT gets the bare Signed manifest, as Envelope.image);
 * trust (OUT gets a TrustUpdate carrying the images key's delegation).
 *   image_forge --fuzz-seeds DIR    seed corpus of fuzz_image_bundle (fixed keys) */
#include "../fuzz/fuzz_policy_keys.h"
#include "cleanup.h"
#include "pol_image.h"
#include "pol_sig.h"
#include "pol_trust.h"
#include "util.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static EVP_PKEY *load(const char *dir, const char *name, bool create)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	uint8_t *pem;
	size_t n;
	if (cells_read_file(p, 16384, &pem, &n, NULL) < 0) {
		if (!create)
			return NULL;
		EVP_PKEY *k = pol_key_generate(NULL);
		FILE *f = fopen(p, "we");
		if (!k || !f || !PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL))
			return NULL;
		fclose(f);
		return k;
	}
	EVP_PKEY *k = pol_key_from_pem(pem, n, true, NULL);
	free(pem);
	return k;
}

static Cells__V1__Signed *manifest(EVP_PKEY *k, const char *name, uint64_t version, uint64_t size,
				   const uint8_t sha[32], int64_t created, int64_t expires,
				   const char *fs)
{
	Cells__V1__ImageManifest m = CELLS__V1__IMAGE_MANIFEST__INIT;
	m.name = (char *)name;
	m.version = version;
	m.size = size;
	m.sha256.data = (uint8_t *)sha;
	m.sha256.len = 32;
	m.created = created;
	m.expires_at = expires;
	m.fs_type = (char *)fs;
	uint8_t buf[1024];
	size_t n = cells__v1__image_manifest__pack(&m, buf);
	Cells__V1__Signed *s = calloc(1, sizeof *s);
	cells__v1__signed__init(s);
	if (pol_sign(s, CELLS__V1__SIGNED_KIND__SIGNED_IMAGE_MANIFEST, buf, n, k, NULL) < 0)
		exit(1);
	return s;
}

static void put_bundle(const char *path, Cells__V1__Signed *m, Cells__V1__Signed *del)
{
	Cells__V1__ImageBundle b = CELLS__V1__IMAGE_BUNDLE__INIT;
	b.manifest = m;
	b.delegations = &del;
	b.n_delegations = del ? 1 : 0;
	static uint8_t out[65536];
	size_t n = cells__v1__image_bundle__pack(&b, out);
	if (cells_write_file_atomic(path, out, n, 0644, NULL) < 0)
		exit(1);
}

static int fuzz_seeds(const char *dir)
{
	EVP_PKEY *root = fuzz_key(0x11), *sk = fuzz_key(0x22);
	uint8_t sha[32];
	memset(sha, 0x5a, sizeof sha);
	char p[4096];
	Cells__V1__Signed *del =
	    fuzz_delegation(root, sk, CELLS__V1__KEY_ROLE__KEY_ROLE_IMAGES, 0, FUZZ_NOW + 3600);
	Cells__V1__Signed *pdel =
	    fuzz_delegation(root, sk, CELLS__V1__KEY_ROLE__KEY_ROLE_POLICY, 0, FUZZ_NOW + 3600);
	if (!del || !pdel)
		exit(1);
	Cells__V1__Signed *m =
	    manifest(sk, "work-base", 3, 1 << 20, sha, FUZZ_NOW - 60, FUZZ_NOW + 3600, "erofs");
	snprintf(p, sizeof p, "%s/bundle.bin", dir);
	put_bundle(p, m, del);
	snprintf(p, sizeof p, "%s/wrong_role.bin", dir);
	put_bundle(p, m, pdel);
	snprintf(p, sizeof p, "%s/bare_manifest.bin", dir);
	uint8_t buf[4096];
	size_t n = cells__v1__signed__pack(m, buf);
	if (cells_write_file_atomic(p, buf, n, 0644, NULL) < 0)
		return 1;
	Cells__V1__Signed *old =
	    manifest(sk, "work-base", 1, 4096, sha, FUZZ_NOW - 60, FUZZ_NOW + 3600, "squashfs");
	snprintf(p, sizeof p, "%s/rollback.bin", dir);
	put_bundle(p, old, del);
	Cells__V1__Signed *exp =
	    manifest(sk, "work-base", 9, 4096, sha, FUZZ_NOW - 600, FUZZ_NOW - 60, "erofs");
	snprintf(p, sizeof p, "%s/expired.bin", dir);
	put_bundle(p, exp, del);
	Cells__V1__Signed *big = manifest(sk, "huge", 9, (uint64_t)1 << 40, sha, FUZZ_NOW - 60,
					  FUZZ_NOW + 3600, "erofs");
	snprintf(p, sizeof p, "%s/oversize.bin", dir);
	put_bundle(p, big, del);
	/* a delegation in the manifest slot */
	snprintf(p, sizeof p, "%s/wrongkind.bin", dir);
	put_bundle(p, del, del);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--fuzz-seeds"))
		return fuzz_seeds(argv[2]);
	if (argc != 8) {
		fprintf(stderr, "usage: image_forge MDM_DIR MODE IMAGE NAME VERSION FSTYPE OUT\n");
		return 2;
	}
	const char *dir = argv[1], *mode = argv[2], *img = argv[3], *name = argv[4];
	uint64_t version = strtoull(argv[5], NULL, 10);
	EVP_PKEY *root = load(dir, "root.key", false), *ik = load(dir, "images.key", true);
	if (!root || !ik) {
		fprintf(stderr, "image_forge: keys missing in %s\n", dir);
		return 1;
	}
	/* hash the image */
	FILE *f = fopen(img, "re");
	if (!f) {
		fprintf(stderr, "image_forge: %s: %s\n", img, strerror(errno));
		return 1;
	}
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	static uint8_t buf[1 << 16];
	size_t n;
	uint64_t size = 0;
	while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
		EVP_DigestUpdate(c, buf, n);
		size += n;
	}
	fclose(f);
	uint8_t sha[32];
	EVP_DigestFinal_ex(c, sha, NULL);
	EVP_MD_CTX_free(c);
	int64_t now = time(NULL), created = now - 60, expires = now + 86400;
	EVP_PKEY *signer = ik;
	Cells__V1__KeyRole role = CELLS__V1__KEY_ROLE__KEY_ROLE_IMAGES;
	if (!strcmp(mode, "wrong-role")) {
		signer = pol_key_generate(NULL);
		role = CELLS__V1__KEY_ROLE__KEY_ROLE_POLICY;
	} else if (!strcmp(mode, "expired")) {
		created = now - 7200;
		expires = now - 3600;
	} else if (!strncmp(mode, "size+", 5)) {
		size += strtoull(mode + 5, NULL, 10);
	} else if (!strcmp(mode, "sha-flip")) {
		sha[0] ^= 1;
	} else if (strcmp(mode, "good") && strcmp(mode, "manifest") && strcmp(mode, "trust")) {
		fprintf(stderr, "image_forge: unknown mode %s\n", mode);
		return 2;
	}
	Cells__V1__Signed *del = fuzz_delegation(root, signer, role, now - 60, now + 30 * 86400);
	if (!del)
		return 1;
	Cells__V1__Signed *m =
	    manifest(signer, name, version, size, sha, created, expires, argv[6]);
	if (!strcmp(mode, "trust")) {
		Cells__V1__TrustUpdate u = CELLS__V1__TRUST_UPDATE__INIT;
		u.delegations = &del;
		u.n_delegations = 1;
		n = cells__v1__trust_update__pack(&u, buf);
		return cells_write_file_atomic(argv[7], buf, n, 0644, NULL) < 0;
	}
	if (!strcmp(mode, "manifest")) {
		n = cells__v1__signed__pack(m, buf);
		return cells_write_file_atomic(argv[7], buf, n, 0644, NULL) < 0;
	}
	put_bundle(argv[7], m, del);
	return 0;
}
