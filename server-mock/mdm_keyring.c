/* mdm_keyring.c - the key lifecycle (docs/PROTOCOL.md "Trust updates"): root rotation
 * (the new TrustRoot signed by the old root and by the new one, TUF style), delegation of
 * the signing key with a serial, an expiry and revoke_below, revocation by serial,
 * renewal before expiry, and the TrustUpdate that `cells-mdm keys push` and `cells-mdm
 * serve` queue for devices (queue kind MDM_QK_TRUST).
 *
 * Files of the state dir: root.key (the current root, 0600), trust_root.bin (the current
 * TrustRoot), rotation-N.bin (the Signed SIGNED_ROOT_ROTATION to version N, N >= 2),
 * signing.key, delegation.bin (the current Signed delegation), keys.log (one line per
 * change). Each file is written atomically; a change writes new private keys under a
 * ".next" name first and renames them into place after the files that name them. */
#include "cleanup.h"
#include "cleanup_ssl.h"
#include "mdm.h"
#include "mdm_store.h"
#include "pol_sig.h"
#include "pol_trust.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#define PRIO_TRUST 60 /* before policies (50): they may be signed by the new keys */
#define NOT_BEFORE_SLACK 60

void mdm_keys_log(const struct mdm *m, const char *fmt, ...)
{
	char p[PATH_MAX], line[512], ts[32];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	time_t t = time(NULL);
	struct tm tm;
	strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
	mdm_path(m, "keys.log", p);
	int fd = open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0) {
		dprintf(fd, "%s %s\n", ts, line);
		close(fd);
	}
}

int mdm_keys_lock(const struct mdm *m, cells_err_t *err)
{
	char p[PATH_MAX];
	mdm_path(m, "keys.lock", p);
	int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return cells_err_sys(err, errno, "open %s", p);
	if (flock(fd, LOCK_EX) < 0) {
		int e = errno;
		close(fd);
		return cells_err_sys(err, e, "lock %s", p);
	}
	return fd;
}

static int load_root(const struct mdm *m, struct pol_root *r, cells_err_t *err)
{
	char p[PATH_MAX];
	cleanup_free uint8_t *b = NULL;
	size_t n;
	mdm_path(m, "trust_root.bin", p);
	if (cells_read_file(p, CELLS_MAX_TRUST_ROOT, &b, &n, err) < 0 ||
	    pol_root_decode(b, n, r, err) < 0)
		return cells_err_prefix(err, "%s", p);
	return 0;
}

/* The current delegation, verified under root. */
static int load_delegation(const struct mdm *m, const struct pol_root *root,
			   struct pol_delegation *d, cells_err_t *err)
{
	char p[PATH_MAX];
	cleanup_free uint8_t *b = NULL;
	size_t n;
	cleanup_signed Cells__V1__Signed *s = NULL;
	mdm_path(m, "delegation.bin", p);
	if (cells_read_file(p, CELLS_MAX_SIGNED_BLOB, &b, &n, err) < 0 ||
	    cells_signed_decode(b, n, &s, err) < 0 || pol_delegation_verify(root, s, d, err) < 0)
		return cells_err_prefix(err, "%s", p);
	return 0;
}

int mdm_keys_current(const struct mdm *m, struct pol_root *root, struct pol_delegation *d,
		     cells_err_t *err)
{
	if (load_root(m, root, err) < 0)
		return -1;
	return load_delegation(m, root, d, err);
}

static int64_t lifetime_of(const struct pol_delegation *d)
{
	int64_t l = d->expires_at - d->not_before - NOT_BEFORE_SLACK;
	return l > 0 ? l : 1;
}

static int rename_in(const struct mdm *m, const char *from, const char *to, cells_err_t *err)
{
	char a[PATH_MAX], b[PATH_MAX];
	mdm_path(m, from, a);
	mdm_path(m, to, b);
	if (rename(a, b) < 0)
		return cells_err_sys(err, errno, "rename %s to %s", a, b);
	return 0;
}

