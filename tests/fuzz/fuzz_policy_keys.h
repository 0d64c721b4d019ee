/* fuzz_policy_keys.h - fixed keys of the policy fuzz targets, so that the seed corpus
 * (made by `policy_forge --fuzz-seeds DIR`) carries signatures that verify and the
 * fuzzer reaches the code behind them. Test code only. */
#ifndef CELLS_FUZZ_POLICY_KEYS_H
#define CELLS_FUZZ_POLICY_KEYS_H

#include <openssl/evp.h>
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

#endif
