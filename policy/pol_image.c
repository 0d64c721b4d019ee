/* pol_image.c - the acceptance rules of a signed image manifest (docs/PROTOCOL.md
 * "Images"). */
#include "pol_image.h"
#include "pol_policy.h"
#include "cleanup.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void pol_image_bundle_free(struct pol_image_bundle *b)
{
	if (!b->pb)
		return;
	if (b->manifest != b->pb)
		cells__v1__image_bundle__free_unpacked(b->pb, NULL);
	else
		cells__v1__signed__free_unpacked(b->pb, NULL);
	memset(b, 0, sizeof *b);
}

int pol_image_bundle_decode(const uint8_t *p, size_t n, struct pol_image_bundle *out,
			    cells_err_t *err)
{
	memset(out, 0, sizeof *out);
	if (n > POL_MAX_IMAGE_BUNDLE)
		return cells_err_set(err, EMSGSIZE,
				     "image bundle of %zu bytes is over the limit of %d", n,
				     POL_MAX_IMAGE_BUNDLE);
	if (n == 0)
		return cells_err_set(err, EBADMSG, "image bundle is empty");
	Cells__V1__ImageBundle *ib = cells__v1__image_bundle__unpack(NULL, n, p);
	if (ib && ib->manifest) {
		out->pb = ib;
		out->manifest = ib->manifest;
		int r = pol_bundle_parts(
		    out->manifest, CELLS__V1__SIGNED_KIND__SIGNED_IMAGE_MANIFEST, ib->delegations,
		    ib->n_delegations, ib->root_rotations, ib->n_root_rotations, out->delegations,
		    &out->ndelegations, out->rotations, &out->nrotations, err);
		if (r < 0) {
			pol_image_bundle_free(out);
			return cells_err_prefix(err, "image bundle");
		}
		return 0;
	}
	if (ib)
		cells__v1__image_bundle__free_unpacked(ib, NULL);
	Cells__V1__Signed *s = NULL;
	if (cells_signed_decode(p, n, &s, err) < 0)
		return cells_err_prefix(
		    err, "image bundle (neither an ImageBundle nor a Signed manifest)");
	if (s->kind != CELLS__V1__SIGNED_KIND__SIGNED_IMAGE_MANIFEST) {
		const char *what = cells_signed_domain(s->kind);
		cells__v1__signed__free_unpacked(s, NULL);
		return cells_err_set(err, EBADMSG, "signed object is a %s, not an image manifest",
				     what ? what : "object of unknown kind");
	}
	if (cells_signed_check(s, CELLS__V1__SIGNED_KIND__SIGNED_IMAGE_MANIFEST, err) < 0) {
		cells__v1__signed__free_unpacked(s, NULL);
		return -1;
	}
	out->pb = s;
	out->manifest = s;
	return 0;
}

int pol_image_name_valid(const char *name, cells_err_t *err)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > POL_IMAGE_NAME_MAX)
		return cells_err_set(err, EINVAL, "image name must be 1..%d characters",
				     POL_IMAGE_NAME_MAX);
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
			return cells_err_set(err, EINVAL,
					     "image name must match [a-z0-9][a-z0-9._-]{0,31}");
	}
	return 0;
}

int pol_image_ref_parse(const char *ref, char name[POL_IMAGE_NAME_MAX + 1], uint64_t *version,
			cells_err_t *err)
{
	const char *at = ref ? strchr(ref, '@') : NULL;
	char nm[POL_IMAGE_NAME_MAX + 1];
	if (!at || (size_t)(at - ref) > POL_IMAGE_NAME_MAX)
		return cells_err_set(err, EINVAL, "image '%.64s' is not NAME@VERSION",
				     ref ? ref : "");
	memcpy(nm, ref, (size_t)(at - ref));
	nm[at - ref] = 0;
	if (pol_image_name_valid(nm, err) < 0)
		return cells_err_prefix(err, "image '%.64s'", ref);
	const char *v = at + 1;
	uint64_t ver = 0;
	size_t nd = strlen(v);
	if (nd == 0 || nd > 20 || v[0] == '0')
		return cells_err_set(err, EINVAL, "image '%.64s': the version is not 1 or more",
				     ref);
	for (size_t i = 0; i < nd; i++) {
		if (v[i] < '0' || v[i] > '9' || ver > (INT64_MAX - (uint64_t)(v[i] - '0')) / 10)
			return cells_err_set(err, EINVAL,
					     "image '%.64s': the version is not a number", ref);
		ver = ver * 10 + (uint64_t)(v[i] - '0');
	}
	if (name)
		memcpy(name, nm, strlen(nm) + 1);
	if (version)
		*version = ver;
	return 0;
}

bool pol_image_fs_valid(const char *fs)
{
	return fs && (!strcmp(fs, "erofs") || !strcmp(fs, "squashfs"));
}

void pol_image_hex(const uint8_t sha256[32], char out[65])
{
	cells_hex(sha256, 32, out);
	out[64] = 0;
}

