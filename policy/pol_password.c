/* pol_password.c - Argon2id password hashing through libargon2. */
#include "pol_password.h"

#include <argon2.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <string.h>

int pol_argon2id(uint32_t t, uint32_t m_kib, uint32_t p, const uint8_t *pw, size_t pwlen,
		 const uint8_t *salt, size_t saltlen, const uint8_t *secret, size_t secretlen,
		 const uint8_t *ad, size_t adlen, uint8_t *out, size_t outlen, cells_err_t *err)
{
	if (pwlen > POL_PW_MAX_LEN)
		return cells_err_set(err, EINVAL, "password is longer than %d bytes",
				     POL_PW_MAX_LEN);
	/* bounds against a corrupted state DB: at most 1 GiB, 16 passes, 16 lanes */
	if (t < 1 || t > 16 || p < 1 || p > 16 || m_kib < 8 * p || m_kib > (1u << 20))
		return cells_err_set(err, EINVAL, "Argon2id parameters out of range");
	argon2_context c = {
	    .out = out,
	    .outlen = (uint32_t)outlen,
	    .pwd = (uint8_t *)pw,
	    .pwdlen = (uint32_t)pwlen,
	    .salt = (uint8_t *)salt,
	    .saltlen = (uint32_t)saltlen,
	    .secret = (uint8_t *)secret,
	    .secretlen = (uint32_t)secretlen,
	    .ad = (uint8_t *)ad,
	    .adlen = (uint32_t)adlen,
	    .t_cost = t,
	    .m_cost = m_kib,
	    .lanes = p,
	    .threads = 1,
	    .version = ARGON2_VERSION_13,
	    .flags = ARGON2_DEFAULT_FLAGS,
	};
	int r = argon2_ctx(&c, Argon2_id);
	if (r != ARGON2_OK)
		return cells_err_set(err, r == ARGON2_MEMORY_ALLOCATION_ERROR ? ENOMEM : EINVAL,
				     "Argon2id: %s", argon2_error_message(r));
	return 0;
}

int pol_pw_hash_new(const uint8_t *pw, size_t len, const uint8_t *pepper, size_t pepper_len,
		    struct pol_pw_hash *out, cells_err_t *err)
{
	memset(out, 0, sizeof *out);
	out->m_kib = POL_PW_M_KIB;
	out->t = POL_PW_T;
	out->p = POL_PW_P;
	if (RAND_bytes(out->salt, sizeof out->salt) != 1)
		return cells_err_ssl(err, "password salt");
	return pol_argon2id(out->t, out->m_kib, out->p, pw, len, out->salt, sizeof out->salt,
			    pepper, pepper_len, NULL, 0, out->hash, sizeof out->hash, err);
}

int pol_pw_check(const struct pol_pw_hash *h, const uint8_t *pw, size_t len, const uint8_t *pepper,
		 size_t pepper_len, cells_err_t *err)
{
	uint8_t tag[POL_PW_HASH_LEN];
	if (pol_argon2id(h->t, h->m_kib, h->p, pw, len, h->salt, sizeof h->salt, pepper, pepper_len,
			 NULL, 0, tag, sizeof tag, err) < 0)
		return -1;
	int same = CRYPTO_memcmp(tag, h->hash, sizeof tag) == 0;
	OPENSSL_cleanse(tag, sizeof tag);
	return same;
}
