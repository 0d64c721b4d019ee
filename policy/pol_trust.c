/* pol_trust.c - the key hierarchy: pinned root, delegations by role, rotation. */
#include "pol_trust.h"
#include "cleanup.h"
#include "cleanup_ssl.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void pol_kid_short(const uint8_t kid[POL_KEYID_LEN], char out[17])
{
	cells_hex(kid, 8, out);
}

void pol_root_from_key(const uint8_t pub[POL_PUBKEY_LEN], struct pol_root *out)
{
	memset(out, 0, sizeof *out);
	out->threshold = 1;
	out->nkeys = 1;
	memcpy(out->keys[0], pub, POL_PUBKEY_LEN);
}

int pol_root_decode(const uint8_t *p, size_t n, struct pol_root *out, cells_err_t *err)
{
	if (n > CELLS_MAX_TRUST_ROOT)
		return cells_err_set(err, EMSGSIZE,
				     "trust root of %zu bytes is over the limit of %d", n,
				     CELLS_MAX_TRUST_ROOT);
	cleanup_trust_root_pb Cells__V1__TrustRoot *t = cells__v1__trust_root__unpack(NULL, n, p);
	if (!t)
		return cells_err_set(err, EBADMSG, "trust root is not a valid protobuf message");
	if (t->n_root_keys < 1 || t->n_root_keys > POL_MAX_ROOT_KEYS)
		return cells_err_set(err, EBADMSG, "trust root has %zu keys (1..%d allowed)",
				     t->n_root_keys, POL_MAX_ROOT_KEYS);
	if (t->threshold < 1 || t->threshold > t->n_root_keys)
		return cells_err_set(err, EBADMSG, "trust root threshold %u is not within 1..%zu",
				     t->threshold, t->n_root_keys);
	memset(out, 0, sizeof *out);
	for (size_t i = 0; i < t->n_root_keys; i++) {
		if (t->root_keys[i].len != POL_PUBKEY_LEN)
			return cells_err_set(err, EBADMSG, "trust root key %zu is not 32 bytes", i);
		if (pol_key_has_small_order(t->root_keys[i].data))
			return cells_err_set(err, EKEYREJECTED,
					     "trust root key %zu is a small-order point", i);
		for (size_t j = 0; j < i; j++)
			if (!memcmp(out->keys[j], t->root_keys[i].data, POL_PUBKEY_LEN))
				return cells_err_set(err, EBADMSG, "trust root lists a key twice");
		memcpy(out->keys[i], t->root_keys[i].data, POL_PUBKEY_LEN);
	}
	out->nkeys = t->n_root_keys;
	out->threshold = t->threshold;
	out->version = t->version;
	return 0;
}

int pol_root_encode(const struct pol_root *r, uint8_t **out, size_t *len, cells_err_t *err)
{
	Cells__V1__TrustRoot t = CELLS__V1__TRUST_ROOT__INIT;
	ProtobufCBinaryData keys[POL_MAX_ROOT_KEYS];
	for (size_t i = 0; i < r->nkeys && i < POL_MAX_ROOT_KEYS; i++) {
		keys[i].data = (uint8_t *)r->keys[i];
		keys[i].len = POL_PUBKEY_LEN;
	}
	t.version = r->version;
	t.threshold = r->threshold;
	t.root_keys = keys;
	t.n_root_keys = r->nkeys;
	size_t n = cells__v1__trust_root__get_packed_size(&t);
	uint8_t *b = malloc(n ? n : 1);
	if (!b)
		return cells_err_sys(err, ENOMEM, "encode trust root");
	cells__v1__trust_root__pack(&t, b);
	*out = b;
	*len = n;
	return 0;
}

