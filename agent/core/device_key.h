/* device_key.h - the device's keys.
 *
 * Identity key: Ed25519, STATE_DIR/device.key (mode 0600), created on first use. It
 * never leaves cellsd: it signs wipe receipts, audit checkpoints, command results and
 * the EnrollBinding. The device id is the first 16 bytes of SHA-256(raw public key) in
 * hex: what a policy's `device` field names and the CN of the device certificate.
 *
 * TLS key: Ed25519, STATE_DIR/device-tls.key (mode 0600), new at each enrollment. The
 * CSR and the client certificate carry it, and it is the only key the network process
 * (cellsd-net) holds: a compromised cellsd-net can hold a TLS session, never sign
 * anything the MDM takes as the device's word (the MDM verifies with the identity key
 * it stored at enrollment).
 *
 * Enrollment tokens are "SECRET.ROOTDIGEST": ROOTDIGEST (64 lowercase hex) is the
 * SHA-256 of the MDM's TrustRoot as trust_root_digest() computes it; the device pins
 * the EnrollResponse's root only when its digest is the token's (docs/PROTOCOL.md). */
#ifndef CELLS_DEVICE_KEY_H
#define CELLS_DEVICE_KEY_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "err.h"
#include "wire.h"

#define DEVICE_ID_LEN 32 /* hex chars */
#define ROOT_DIGEST_LEN 32
#define ROOT_DIGEST_DOMAIN "cells.v1.root-digest"

/* Load or create the key; *key is owned by the caller; id gets DEVICE_ID_LEN+1 bytes. */
int device_key_load(const char *state_dir, EVP_PKEY **key, char id[DEVICE_ID_LEN + 1],
		    cells_err_t *err);
/* The id of a raw 32-byte Ed25519 public key. */
void device_id_of(const unsigned char pub[32], char id[DEVICE_ID_LEN + 1]);

/* The TLS key (STATE_DIR/device-tls.key): load it, or create it when absent. *key owned. */
int device_tls_key_load(const char *state_dir, EVP_PKEY **key, cells_err_t *err);
/* Replace the TLS key by key (atomically, mode 0600): an enrollment completed with it. */
int device_tls_key_store(const char *state_dir, EVP_PKEY *key, cells_err_t *err);

/* SHA-256( ROOT_DIGEST_DOMAIN || 0x00 || u32be(threshold) || u32be(n) || key_1 .. key_n )
 * over the root's keys in their order. -1 (EBADMSG) for a root without keys or with a
 * key that is not 32 bytes. */
int trust_root_digest(const Cells__V1__TrustRoot *root, uint8_t out[ROOT_DIGEST_LEN],
		      cells_err_t *err);
/* Split "SECRET.ROOTDIGEST": 0 with digest filled, -1 (EINVAL) when the token carries no
 * well-formed digest (64 lowercase hex chars after the last '.', a non-empty secret). */
int enroll_token_digest(const char *token, uint8_t digest[ROOT_DIGEST_LEN], cells_err_t *err);

/* The SIGNED_ENROLL_BINDING of an EnrollRequest: EnrollBinding{identity public key,
 * SHA-256(csr_der), now} signed by the identity key. *out owned (free with
 * cells__v1__signed__free_unpacked). */
int device_enroll_binding(EVP_PKEY *identity, const uint8_t *csr_der, size_t csr_len,
			  Cells__V1__Signed **out, cells_err_t *err);

#endif
