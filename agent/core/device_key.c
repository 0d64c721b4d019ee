#include "device_key.h"
#include "cleanup.h"
#include "cleanup_ssl.h"
#include "pol_sig.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

void device_id_of(const unsigned char pub[32], char id[DEVICE_ID_LEN + 1])
{
	uint8_t h[POL_KEYID_LEN];
	pol_key_id(pub, h);
	cells_hex(h, DEVICE_ID_LEN / 2, id);
}

/* Load the Ed25519 private key at path, or create it (0600) when absent. */
static EVP_PKEY *key_load_or_create(const char *path, cells_err_t *err)
{
	cleanup_free uint8_t *pem = NULL;
	size_t n;
	cleanup_pkey EVP_PKEY *k = NULL;
	if (cells_read_file(path, 16384, &pem, &n, err) == 0) {
		k = pol_key_from_pem(pem, n, true, err);
		OPENSSL_cleanse(pem, n);
		if (!k)
			cells_err_prefix(err, "%s", path);
		return steal_pointer(&k);
	}
	if (!err || err->code != ENOENT)
		return NULL;
	k = pol_key_generate(err);
	if (!k)
		return NULL;
	cleanup_free char *out = NULL;
	if (pol_key_to_pem(k, true, &out, err) < 0)
		return NULL;
	int r = cells_write_file_atomic(path, out, strlen(out), 0600, err);
	OPENSSL_cleanse(out, strlen(out));
	return r < 0 ? NULL : steal_pointer(&k);
}

int device_key_load(const char *state_dir, EVP_PKEY **key, char id[DEVICE_ID_LEN + 1],
		    cells_err_t *err)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/device.key", state_dir);
	cleanup_pkey EVP_PKEY *k = key_load_or_create(path, err);
	if (!k)
		return -1;
	uint8_t pub[POL_PUBKEY_LEN];
	if (pol_key_raw_public(k, pub, err) < 0)
		return -1;
	device_id_of(pub, id);
	if (key)
		*key = steal_pointer(&k);
	return 0;
}

int device_tls_key_load(const char *state_dir, EVP_PKEY **key, cells_err_t *err)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/device-tls.key", state_dir);
	*key = key_load_or_create(path, err);
	return *key ? 0 : -1;
}

int device_tls_key_store(const char *state_dir, EVP_PKEY *key, cells_err_t *err)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/device-tls.key", state_dir);
	cleanup_free char *out = NULL;
	if (pol_key_to_pem(key, true, &out, err) < 0)
		return -1;
	int r = cells_write_file_atomic(path, out, strlen(out), 0600, err);
	OPENSSL_cleanse(out, strlen(out));
	return r;
}

int trust_root_digest(const Cells__V1__TrustRoot *root, uint8_t out[ROOT_DIGEST_LEN],
		      cells_err_t *err)
{
	if (!root || !root->n_root_keys)
		return cells_err_set(err, EBADMSG, "trust root without keys");
	if (root->n_root_keys > 64)
		return cells_err_set(err, EMSGSIZE, "trust root with too many keys");
	uint8_t buf[sizeof ROOT_DIGEST_DOMAIN + 8 + 64 * POL_PUBKEY_LEN];
	size_t len = sizeof ROOT_DIGEST_DOMAIN; /* the domain with its NUL */
	memcpy(buf, ROOT_DIGEST_DOMAIN, len);
	uint32_t t = root->threshold, n = (uint32_t)root->n_root_keys;
	for (int i = 0; i < 4; i++) {
		buf[len + (size_t)i] = (uint8_t)(t >> (24 - 8 * i));
		buf[len + 4 + (size_t)i] = (uint8_t)(n >> (24 - 8 * i));
	}
	len += 8;
	for (size_t i = 0; i < root->n_root_keys; i++) {
		if (root->root_keys[i].len != POL_PUBKEY_LEN)
			return cells_err_set(err, EBADMSG, "trust root key %zu is not 32 bytes", i);
		memcpy(buf + len, root->root_keys[i].data, POL_PUBKEY_LEN);
		len += POL_PUBKEY_LEN;
	}
	SHA256(buf, len, out);
	return 0;
}

int enroll_token_digest(const char *token, uint8_t digest[ROOT_DIGEST_LEN], cells_err_t *err)
{
	const char *dot = token ? strrchr(token, '.') : NULL;
	if (!dot || dot == token || strlen(dot + 1) != 2 * ROOT_DIGEST_LEN)
		return cells_err_set(err, EINVAL,
				     "the enrollment token carries no trust-root digest "
				     "(SECRET.ROOTDIGEST, from `cells-mdm enroll-token`)");
	for (size_t i = 0; i < ROOT_DIGEST_LEN; i++) {
		int v = 0;
		for (int k = 0; k < 2; k++) {
			char ch = dot[1 + 2 * i + (size_t)k];
			int x = ch >= '0' && ch <= '9'	 ? ch - '0'
				: ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
							 : -1;
			if (x < 0)
				return cells_err_set(err, EINVAL,
						     "the enrollment token's trust-root digest is "
						     "not 64 lowercase hex characters");
			v = v * 16 + x;
		}
		digest[i] = (uint8_t)v;
	}
	return 0;
}

int device_enroll_binding(EVP_PKEY *identity, const uint8_t *csr_der, size_t csr_len,
			  Cells__V1__Signed **out, cells_err_t *err)
{
	uint8_t pub[POL_PUBKEY_LEN], h[SHA256_DIGEST_LENGTH];
	if (pol_key_raw_public(identity, pub, err) < 0)
		return -1;
	SHA256(csr_der, csr_len, h);
	Cells__V1__EnrollBinding b = CELLS__V1__ENROLL_BINDING__INIT;
	b.identity_key.data = pub;
	b.identity_key.len = sizeof pub;
	b.csr_sha256.data = h;
	b.csr_sha256.len = sizeof h;
	b.at = time(NULL);
	uint8_t buf[CELLS_MAX_ENROLL_BINDING];
	size_t n = cells__v1__enroll_binding__get_packed_size(&b);
	if (n > sizeof buf)
		return cells_err_set(err, EMSGSIZE, "enroll binding over the limit");
	cells__v1__enroll_binding__pack(&b, buf);
	cleanup_free uint8_t *packed = NULL;
	size_t pn;
	if (pol_sign_packed(CELLS__V1__SIGNED_KIND__SIGNED_ENROLL_BINDING, buf, n, identity,
			    &packed, &pn, err) < 0)
		return -1;
	return cells_signed_decode(packed, pn, out, err);
}
