/* pol_password.h - VP configuration passwords: Argon2id (libargon2), pure code.
 *
 * Parameters (at least OWASP's minimum for Argon2id): m = 19456 KiB (19 MiB), t = 2,
 * p = 1, a 16-byte random salt per VP and password, a 32-byte tag. The parameters are
 * stored with the hash so that they can be raised later. Comparison is constant-time
 * (CRYPTO_memcmp). A device secret (a "pepper", kept outside the database) is given to
 * Argon2id as its `secret` input (RFC 9106 K): a copied database alone cannot be used to
 * guess the password offline. */
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
#define POL_PW_PEPPER_LEN 32
/* Hash a new password with a fresh random salt and the default parameters; pepper
 * (pepper_len bytes, may be NULL/0) is Argon2id's secret input. */
int pol_pw_hash_new(const uint8_t *pw, size_t len, const uint8_t *pepper, size_t pepper_len,
		    struct pol_pw_hash *out, cells_err_t *err);
/* 1 when pw matches h (made with the same pepper), 0 when not, -1 on error (bad
 * parameters, no memory). */
int pol_pw_check(const struct pol_pw_hash *h, const uint8_t *pw, size_t len, const uint8_t *pepper,
		 size_t pepper_len, cells_err_t *err);

#endif
