/* wipe_key.h - per-VP data keys for fscrypt, kept only wrapped in the state DB.
 *
 * Secrets live in locked pages (mlock, MADV_DONTDUMP, MADV_WIPEONFORK) and are wiped
 * with OPENSSL_cleanse before the pages are released. The key-encryption key (KEK) is
 * STATE_DIR/wipe.kek (32 random bytes, mode 0600, created on first use). A data key is
 * FSCRYPT_KEY_LEN random bytes (RAND_priv_bytes) and is stored as
 *   0x01 || nonce(12) || AES-256-GCM(KEK, nonce, key, aad) || tag(16)
 * with aad = "cells.v1.wipe-key" || 0x00 || vp name, so a blob cannot be moved to
 * another VP. */
#ifndef CELLS_WIPE_KEY_H
#define CELLS_WIPE_KEY_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define WIPE_KEK_LEN 32
#define WIPE_WRAPPED_LEN (1 + 12 + 64 + 16)

/* A secret in locked memory (owned). */
struct wipe_secret {
	uint8_t *p;
	size_t len;
};

int wipe_secret_alloc(struct wipe_secret *s, size_t len, cells_err_t *err);
/* Wipe and release; accepts an unallocated (zeroed) secret. */
void wipe_secret_free(struct wipe_secret *s);
#define cleanup_wipe_secret __attribute__((cleanup(wipe_secret_free)))

/* Load (or create) STATE_DIR/wipe.kek into locked memory. */
int wipe_kek_load(const char *state_dir, struct wipe_secret *kek, cells_err_t *err);
/* A new random data key of len bytes in locked memory. */
int wipe_key_generate(struct wipe_secret *key, size_t len, cells_err_t *err);
/* Wrap key (64 bytes) for vp into out[WIPE_WRAPPED_LEN]. */
int wipe_key_wrap(const struct wipe_secret *kek, const char *vp, const struct wipe_secret *key,
		  uint8_t out[WIPE_WRAPPED_LEN], cells_err_t *err);
/* Unwrap into a new locked secret; fails on any tampering or the wrong vp. */
int wipe_key_unwrap(const struct wipe_secret *kek, const char *vp, const uint8_t *blob, size_t len,
		    struct wipe_secret *key, cells_err_t *err);

#endif
