/* pol_trust.h - the key hierarchy (TUF style), pure code on buffers.
 *
 * A pinned root (struct pol_root: version, up to POL_MAX_ROOT_KEYS raw Ed25519 keys, a
 * k-of-n threshold) signs KeyDelegations; delegated keys sign policies and commands by
 * role. A root rotation is a Signed TrustRoot signed by `threshold` keys of the current
 * root AND `threshold` keys of the new one, with a greater version.
 * Every function here verifies signatures over the bytes it received before it parses
 * them; every rejection fills err with one line and an errno value:
 *   EKEYREJECTED  forged signature, unknown key, key not delegated for the role
 *   EKEYEXPIRED   delegation expired or not yet valid
 *   EBADMSG       malformed;  EMSGSIZE over a size limit;  ESTALE rotation not newer */
#ifndef CELLS_POL_TRUST_H
#define CELLS_POL_TRUST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "pol_sig.h"
#include "wire.h"

#define POL_MAX_ROOT_KEYS 8
#define POL_MAX_DELEGATIONS 16

struct pol_root {
	uint64_t version;
	uint32_t threshold; /* >= 1, <= nkeys */
	size_t nkeys;
	uint8_t keys[POL_MAX_ROOT_KEYS][POL_PUBKEY_LEN];
};

struct pol_delegation {
	uint8_t pub[POL_PUBKEY_LEN];
	uint8_t kid[POL_KEYID_LEN];
	uint32_t roles; /* bit (1u << KeyRole) per role */
	int64_t not_before, expires_at;
	uint64_t serial;
};

/* A root of one key, version 0, threshold 1 (a bare pinned public key). */
void pol_root_from_key(const uint8_t pub[POL_PUBKEY_LEN], struct pol_root *out);
/* Decode and check a serialized TrustRoot (size first; 1..8 distinct 32-byte keys;
 * 1 <= threshold <= n). */
int pol_root_decode(const uint8_t *p, size_t n, struct pol_root *out, cells_err_t *err);
/* Serialize a root as a TrustRoot (buffer owned by the caller). */
int pol_root_encode(const struct pol_root *r, uint8_t **out, size_t *len, cells_err_t *err);
/* Parse what `cellctl trust pin` sends: a PEM public key, 32 raw key bytes, or a
 * serialized TrustRoot. */
int pol_root_parse_any(const uint8_t *p, size_t n, struct pol_root *out, cells_err_t *err);

/* 0 when at least root->threshold distinct keys of root made valid signatures in s
 * (over domain(s->kind) || 0 || payload). */
int pol_root_check_threshold(const struct pol_root *root, const Cells__V1__Signed *s,
			     cells_err_t *err);

/* Verify a SIGNED_ROOT_ROTATION against the current root; *out is the new root. */
int pol_root_rotate(const struct pol_root *cur, const Cells__V1__Signed *s, struct pol_root *out,
		    cells_err_t *err);

/* Verify a SIGNED_KEY_DELEGATION by the root and decode it. Expiry is not checked here
 * (it is checked at use, see pol_signed_by_role) but a delegation without expires_at, or
 * expiring before it starts, is refused. */
int pol_delegation_verify(const struct pol_root *root, const Cells__V1__Signed *s,
			  struct pol_delegation *out, cells_err_t *err);

/* 0 when one signature of s is valid and made by a delegation of dels holding `role`
 * and valid at `now`. The reason of a failure is the most specific one found:
 * forged signature > expired / wrong role > unknown key. */
int pol_signed_by_role(const struct pol_delegation *dels, size_t ndels, const Cells__V1__Signed *s,
		       Cells__V1__KeyRole role, int64_t now, cells_err_t *err);

/* Short printable key id: first 8 bytes in hex (17 bytes). */
void pol_kid_short(const uint8_t kid[POL_KEYID_LEN], char out[17]);

#endif