int pol_root_parse_any(const uint8_t *p, size_t n, struct pol_root *out, cells_err_t *err)
{
	static const char pem_tag[] = "-----BEGIN PUBLIC KEY-----";
	if (n > CELLS_MAX_TRUST_ROOT)
		return cells_err_set(err, EMSGSIZE, "root key of %zu bytes is over the limit of %d",
				     n, CELLS_MAX_TRUST_ROOT);
	if (n >= sizeof pem_tag - 1 && memmem(p, n, pem_tag, sizeof pem_tag - 1)) {
		cleanup_pkey EVP_PKEY *k = pol_key_from_pem(p, n, false, err);
		uint8_t pub[POL_PUBKEY_LEN];
		if (!k || pol_key_raw_public(k, pub, err) < 0)
			return -1;
		if (pol_key_has_small_order(pub))
			return cells_err_set(err, EKEYREJECTED, "root key is a small-order point");
		pol_root_from_key(pub, out);
		return 0;
	}
	if (n == POL_PUBKEY_LEN) {
		if (pol_key_has_small_order(p))
			return cells_err_set(err, EKEYREJECTED, "root key is a small-order point");
		pol_root_from_key(p, out);
		return 0;
	}
	if (pol_root_decode(p, n, out, err) < 0)
		return cells_err_prefix(err, "not a PEM public key, raw 32-byte key or TrustRoot");
	return 0;
}

/* Is signature i of s made by a key of root and valid? Returns the key index or -1. */
static int root_key_of(const struct pol_root *root, const Cells__V1__Signed *s, size_t i)
{
	const Cells__V1__Signature *g = s->signatures[i];
	for (size_t k = 0; k < root->nkeys; k++) {
		uint8_t kid[POL_KEYID_LEN];
		pol_key_id(root->keys[k], kid);
		if (g->key_id.len == POL_KEYID_LEN && !memcmp(kid, g->key_id.data, POL_KEYID_LEN))
			return pol_verify_raw(root->keys[k], s->kind, s->payload.data,
					      s->payload.len, g->signature.data, NULL) == 0
				   ? (int)k
				   : -1;
	}
	return -1;
}

int pol_root_check_threshold(const struct pol_root *root, const Cells__V1__Signed *s,
			     cells_err_t *err)
{
	if (cells_signed_check(s, CELLS__V1__SIGNED_KIND__SIGNED_KIND_UNSPECIFIED, err) < 0)
		return -1;
	bool used[POL_MAX_ROOT_KEYS] = {0};
	uint32_t good = 0;
	for (size_t i = 0; i < s->n_signatures; i++) {
		int k = root_key_of(root, s, i);
		if (k >= 0 && !used[k]) {
			used[k] = true;
			good++;
		}
	}
	if (good < root->threshold)
		return cells_err_set(err, EKEYREJECTED,
				     "%s has %u valid root signature(s), %u needed",
				     cells_signed_domain(s->kind), good, root->threshold);
	return 0;
}

int pol_root_rotate(const struct pol_root *cur, const Cells__V1__Signed *s, struct pol_root *out,
		    cells_err_t *err)
{
	if (cells_signed_check(s, CELLS__V1__SIGNED_KIND__SIGNED_ROOT_ROTATION, err) < 0)
		return -1;
	if (pol_root_check_threshold(cur, s, err) < 0)
		return cells_err_prefix(err, "root rotation: by the current root");
	struct pol_root nr;
	if (pol_root_decode(s->payload.data, s->payload.len, &nr, err) < 0)
		return cells_err_prefix(err, "root rotation");
	if (pol_root_check_threshold(&nr, s, err) < 0)
		return cells_err_prefix(err, "root rotation: by the new root");
	if (nr.version <= cur->version)
		return cells_err_set(
		    err, ESTALE, "root rotation to version %llu is not newer than %llu",
		    (unsigned long long)nr.version, (unsigned long long)cur->version);
	*out = nr;
	return 0;
}

