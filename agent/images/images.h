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

struct cellsd;

#define IMAGES_NAME_MAX 32

/* "NAME@VERSION" -> name, version (version >= 1). -1 (EINVAL) when malformed. */
int images_ref_parse(const char *ref, char name[IMAGES_NAME_MAX + 1], uint64_t *version,
		     cells_err_t *err);

/* The mount point of the complete, verified image NAME@VERSION into path, mounting it
 * (read-only, once) if it is not mounted yet, and taking one reference on it for a VP.
 * -1 with ENOENT when the image is not complete and verified on the device. */
int images_acquire(struct cellsd *d, const char *name, uint64_t version, char path[PATH_MAX],
		   cells_err_t *err);
/* Drop a reference taken by images_acquire (a VP stopped or moved to another version).
 * An image with no reference that is not the newest of its name may be unmounted and
 * removed. */
void images_release(struct cellsd *d, const char *name, uint64_t version);

#endif
