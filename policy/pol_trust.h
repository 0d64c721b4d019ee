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
 *   EBADMSG       malformed;  EMSGSIZE over a size limit;  ESTALE rotation not newer,
 *                 a delegation revoked or older than the one held, a replayed update;
 *   ERANGE        a rotation chain that skips a version */
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
	uint64_t revoke_below; /* serials below this are revoked (<= serial) */
};

/* What a device trusts: its root and the delegations it holds. */
struct pol_trust {
	struct pol_root root;
	struct pol_delegation dels[POL_MAX_DELEGATIONS];
	size_t ndels;
};

#define POL_TRUST_MAX_ROTATIONS 8	 /* root rotations in one TrustUpdate */
#define POL_MAX_TRUST_UPDATE (24 * 1024) /* a serialized TrustUpdate */

/* pol_trust_advance flags */
#define POL_TRUST_STRICT 1u /* a TrustUpdate: refuse what is stale, expired or revoked */

struct pol_trust_result {
	bool rotated;
	bool taken[CELLS_MAX_SIGNED_LIST]; /* offered delegation i is new and kept */
	bool dropped;			   /* held delegations were revoked */
	uint64_t floor;			   /* serials below this are revoked */
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

/* The revocation floor of a set of delegations: the greatest revoke_below. */
uint64_t pol_trust_floor(const struct pol_delegation *dels, size_t n);

/* Advance cur by root rotations (oldest first) and delegations into *out (the TUF walk):
 * - each rotation's signatures are checked against the root in force before its payload
 *   is read. Rotations that do not verify are skipped only as a prefix of the chain (the
 *   history before the device's root); one that verifies and is at or below the current
 *   version is held already (skipped); the next must be exactly version + 1 (any newer
 *   from a bare pinned key of version 0) and signed by the new root too. The last
 *   rotation offered must verify: a chain cannot end in a forgery.
 * - a rotation drops the old root's delegations; each offered delegation must verify
 *   under the resulting root and not revoke itself (revoke_below <= serial). The floor is
 *   the greatest revoke_below held or offered; held delegations below it are dropped.
 * - STRICT (a TrustUpdate): an offered delegation that is expired at now, below the
 *   floor (revoked), or older than the one held for its key is refused, and so is an
 *   update that changes nothing (a replay). Otherwise those are skipped (a bundle).
 * nrots <= POL_TRUST_MAX_ROTATIONS, ndels <= CELLS_MAX_SIGNED_LIST. */
int pol_trust_advance(const struct pol_trust *cur, Cells__V1__Signed *const *rots, size_t nrots,
		      Cells__V1__Signed *const *dels, size_t ndels, int64_t now, unsigned flags,
		      struct pol_trust *out, struct pol_trust_result *res, cells_err_t *err);

/* Decode a serialized TrustUpdate from untrusted bytes: size, unpack, at most
 * POL_TRUST_MAX_ROTATIONS rotations and CELLS_MAX_SIGNED_LIST delegations, each Signed of
 * its kind and well formed. Nothing signed is verified or parsed. *out owned. */
int pol_trust_update_decode(const uint8_t *p, size_t n, Cells__V1__TrustUpdate **out,
			    cells_err_t *err);

/* Short printable key id: first 8 bytes in hex (17 bytes). */
void pol_kid_short(const uint8_t kid[POL_KEYID_LEN], char out[17]);

#endif