int pol_delegation_verify(const struct pol_root *root, const Cells__V1__Signed *s,
			  struct pol_delegation *out, cells_err_t *err)
{
	if (cells_signed_check(s, CELLS__V1__SIGNED_KIND__SIGNED_KEY_DELEGATION, err) < 0)
		return -1;
	if (pol_root_check_threshold(root, s, err) < 0)
		return cells_err_prefix(err, "key delegation");
	cleanup_delegation_pb Cells__V1__KeyDelegation *d =
	    cells__v1__key_delegation__unpack(NULL, s->payload.len, s->payload.data);
	if (!d)
		return cells_err_set(err, EBADMSG,
				     "key delegation is not a valid protobuf message");
	if (d->public_key.len != POL_PUBKEY_LEN)
		return cells_err_set(err, EBADMSG, "key delegation: public key is not 32 bytes");
	if (pol_key_has_small_order(d->public_key.data))
		return cells_err_set(err, EKEYREJECTED,
				     "key delegation: public key is a small-order point");
	if (d->expires_at <= 0)
		return cells_err_set(err, EBADMSG, "key delegation has no expiry");
	if (d->expires_at <= d->not_before)
		return cells_err_set(err, EBADMSG, "key delegation expires before it starts");
	memset(out, 0, sizeof *out);
	memcpy(out->pub, d->public_key.data, POL_PUBKEY_LEN);
	pol_key_id(out->pub, out->kid);
	for (size_t i = 0; i < d->n_roles; i++)
		if ((unsigned)d->roles[i] < 32)
			out->roles |= 1u << (unsigned)d->roles[i];
	out->not_before = d->not_before;
	out->expires_at = d->expires_at;
	out->serial = d->serial;
	out->revoke_below = d->revoke_below;
	return 0;
}

uint64_t pol_trust_floor(const struct pol_delegation *dels, size_t n)
{
	uint64_t f = 0;
	for (size_t i = 0; i < n; i++)
		if (dels[i].revoke_below > f)
			f = dels[i].revoke_below;
	return f;
}

/* Walk the rotation chain from t->root (see pol_trust_advance). */
static int walk_rotations(struct pol_trust *t, Cells__V1__Signed *const *rots, size_t nrots,
			  bool *rotated, cells_err_t *err)
{
	bool verified_one = false;
	cells_err_t last = {0};
	for (size_t i = 0; i < nrots; i++) {
		if (cells_signed_check(rots[i], CELLS__V1__SIGNED_KIND__SIGNED_ROOT_ROTATION, err) <
		    0)
			return cells_err_prefix(err, "root rotation %zu", i);
		/* the signature first: the payload is read only once the root in force signed */
		if (pol_root_check_threshold(&t->root, rots[i], &last) < 0) {
			if (verified_one)
				return cells_err_set(err, last.code,
						     "root rotation %zu: by the current root: %s",
						     i, last.msg);
			if (i + 1 == nrots) /* the chain ends in a rotation we cannot verify */
				return cells_err_set(err, last.code,
						     "root rotation %zu: by the current root "
						     "(version %llu): %s",
						     i, (unsigned long long)t->root.version,
						     last.msg);
			continue; /* history before our root */
		}
		verified_one = true;
		struct pol_root nr;
		if (pol_root_decode(rots[i]->payload.data, rots[i]->payload.len, &nr, err) < 0)
			return cells_err_prefix(err, "root rotation %zu", i);
		if (nr.version <= t->root.version) {
			if (*rotated)
				return cells_err_set(err, ESTALE,
						     "root rotation %zu to version %llu is out of "
						     "order (the chain reached %llu)",
						     i, (unsigned long long)nr.version,
						     (unsigned long long)t->root.version);
			continue; /* held already */
		}
		if (t->root.version != 0 && nr.version != t->root.version + 1)
			return cells_err_set(err, ERANGE,
					     "root rotation %zu to version %llu skips version %llu",
					     i, (unsigned long long)nr.version,
					     (unsigned long long)t->root.version + 1);
		if (pol_root_check_threshold(&nr, rots[i], err) < 0)
			return cells_err_prefix(err, "root rotation %zu: by the new root", i);
		t->root = nr;
		t->ndels = 0; /* a rotation revokes every delegation of the old root */
		*rotated = true;
	}
	return 0;
}