static void image_manifest_freep(Cells__V1__ImageManifest **m)
{
	if (*m)
		cells__v1__image_manifest__free_unpacked(*m, NULL);
}

int pol_image_manifest_verify(const Cells__V1__Signed *s, const struct pol_delegation *dels,
			      size_t ndels, int64_t now, const struct pol_image_limits *lim,
			      struct pol_image_manifest *out, cells_err_t *err)
{
	memset(out, 0, sizeof *out);
	if (cells_signed_check(s, CELLS__V1__SIGNED_KIND__SIGNED_IMAGE_MANIFEST, err) < 0)
		return -1;
	if (pol_signed_by_role(dels, ndels, s, CELLS__V1__KEY_ROLE__KEY_ROLE_IMAGES, now, err) < 0)
		return -1;
	/* the signature verified: the payload may be read now */
	__attribute__((cleanup(image_manifest_freep))) Cells__V1__ImageManifest *m =
	    cells__v1__image_manifest__unpack(NULL, s->payload.len, s->payload.data);
	if (!m)
		return cells_err_set(err, EBADMSG,
				     "image manifest is not a valid protobuf message");
	if (pol_image_name_valid(m->name, err) < 0)
		return cells_err_prefix(err, "image manifest");
	if (m->version < 1 || m->version > INT64_MAX)
		return cells_err_set(err, EINVAL, "image %s: version must be within 1..2^63-1",
				     m->name);
	if (m->size < 1 || m->size > INT64_MAX)
		return cells_err_set(err, EINVAL, "image %s@%llu: size must be at least 1 byte",
				     m->name, (unsigned long long)m->version);
	if (m->sha256.len != 32)
		return cells_err_set(err, EINVAL, "image %s@%llu: sha256 is %zu bytes, not 32",
				     m->name, (unsigned long long)m->version, m->sha256.len);
	if (!pol_image_fs_valid(m->fs_type))
		return cells_err_set(
		    err, EINVAL, "image %s@%llu: fs_type '%.16s' is neither erofs nor squashfs",
		    m->name, (unsigned long long)m->version, m->fs_type ? m->fs_type : "");
	if (m->expires_at <= 0)
		return cells_err_set(err, EINVAL, "image %s@%llu has no expiry", m->name,
				     (unsigned long long)m->version);
	if (m->created < 0 || (m->created && m->created >= m->expires_at))
		return cells_err_set(err, EINVAL, "image %s@%llu expires before it is created",
				     m->name, (unsigned long long)m->version);
	if (now >= m->expires_at)
		return cells_err_set(err, EKEYEXPIRED, "image manifest %s@%llu expired at %lld",
				     m->name, (unsigned long long)m->version,
				     (long long)m->expires_at);
	if (lim && lim->max_size && m->size > lim->max_size)
		return cells_err_set(err, EMSGSIZE,
				     "image %s@%llu of %llu bytes is over the device's limit of "
				     "%llu bytes",
				     m->name, (unsigned long long)m->version,
				     (unsigned long long)m->size,
				     (unsigned long long)lim->max_size);
	int same = 0;
	if (lim && lim->highest) {
		uint64_t hv = 0, hs = 0;
		uint8_t hh[32] = {0};
		lim->highest(lim->ctx, m->name, &hv, &hs, hh);
		if (hv && m->version < hv)
			return cells_err_set(err, ESTALE,
					     "image %s version %llu is older than the version %llu "
					     "on the device (rollback)",
					     m->name, (unsigned long long)m->version,
					     (unsigned long long)hv);
		if (hv && m->version == hv) {
			if (hs != m->size || memcmp(hh, m->sha256.data, 32))
				return cells_err_set(err, ESTALE,
						     "image %s version %llu is already on the "
						     "device with different contents",
						     m->name, (unsigned long long)m->version);
			same = 1;
		}
	}
	snprintf(out->name, sizeof out->name, "%s", m->name);
	out->version = m->version;
	out->size = m->size;
	memcpy(out->sha256, m->sha256.data, 32);
	out->created = m->created;
	out->expires_at = m->expires_at;
	snprintf(out->fs_type, sizeof out->fs_type, "%s", m->fs_type);
	return same;
}

int pol_image_bundle_verify(const struct pol_trust *cur, const struct pol_image_bundle *b,
			    int64_t now, const struct pol_image_limits *lim,
			    struct pol_image_manifest *out, struct pol_trust *trust_out,
			    cells_err_t *err)
{
	struct pol_trust t;
	struct pol_trust_result res;
	if (pol_trust_advance(cur, b->rotations, b->nrotations, b->delegations, b->ndelegations,
			      now, 0, &t, &res, err) < 0)
		return cells_err_prefix(err, "image bundle");
	int r = pol_image_manifest_verify(b->manifest, t.dels, t.ndels, now, lim, out, err);
	if (r >= 0 && trust_out)
		*trust_out = t;
	return r;
}
