/* pol_image.h - decode, verify and validate signed image manifests (pure code on
 * buffers, docs/PROTOCOL.md "Images").
 *
 * pol_image_bundle_decode() takes what `cellctl image import` or the network delivers:
 * an ImageBundle (the Signed manifest plus the delegations and root rotations needed to
 * verify it) or a bare Signed manifest (Envelope.image). The acceptance rules run in a
 * fixed order and stop at the first failure with one reason (errno in err->code):
 *   EMSGSIZE  over a size limit (the bundle, checked before any parsing; the image size
 *             over the device's limit)                        EBADMSG  malformed
 *   EKEYREJECTED / EKEYEXPIRED  signature and delegation rules (pol_trust.h): the manifest
 *             must be signed by a delegation holding KEY_ROLE_IMAGES valid now; nothing
 *             of the payload is read before that signature verified
 *   EINVAL    an invalid field (name, version, size, sha256, fs_type)
 *   EKEYEXPIRED  the manifest expired (expires_at <= now)
 *   ESTALE    version at or below the highest one of its name verified on the device
 *             (rollback); the same version of the same image (size and SHA-256) is not
 *             an error: the verify functions return 1 (a re-offer). */
#ifndef CELLS_POL_IMAGE_H
#define CELLS_POL_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "pol_policy.h"
#include "pol_trust.h"
#include "wire.h"

#define POL_IMAGE_NAME_MAX 32
#define POL_IMAGE_FS_MAX 15
#define POL_IMAGE_REF_MAX 52 /* "NAME@VERSION": 32 + 1 + 19 digits */
#define POL_MAX_IMAGE_BUNDLE (64 * 1024)
#define POL_MAX_IMAGE_BUNDLE_DELEGATIONS POL_MAX_BUNDLE_DELEGATIONS
#define POL_MAX_IMAGE_BUNDLE_ROTATIONS POL_MAX_BUNDLE_ROTATIONS

/* A verified manifest: every field validated. */
struct pol_image_manifest {
	char name[POL_IMAGE_NAME_MAX + 1];
	uint64_t version; /* >= 1 */
	uint64_t size;	  /* 1 .. the device's limit */
	uint8_t sha256[32];
	int64_t created, expires_at;
	char fs_type[POL_IMAGE_FS_MAX + 1]; /* "erofs" | "squashfs" */
};

/* A decoded bundle: every part owned (free with pol_image_bundle_free). */
struct pol_image_bundle {
	Cells__V1__Signed *manifest;
	Cells__V1__Signed *delegations[POL_MAX_IMAGE_BUNDLE_DELEGATIONS];
	size_t ndelegations;
	Cells__V1__Signed *rotations[POL_MAX_IMAGE_BUNDLE_ROTATIONS];
	size_t nrotations;
	void *pb; /* the unpacked ImageBundle or Signed */
};
/* Size first, then unpack an ImageBundle or a bare Signed manifest; every Signed of its
 * kind and well formed. Nothing signed is verified or parsed. */
int pol_image_bundle_decode(const uint8_t *p, size_t n, struct pol_image_bundle *out,
			    cells_err_t *err);
void pol_image_bundle_free(struct pol_image_bundle *b);

/* [a-z0-9][a-z0-9._-]{0,31}; -1 (EINVAL) otherwise. */
int pol_image_name_valid(const char *name, cells_err_t *err);
/* An image reference "NAME@VERSION" (docs/IMAGES.md): NAME as pol_image_name_valid
 * (pol_image.h), VERSION a decimal 1..2^63-1 without leading zeros (a manifest's range).
 * name/version may be NULL. -1 (EINVAL, one line) when malformed. */
int pol_image_ref_parse(const char *ref, char name[POL_IMAGE_NAME_MAX + 1], uint64_t *version,
			cells_err_t *err);
/* "erofs" | "squashfs" */
bool pol_image_fs_valid(const char *fs);

/* What the device holds, for the size limit and anti-rollback. */
struct pol_image_limits {
	uint64_t max_size; /* bytes; 0: no limit of the device beyond the format's */
	/* The highest verified version of name (0 when none) and that image's size and
	 * SHA-256; NULL: nothing held. */
	void (*highest)(void *ctx, const char *name, uint64_t *version, uint64_t *size,
			uint8_t sha256[32]);
	void *ctx;
};

/* Verify a Signed manifest against the delegations held at now (signature by a key
 * delegated for KEY_ROLE_IMAGES first, then the payload: decode, fields, expiry, size
 * limit, rollback). 0: a new version, 1: the same version of the same image as the
 * highest one held; *out filled on both. */
int pol_image_manifest_verify(const Cells__V1__Signed *s, const struct pol_delegation *dels,
			      size_t ndels, int64_t now, const struct pol_image_limits *lim,
			      struct pol_image_manifest *out, cells_err_t *err);

/* Verify a bundle: advance cur by its root rotations and delegations (pol_trust_advance,
 * not strict: what the device holds already is skipped, as for a policy bundle), then
 * pol_image_manifest_verify under the result. trust_out (optional) gets the advanced
 * trust. Returns as pol_image_manifest_verify. */
int pol_image_bundle_verify(const struct pol_trust *cur, const struct pol_image_bundle *b,
			    int64_t now, const struct pol_image_limits *lim,
			    struct pol_image_manifest *out, struct pol_trust *trust_out,
			    cells_err_t *err);

/* Lowercase hex of a SHA-256 (65 bytes with the NUL). */
void pol_image_hex(const uint8_t sha256[32], char out[65]);

#endif