/* Sign a delegation of key by root and write it to `name`. */
static int write_delegation(const struct mdm *m, const char *name, EVP_PKEY *root, EVP_PKEY *key,
			    uint32_t roles, int64_t lifetime, uint64_t serial,
			    uint64_t revoke_below, struct pol_delegation *out, cells_err_t *err)
{
	uint8_t pub[POL_PUBKEY_LEN];
	if (pol_key_raw_public(key, pub, err) < 0)
		return -1;
	Cells__V1__KeyDelegation del = CELLS__V1__KEY_DELEGATION__INIT;
	static const Cells__V1__KeyRole all[] = {CELLS__V1__KEY_ROLE__KEY_ROLE_POLICY,
						 CELLS__V1__KEY_ROLE__KEY_ROLE_COMMAND,
						 CELLS__V1__KEY_ROLE__KEY_ROLE_IMAGES};
	Cells__V1__KeyRole rl[CELLS_ARRAY_SIZE(all)];
	size_t nr = 0;
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(all); i++)
		if (roles & (1u << all[i]))
			rl[nr++] = all[i];
	int64_t now = time(NULL);
	del.public_key.data = pub;
	del.public_key.len = sizeof pub;
	del.roles = rl;
	del.n_roles = nr;
	del.not_before = now - NOT_BEFORE_SLACK;
	del.expires_at = now + lifetime;
	del.serial = serial;
	del.revoke_below = revoke_below;
	del.comment = "cells-mdm signing key";
	uint8_t dbuf[CELLS_MAX_DELEGATION];
	size_t dn = cells__v1__key_delegation__get_packed_size(&del);
	if (dn > sizeof dbuf)
		return cells_err_set(err, EMSGSIZE, "delegation too large");
	cells__v1__key_delegation__pack(&del, dbuf);
	cleanup_free uint8_t *sb = NULL;
	size_t sn;
	if (pol_sign_packed(CELLS__V1__SIGNED_KIND__SIGNED_KEY_DELEGATION, dbuf, dn, root, &sb, &sn,
			    err) < 0)
		return -1;
	char p[PATH_MAX];
	mdm_path(m, name, p);
	if (cells_write_file_atomic(p, sb, sn, 0644, err) < 0)
		return -1;
	if (out) {
		memset(out, 0, sizeof *out);
		memcpy(out->pub, pub, sizeof pub);
		pol_key_id(pub, out->kid);
		out->roles = roles;
		out->not_before = del.not_before;
		out->expires_at = del.expires_at;
		out->serial = serial;
		out->revoke_below = revoke_below;
	}
	return 0;
}

int mdm_keys_delegate(const struct mdm *m, const struct mdm_delegate_opts *o,
		      struct pol_delegation *out_opt, cells_err_t *err)
{
	struct pol_delegation nd;
	struct pol_delegation *out = out_opt ? out_opt : &nd;
	struct pol_root root;
	struct pol_delegation cur;
	if (mdm_keys_current(m, &root, &cur, err) < 0)
		return -1;
	uint64_t serial = cur.serial + 1;
	uint64_t rb = o->revoke_below ? o->revoke_below : serial;
	if (rb < cur.revoke_below)
		rb = cur.revoke_below;
	if (rb > serial)
		return cells_err_set(err, EINVAL, "revoke_below %llu is above the new serial %llu",
				     (unsigned long long)rb, (unsigned long long)serial);
	int64_t lifetime = o->lifetime > 0 ? o->lifetime : lifetime_of(&cur);
	uint32_t roles = o->roles ? o->roles : cur.roles;
	cleanup_pkey EVP_PKEY *rk = mdm_load_key(m, "root.key", err);
	cleanup_pkey EVP_PKEY *key =
	    o->new_key ? pol_key_generate(err) : mdm_load_key(m, "signing.key", err);
	if (!rk || !key)
		return -1;
	if (o->new_key && mdm_write_key(m, "signing.next.key", key, err) < 0)
		return -1;
	if (write_delegation(m, "delegation.next.bin", rk, key, roles, lifetime, serial, rb, out,
			     err) < 0)
		return -1;
	if ((o->new_key && rename_in(m, "signing.next.key", "signing.key", err) < 0) ||
	    rename_in(m, "delegation.next.bin", "delegation.bin", err) < 0)
		return -1;
	char ks[17];
	pol_kid_short(out->kid, ks);
	mdm_keys_log(m, "%s serial %llu key %s%s expires %lld revoke_below %llu",
		     o->why ? o->why : "delegate", (unsigned long long)serial, ks,
		     o->new_key ? " (new)" : "", (long long)out->expires_at,
		     (unsigned long long)rb);
	return 0;
}