int pol_trust_advance(const struct pol_trust *cur, Cells__V1__Signed *const *rots, size_t nrots,
		      Cells__V1__Signed *const *dels, size_t ndels, int64_t now, unsigned flags,
		      struct pol_trust *out, struct pol_trust_result *res, cells_err_t *err)
{
	bool strict = flags & POL_TRUST_STRICT;
	memset(res, 0, sizeof *res);
	if (nrots > POL_TRUST_MAX_ROTATIONS || ndels > CELLS_MAX_SIGNED_LIST)
		return cells_err_set(
		    err, EMSGSIZE, "%zu rotations and %zu delegations offered (at most %d and %d)",
		    nrots, ndels, POL_TRUST_MAX_ROTATIONS, CELLS_MAX_SIGNED_LIST);
	struct pol_trust t = *cur;
	uint64_t floor = pol_trust_floor(cur->dels, cur->ndels);
	if (walk_rotations(&t, rots, nrots, &res->rotated, err) < 0)
		return -1;
	/* pass 1: verify every offered delegation under the resulting root, find the floor */
	struct pol_delegation in[CELLS_MAX_SIGNED_LIST];
	for (size_t i = 0; i < ndels; i++) {
		if (pol_delegation_verify(&t.root, dels[i], &in[i], err) < 0)
			return cells_err_prefix(err, "delegation %zu", i);
		if (in[i].revoke_below > in[i].serial)
			return cells_err_set(err, EBADMSG,
					     "delegation %zu (serial %llu) revokes itself", i,
					     (unsigned long long)in[i].serial);
		if (in[i].revoke_below > floor)
			floor = in[i].revoke_below;
	}
	/* pass 2: take the new ones */
	for (size_t i = 0; i < ndels; i++) {
		const struct pol_delegation *dl = &in[i];
		char ks[17];
		pol_kid_short(dl->kid, ks);
		if (strict && now >= dl->expires_at)
			return cells_err_set(
			    err, EKEYEXPIRED, "delegation serial %llu of key %s expired at %lld",
			    (unsigned long long)dl->serial, ks, (long long)dl->expires_at);
		if (dl->serial < floor) {
			if (strict)
				return cells_err_set(err, ESTALE,
						     "delegation serial %llu of key %s is revoked "
						     "(serials below %llu are)",
						     (unsigned long long)dl->serial, ks,
						     (unsigned long long)floor);
			continue;
		}
		size_t k = 0;
		while (k < t.ndels && memcmp(t.dels[k].kid, dl->kid, POL_KEYID_LEN))
			k++;
		if (k < t.ndels && t.dels[k].serial >= dl->serial) {
			if (strict && t.dels[k].serial > dl->serial)
				return cells_err_set(err, ESTALE,
						     "delegation serial %llu of key %s is older "
						     "than serial %llu held",
						     (unsigned long long)dl->serial, ks,
						     (unsigned long long)t.dels[k].serial);
			continue; /* held already, or older: revoked by replacement */
		}
		if (k == t.ndels) {
			if (t.ndels >= POL_MAX_DELEGATIONS)
				return cells_err_set(err, ENOSPC, "too many key delegations");
			t.ndels++;
		}
		t.dels[k] = *dl;
		res->taken[i] = true;
	}
	/* drop what the floor revokes */
	size_t w = 0;
	for (size_t k = 0; k < t.ndels; k++) {
		if (t.dels[k].serial < floor) {
			res->dropped = true;
			continue;
		}
		t.dels[w++] = t.dels[k];
	}
	t.ndels = w;
	res->floor = floor;
	bool changed = res->rotated || res->dropped;
	for (size_t i = 0; i < ndels; i++)
		changed |= res->taken[i];
	if (strict && !changed)
		return cells_err_set(err, ESTALE,
				     "trust update brings nothing newer than root version %llu and "
				     "the delegations held (a replay?)",
				     (unsigned long long)cur->root.version);
	*out = t;
	return 0;
}

