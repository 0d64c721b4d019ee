/* pol_sig.h - Ed25519 keys and domain-separated signatures (OpenSSL EVP), pure code on
 * buffers. Signatures are over  domain(kind) || 0x00 || payload  (proto/wire.h).
 * Key ids are SHA-256 of the raw 32-byte public key. */
#ifndef CELLS_POL_SIG_H
#define CELLS_POL_SIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "err.h"
#include "wire.h"

#define POL_PUBKEY_LEN 32
#define POL_SIG_LEN 64
#define POL_KEYID_LEN 32

/* A new Ed25519 key pair (owned). */
EVP_PKEY *pol_key_generate(cells_err_t *err);
/* PEM (PKCS#8 private or SubjectPublicKeyInfo public) <-> key. */
EVP_PKEY *pol_key_from_pem(const uint8_t *pem, size_t len, bool want_private, cells_err_t *err);
int pol_key_to_pem(EVP_PKEY *key, bool private_part, char **pem, cells_err_t *err);
/* Raw public key bytes and key id. */
int pol_key_raw_public(EVP_PKEY *key, uint8_t out[POL_PUBKEY_LEN], cells_err_t *err);
EVP_PKEY *pol_key_from_raw_public(const uint8_t *raw, size_t len, cells_err_t *err);
/* True for the encodings of the 8 small-order points of edwards25519 (and their
 * non-canonical twins), after libsodium's blocklist. OpenSSL's Ed25519 verify accepts
 * such a public key with the signature (R = identity, S = 0) for ANY message, so Cells
 * refuses these keys everywhere (pol_key_from_raw_public, roots, delegations). */
bool pol_key_has_small_order(const uint8_t pub[POL_PUBKEY_LEN]);
void pol_key_id(const uint8_t pub[POL_PUBKEY_LEN], uint8_t out[POL_KEYID_LEN]);

/* Sign payload as `kind` with key, appending a Signature to *s (s->kind and payload
 * are set on first use; the payload is copied). */
int pol_sign(Cells__V1__Signed *s, Cells__V1__SignedKind kind, const uint8_t *payload, size_t len,
	     EVP_PKEY *key, cells_err_t *err);
/* Free what pol_sign allocated in s (not s itself). */
void pol_signed_clear(Cells__V1__Signed *s);
/* Pack a Signed into a new buffer. */
int pol_signed_pack(const Cells__V1__Signed *s, uint8_t **out, size_t *len, cells_err_t *err);
/* pol_sign + pol_signed_pack: the encoded Signed of payload by key in *out (owned). */
int pol_sign_packed(Cells__V1__SignedKind kind, const uint8_t *payload, size_t len, EVP_PKEY *key,
		    uint8_t **out, size_t *out_len, cells_err_t *err);

/* Verify one Ed25519 signature over domain(kind)||0||payload with a raw public key.
 * Returns 0 when valid, -1 (with err) otherwise. */
int pol_verify_raw(const uint8_t pub[POL_PUBKEY_LEN], Cells__V1__SignedKind kind,
		   const uint8_t *payload, size_t len, const uint8_t sig[POL_SIG_LEN],
		   cells_err_t *err);

/* Free the per-thread cache of verification contexts (also done at exit). */
void pol_verify_cache_clear(void);

#endif