int mdm_keys_rotate_root(const struct mdm *m, struct pol_root *out, struct pol_delegation *del,
			 cells_err_t *err)
{
	struct pol_root cur;
	struct pol_delegation cd;
	if (mdm_keys_current(m, &cur, &cd, err) < 0)
		return -1;
	cleanup_pkey EVP_PKEY *old = mdm_load_key(m, "root.key", err);
	cleanup_pkey EVP_PKEY *nk = old ? pol_key_generate(err) : NULL;
	cleanup_pkey EVP_PKEY *sk = nk ? mdm_load_key(m, "signing.key", err) : NULL;
	if (!sk)
		return -1;
	uint8_t pub[POL_PUBKEY_LEN];
	if (pol_key_raw_public(nk, pub, err) < 0)
		return -1;
	Cells__V1__TrustRoot tr = CELLS__V1__TRUST_ROOT__INIT;
	ProtobufCBinaryData k = {sizeof pub, pub};
	tr.version = cur.version + 1;
	tr.root_keys = &k;
	tr.n_root_keys = 1;
	tr.threshold = 1;
	tr.issued_at = time(NULL);
	uint8_t tb[CELLS_MAX_TRUST_ROOT];
	size_t tn = cells__v1__trust_root__get_packed_size(&tr);
	cells__v1__trust_root__pack(&tr, tb);
	/* the statement: signed by the old root AND the new one */
	Cells__V1__Signed rot = CELLS__V1__SIGNED__INIT;
	cleanup_free uint8_t *rb = NULL;
	size_t rn;
	int r = pol_sign(&rot, CELLS__V1__SIGNED_KIND__SIGNED_ROOT_ROTATION, tb, tn, old, err);
	if (r == 0)
		r = pol_sign(&rot, rot.kind, tb, tn, nk, err);
	if (r == 0)
		r = pol_signed_pack(&rot, &rb, &rn, err);
	pol_signed_clear(&rot);
	if (r < 0)
		return -1;
	char p[PATH_MAX], name[64];
	snprintf(name, sizeof name, "rotation-%llu.bin", (unsigned long long)tr.version);
	mdm_path(m, name, p);
	if (mdm_write_key(m, "root.next.key", nk, err) < 0 ||
	    cells_write_file_atomic(p, rb, rn, 0644, err) < 0)
		return -1;
	/* the signing key again, under the new root (the old root's delegations die with it) */
	uint64_t serial = cd.serial + 1;
	if (write_delegation(m, "delegation.next.bin", nk, sk, cd.roles, lifetime_of(&cd), serial,
			     serial, del, err) < 0)
		return -1;
	mdm_path(m, "trust_root.bin", p);
	if (cells_write_file_atomic(p, tb, tn, 0644, err) < 0 ||
	    rename_in(m, "root.next.key", "root.key", err) < 0 ||
	    rename_in(m, "delegation.next.bin", "delegation.bin", err) < 0)
		return -1;
	if (pol_root_decode(tb, tn, out, err) < 0)
		return -1;
	char ks[17];
	uint8_t kid[POL_KEYID_LEN];
	pol_key_id(pub, kid);
	pol_kid_short(kid, ks);
	mdm_keys_log(m, "rotate-root version %llu -> %llu key %s; delegation serial %llu",
		     (unsigned long long)cur.version, (unsigned long long)tr.version, ks,
		     (unsigned long long)serial);
	return 0;
}

int mdm_keys_revoke(const struct mdm *m, uint64_t serial, struct pol_delegation *out, bool *already,
		    cells_err_t *err)
{
	struct pol_root root;
	struct pol_delegation cur;
	*already = false;
	if (mdm_keys_current(m, &root, &cur, err) < 0)
		return -1;
	if (serial > cur.serial)
		return cells_err_set(
		    err, ENOENT, "no delegation serial %llu was issued (the current one is %llu)",
		    (unsigned long long)serial, (unsigned long long)cur.serial);
	if (serial < cur.revoke_below) {
		*already = true;
		*out = cur;
		return 0;
	}
	/* the current key itself: a new key replaces it; an older serial still valid:
	 * the current key again, revoking up to it */
	struct mdm_delegate_opts o = {
	    .new_key = serial == cur.serial, .revoke_below = serial + 1, .why = "revoke"};
	return mdm_keys_delegate(m, &o, out, err);
}

int mdm_keys_update_blob(const struct mdm *m, uint8_t **out, size_t *len, struct pol_root *root_out,
			 struct pol_delegation *del_out, cells_err_t *err)
{
	struct pol_root root;
	struct pol_delegation del;
	if (mdm_keys_current(m, &root, &del, err) < 0)
		return -1;
	Cells__V1__Signed *rots[POL_TRUST_MAX_ROTATIONS] = {0};
	size_t nr = 0;
	Cells__V1__Signed *ds = NULL;
	int rc = -1;
	uint64_t first = root.version >= POL_TRUST_MAX_ROTATIONS + 1
			     ? root.version - POL_TRUST_MAX_ROTATIONS + 1
			     : 2;
	char p[PATH_MAX], name[64];
	for (uint64_t v = first; v <= root.version; v++) {
		cleanup_free uint8_t *b = NULL;
		size_t n;
		snprintf(name, sizeof name, "rotation-%llu.bin", (unsigned long long)v);
		mdm_path(m, name, p);
		if (cells_read_file(p, CELLS_MAX_SIGNED_BLOB, &b, &n, err) < 0 ||
		    cells_signed_decode(b, n, &rots[nr], err) < 0) {
			cells_err_prefix(err, "%s", p);
			goto out;
		}
		nr++;
	}
	{
		cleanup_free uint8_t *b = NULL;
		size_t n;
		mdm_path(m, "delegation.bin", p);
		if (cells_read_file(p, CELLS_MAX_SIGNED_BLOB, &b, &n, err) < 0 ||
		    cells_signed_decode(b, n, &ds, err) < 0) {
			cells_err_prefix(err, "%s", p);
			goto out;
		}
	}
	Cells__V1__TrustUpdate u = CELLS__V1__TRUST_UPDATE__INIT;
	u.root_rotations = rots;
	u.n_root_rotations = nr;
	u.delegations = &ds;
	u.n_delegations = 1;
	size_t n = cells__v1__trust_update__get_packed_size(&u);
	if (n > POL_MAX_TRUST_UPDATE) {
		cells_err_set(err, EMSGSIZE, "trust update of %zu bytes is over the limit", n);
		goto out;
	}
	uint8_t *b = malloc(n ? n : 1);
	if (!b) {
		cells_err_sys(err, ENOMEM, "trust update");
		goto out;
	}
	cells__v1__trust_update__pack(&u, b);
	*out = b;
	*len = n;
	if (root_out)
		*root_out = root;
	if (del_out)
		*del_out = del;
	rc = 0;
out:
	for (size_t i = 0; i < nr; i++)
		cells__v1__signed__free_unpacked(rots[i], NULL);
	if (ds)
		cells__v1__signed__free_unpacked(ds, NULL);
	return rc;
}

