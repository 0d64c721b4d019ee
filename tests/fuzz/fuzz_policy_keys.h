/* fuzz_policy_keys.h - fixed keys of the policy fuzz targets, so that the seed corpus
 * (made by `policy_forge --fuzz-seeds DIR`) carries signatures that verify and the
 * fuzzer reaches the code behind them. Test code only. */
#ifndef CELLS_FUZZ_POLICY_KEYS_H
#define CELLS_FUZZ_POLICY_KEYS_H

#include "pol_sig.h"
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_DEVICE_ID "0123456789abcdef0123456789abcdef"
#define FUZZ_NOW 1800000000LL

/* seed 0x11: root, 0x22: delegated signing key, 0x33: next root */
static inline EVP_PKEY *fuzz_key(unsigned char seed)
{
	unsigned char raw[32];
	memset(raw, seed, sizeof raw);
	return EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, raw, sizeof raw);
}

/* A KeyDelegation (serial 1) of key for role, valid from not_before to expires_at,
 * signed by root; NULL when signing fails. */
static inline Cells__V1__Signed *fuzz_delegation(EVP_PKEY *root, EVP_PKEY *key,
						 Cells__V1__KeyRole role, int64_t not_before,
						 int64_t expires_at)
{
	uint8_t pub[32], buf[1024];
	if (pol_key_raw_public(key, pub, NULL) < 0)
		return NULL;
	Cells__V1__KeyDelegation d = CELLS__V1__KEY_DELEGATION__INIT;
	d.public_key.data = pub;
	d.public_key.len = sizeof pub;
	d.roles = &role;
	d.n_roles = 1;
	d.not_before = not_before;
	d.expires_at = expires_at;
	d.serial = 1;
	size_t n = cells__v1__key_delegation__pack(&d, buf);
	Cells__V1__Signed *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	cells__v1__signed__init(s);
	if (pol_sign(s, CELLS__V1__SIGNED_KIND__SIGNED_KEY_DELEGATION, buf, n, root, NULL) < 0) {
		free(s);
		return NULL;
	}
	return s;
}

#endif
