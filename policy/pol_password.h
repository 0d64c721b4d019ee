/* pol_password.h - VP configuration passwords: Argon2id (libargon2), pure code.
 *
 * Parameters (at least OWASP's minimum for Argon2id): m = 19456 KiB (19 MiB), t = 2,
 * p = 1, a 16-byte random salt per VP and password, a 32-byte tag. The parameters are
 * stored with the hash so that they can be raised later. Comparison is constant-time
 * (CRYPTO_memcmp). */
#ifndef CELLS_POL_PASSWORD_H
#define CELLS_POL_PASSWORD_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define POL_PW_M_KIB 19456u
#define POL_PW_T 2u
#define POL_PW_P 1u
#define POL_PW_SALT_LEN 16
#define POL_PW_HASH_LEN 32
#define POL_PW_MAX_LEN 1024

struct pol_pw_hash {
	uint32_t m_kib, t, p;
	uint8_t salt[POL_PW_SALT_LEN];
	uint8_t hash[POL_PW_HASH_LEN];
};

/* Raw Argon2id (RFC 9106 section 3) with optional secret and associated data. */
int pol_argon2id(uint32_t t, uint32_t m_kib, uint32_t p, const uint8_t *pw, size_t pwlen,
		 const uint8_t *salt, size_t saltlen, const uint8_t *secret, size_t secretlen,
		 const uint8_t *ad, size_t adlen, uint8_t *out, size_t outlen, cells_err_t *err);
/* Hash a new password with a fresh random salt and the default parameters. */
int pol_pw_hash_new(const uint8_t *pw, size_t len, struct pol_pw_hash *out, cells_err_t *err);
/* 1 when pw matches h, 0 when not, -1 on error (bad parameters, no memory). */
int pol_pw_check(const struct pol_pw_hash *h, const uint8_t *pw, size_t len, cells_err_t *err);

#endif