int mdm_keys_queue(struct mdm_store *s, const char *device, const uint8_t *blob, size_t n,
		   const char *what, struct mdm_qentry *e, cells_err_t *err)
{
	memset(e, 0, sizeof *e);
	snprintf(e->device, sizeof e->device, "%s", device);
	e->kind = MDM_QK_TRUST;
	e->priority = PRIO_TRUST;
	e->created = time(NULL);
	snprintf(e->dedup, sizeof e->dedup, "trust");
	snprintf(e->what, sizeof e->what, "%s", what);
	e->blob = malloc(n ? n : 1);
	if (!e->blob)
		return cells_err_sys(err, ENOMEM, "queue trust update");
	memcpy(e->blob, blob, n);
	e->blob_len = n;
	/* a newer trust update replaces one still queued */
	return mdm_store_queue_add(s, e, true, err);
}

int mdm_keys_push_all(const struct mdm *m, struct mdm_store *s, size_t *count, cells_err_t *err)
{
	cleanup_free uint8_t *b = NULL;
	size_t n;
	struct pol_root root;
	struct pol_delegation del;
	char **ids = NULL;
	size_t nids = 0;
	*count = 0;
	if (mdm_keys_update_blob(m, &b, &n, &root, &del, err) < 0 ||
	    mdm_store_device_ids(s, &ids, &nids, err) < 0)
		return -1;
	char what[128];
	snprintf(what, sizeof what, "trust root v%llu serial %llu",
		 (unsigned long long)root.version, (unsigned long long)del.serial);
	int rc = mdm_store_begin(s, err);
	for (size_t i = 0; rc == 0 && i < nids; i++) {
		struct mdm_qentry e;
		rc = mdm_keys_queue(s, ids[i], b, n, what, &e, err) < 0 ? -1 : 0;
		mdm_qentry_clear(&e);
	}
	if (rc == 0)
		rc = mdm_store_commit(s, err);
	if (rc == 0)
		*count = nids;
	mdm_store_free_ids(ids, nids);
	return rc;
}

int mdm_keys_renew_due(const struct mdm *m, struct mdm_store *s, int64_t renew_before, int64_t now,
		       bool *renewed, cells_err_t *err)
{
	struct pol_root root;
	struct pol_delegation cur;
	*renewed = false;
	if (mdm_keys_current(m, &root, &cur, err) < 0)
		return -1;
	if (cur.expires_at - now > renew_before)
		return 0;
	/* due: again under the lock (an admin command may be changing the keys) */
	cleanup_close int lk = mdm_keys_lock(m, err);
	if (lk < 0 || mdm_keys_current(m, &root, &cur, err) < 0)
		return -1;
	if (cur.expires_at - now > renew_before)
		return 0;
	if (lifetime_of(&cur) <= renew_before)
		return cells_err_set(err, EINVAL,
				     "the signing key's lifetime (%lld s) is not longer than "
				     "--renew-before (%lld s): not renewed",
				     (long long)lifetime_of(&cur), (long long)renew_before);
	struct mdm_delegate_opts o = {.why = "renew (automatic)"};
	struct pol_delegation nd;
	if (mdm_keys_delegate(m, &o, &nd, err) < 0)
		return -1;
	*renewed = true;
	size_t cnt;
	if (mdm_keys_push_all(m, s, &cnt, err) < 0)
		return cells_err_prefix(err, "renewed, not pushed");
	mdm_keys_log(m, "pushed serial %llu to %zu devices", (unsigned long long)nd.serial, cnt);
	return 0;
}