int pol_trust_update_decode(const uint8_t *p, size_t n, Cells__V1__TrustUpdate **out,
			    cells_err_t *err)
{
	if (n > POL_MAX_TRUST_UPDATE)
		return cells_err_set(err, EMSGSIZE,
				     "trust update of %zu bytes is over the limit of %d", n,
				     POL_MAX_TRUST_UPDATE);
	Cells__V1__TrustUpdate *u = cells__v1__trust_update__unpack(NULL, n, p);
	if (!u)
		return cells_err_set(err, EBADMSG, "trust update is not a valid protobuf message");
	int rc = -1;
	if (u->n_root_rotations > POL_TRUST_MAX_ROTATIONS ||
	    u->n_delegations > CELLS_MAX_SIGNED_LIST) {
		cells_err_set(
		    err, EMSGSIZE,
		    "trust update has %zu rotations and %zu delegations (at most %d and %d)",
		    u->n_root_rotations, u->n_delegations, POL_TRUST_MAX_ROTATIONS,
		    CELLS_MAX_SIGNED_LIST);
		goto out;
	}
	for (size_t i = 0; i < u->n_root_rotations; i++)
		if (cells_signed_check(u->root_rotations[i],
				       CELLS__V1__SIGNED_KIND__SIGNED_ROOT_ROTATION, err) < 0) {
			cells_err_prefix(err, "trust update: rotation %zu", i);
			goto out;
		}
	for (size_t i = 0; i < u->n_delegations; i++)
		if (cells_signed_check(u->delegations[i],
				       CELLS__V1__SIGNED_KIND__SIGNED_KEY_DELEGATION, err) < 0) {
			cells_err_prefix(err, "trust update: delegation %zu", i);
			goto out;
		}
	*out = u;
	u = NULL;
	rc = 0;
out:
	if (u)
		cells__v1__trust_update__free_unpacked(u, NULL);
	return rc;
}

static const char *role_name(Cells__V1__KeyRole r)
{
	return r == CELLS__V1__KEY_ROLE__KEY_ROLE_POLICY    ? "policy"
	       : r == CELLS__V1__KEY_ROLE__KEY_ROLE_COMMAND ? "command"
	       : r == CELLS__V1__KEY_ROLE__KEY_ROLE_IMAGES  ? "images"
							    : "unknown";
}

int pol_signed_by_role(const struct pol_delegation *dels, size_t ndels, const Cells__V1__Signed *s,
		       Cells__V1__KeyRole role, int64_t now, cells_err_t *err)
{
	if (cells_signed_check(s, CELLS__V1__SIGNED_KIND__SIGNED_KIND_UNSPECIFIED, err) < 0)
		return -1;
	const char *what = cells_signed_domain(s->kind);
	int rank = 0; /* 1 unknown, 2 expired/role, 3 forged */
	cells_err_t best = {0};
	for (size_t i = 0; i < s->n_signatures; i++) {
		const Cells__V1__Signature *g = s->signatures[i];
		char ks[17];
		pol_kid_short(g->key_id.data, ks);
		const struct pol_delegation *d = NULL;
		for (size_t k = 0; k < ndels && !d; k++)
			if (!memcmp(dels[k].kid, g->key_id.data, POL_KEYID_LEN))
				d = &dels[k];
		if (!d) {
			if (rank < 1) {
				rank = 1;
				cells_err_set(&best, EKEYREJECTED,
					      "%s is signed by an unknown key %s", what, ks);
			}
			continue;
		}
		if (!(d->roles & (1u << (unsigned)role))) {
			if (rank < 2) {
				rank = 2;
				cells_err_set(&best, EKEYREJECTED,
					      "key %s is not delegated for the %s role", ks,
					      role_name(role));
			}
			continue;
		}
		if (now >= d->expires_at || now < d->not_before) {
			if (rank < 2) {
				rank = 2;
				cells_err_set(&best, EKEYEXPIRED,
					      now >= d->expires_at
						  ? "the delegation of key %s expired at %lld"
						  : "the delegation of key %s is not valid before "
						    "%lld",
					      ks,
					      (long long)(now >= d->expires_at ? d->expires_at
									       : d->not_before));
			}
			continue;
		}
		if (pol_verify_raw(d->pub, s->kind, s->payload.data, s->payload.len,
				   g->signature.data, NULL) == 0)
			return 0;
		rank = 3;
		cells_err_set(&best, EKEYREJECTED,
			      "%s signature by key %s does not verify (forged?)", what, ks);
	}
	if (err)
		*err = best;
	return -1;
}
