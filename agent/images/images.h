/* images.h - signed VP images on the device (docs/IMAGES.md).
 *
 * An image is a read-only erofs or squashfs file system in one file, described by an
 * ImageManifest (name, version, size, SHA-256, fs type, expiry) signed by a key the root
 * delegated for KEY_ROLE_IMAGES. The store keeps, under STATE/images/:
 *   - the verified manifests, in the state DB (anti-rollback: per name, a version at or
 *     below the highest one verified is refused);
 *   - partial downloads (STATE/images/partial/<sha256>.part), resumable;
 *   - complete images (STATE/images/<sha256>.img), renamed there only after their size
 *     and SHA-256 matched the verified manifest, so nothing half-written is ever mounted.
 * A complete image is mounted read-only (loop device, nodev, nosuid) once, at
 * RUN_DIR/images/<sha256>, and that one mount is the lower layer of every VP using it
 * (each VP sees it through its own idmapped clone, kernel/kidmap.h).
 *
 * Errors follow err.h: -1 and err (ENOENT: not on the device / not verified yet;
 * EKEYREJECTED, EKEYEXPIRED, ESTALE (rollback), EBADMSG, EMSGSIZE as in pol_trust.h). */
#ifndef CELLS_IMAGES_H
#define CELLS_IMAGES_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "pol_image.h"

struct cellsd;

#define IMAGES_NAME_MAX POL_IMAGE_NAME_MAX

/* The mount point of the complete, verified image NAME@VERSION into path, mounting it
 * (read-only, once) if it is not mounted yet, and taking one reference on it for a VP.
 * -1 with ENOENT when the image is not complete and verified on the device. */
int images_acquire(struct cellsd *d, const char *name, uint64_t version, char path[PATH_MAX],
		   cells_err_t *err);
/* Drop a reference taken by images_acquire. An image with no reference that is not the
 * newest of its name is unmounted and removed (image.removed). The VP manager holds a
 * reference per running VP and one per VP's fallback image (vpm.c image_hold), so an
 * image a VP may fall back on stays. */
void images_release(struct cellsd *d, const char *name, uint64_t version);

/* --- the store's module and requests (agent/images/images.c) --- */

#define IMAGES_MAX_SIZE_DEFAULT (4ull << 30)

/* cellsd --max-image-size BYTES[K|M|G] (default 4G): a manifest over it is refused. */
int images_option(const char *name, const char *value, cells_err_t *err);
/* Module hooks: the table in the state DB (module "images"), STATE/images/{,partial/};
 * a complete image whose file is gone or of another size is marked failed (audited)
 * and its file removed. images_fini unmounts what is mounted. */
int images_init(struct cellsd *d, cells_err_t *err);
void images_fini(struct cellsd *d);

/* The offline path (`cellctl image import`): verify the bundle (ImageBundle or bare
 * Signed manifest) with the trust the device holds (pol_image_bundle_verify) and record
 * the manifest; then a thread copies the image from fd (a dup is kept; at most size + 1
 * bytes) into the partial file, hashing it, and fsyncs, while the loop goes on; back in
 * the loop the file is renamed to STATE/images/<sha>.img only when size and SHA-256 match,
 * then mounted, and done(d, desc, NULL, data) is called (desc owned by done), or
 * done(d, NULL, err, data). Every acceptance and refusal is audited (image.accepted,
 * image.rejected, image.verified, image.corrupt, image.mounted). actor: for the audit.
 * Returns 1 when the copy started (done will be called), 0 when the image was on the
 * device already (*desc set now, done not called), -1 refused (err; EBUSY while an
 * import or a download writes the same bytes). */
struct json_object;
typedef void (*images_import_done)(struct cellsd *d, struct json_object *desc,
				   const cells_err_t *err, void *data);
int images_import(struct cellsd *d, int fd, const uint8_t *bundle, size_t n, const char *actor,
		  images_import_done done, void *data, struct json_object **desc, cells_err_t *err);
/* The one watcher of imports (management: an MDM offer of bytes being imported is
 * answered when the import ends): called after each import's done, with the image's
 * SHA-256 (hex) and err NULL when it is verified and mounted. Not called for the imports
 * cut by cellsd stopping. */
typedef void (*images_imported_fn)(struct cellsd *d, const char *hex, const cells_err_t *err);
void images_on_imported(struct cellsd *d, images_imported_fn fn);

/* The network path (Envelope.image): verify the bare Signed manifest with the held
 * trust and record it (image.accepted / image.rejected). 0: new, to be downloaded;
 * 1: known already (*complete says whether its file is on the device). *m filled. */
struct pol_image_manifest;
int images_offer(struct cellsd *d, const uint8_t *signed_blob, size_t n, const char *actor,
		 struct pol_image_manifest *m, bool *complete, cells_err_t *err);

/* Download support for a recorded, incomplete image (sha256 hex): open its partial file
 * for appending and reading (O_RDWR | O_APPEND; the fd is returned, owned by the caller),
 * its current length and the signed size. */
int images_partial_open(struct cellsd *d, const char *hex, uint64_t *have, uint64_t *size,
			cells_err_t *err);
/* The first recorded image whose file is not complete yet: its SHA-256 (hex) and
 * "NAME@VERSION". -1 (ENOENT) when none. */
int images_next_pending(struct cellsd *d, char hex[65], char ref[IMAGES_NAME_MAX + 24]);
/* The partial file of hex grew to have bytes (for status). */
void images_partial_progress(struct cellsd *d, const char *hex, uint64_t have);
/* Check the partial file of hex: fsync, size and SHA-256 (sha256: what cellsd hashed as
 * it wrote the file) against the manifest; rename, mount, audit. A mismatch removes the partial
 * file, marks the image failed (audited) and returns -1 (EBADMSG). */
int images_partial_finish(struct cellsd *d, const char *hex, const uint8_t *sha256,
			  cells_err_t *err);
/* Give up on hex: remove the partial file, mark it failed with reason (audited). */
void images_partial_fail(struct cellsd *d, const char *hex, const char *reason);
/* A transfer of hex ended short (a retry follows, maybe much later when offline): its
 * partial file has no writer until images_partial_open again, so `cellctl image import`
 * of the same bytes may take over meanwhile. */
void images_partial_release(struct cellsd *d, const char *hex);

/* JSON (owned): every image ({"images": [...]}) or the one named (newest version first;
 * NULL with ENOENT when unknown). */
struct json_object *images_list(struct cellsd *d);
struct json_object *images_status(struct cellsd *d, const char *name, cells_err_t *err);

#endif
