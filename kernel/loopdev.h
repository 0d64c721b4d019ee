/* loopdev.h - a filesystem image on a loop device: create an ext4 image with the
 * `encrypt` feature (mkfs.ext4), attach it to a free loop device (LOOP_CTL_GET_FREE +
 * LOOP_CONFIGURE, autoclear: the device goes away with the last unmount), mount it read-write,
 * mount a read-only erofs/squashfs image (a signed VP image, agent/images), and
 * discard a filesystem's free space (FITRIM: the loop driver punches holes in the image
 * file, so freed blocks hold zeros). */
#ifndef CELLS_LOOPDEV_H
#define CELLS_LOOPDEV_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

/* Create a sparse image of size_bytes at path and make an ext4 filesystem with the
 * encrypt feature on it (refuses when path exists). */
int loopdev_make_ext4_image(const char *path, uint64_t size_bytes, cells_err_t *err);
/* Attach image to a free loop device (autoclear, direct I/O off) and mount it as ext4
 * on mountpoint (nosuid, nodev, noexec). */
int loopdev_mount_image(const char *image, const char *mountpoint, cells_err_t *err);
/* Attach image read-only (O_RDONLY backing file, LO_FLAGS_READ_ONLY, autoclear) and
 * mount it read-only as fstype ("erofs" or "squashfs") on mountpoint (ro, nodev,
 * nosuid; exec allowed: it is a VP's root file system), with direct I/O to the image
 * file where its file system allows (the image is then cached once, not twice). */
int loopdev_mount_image_ro(const char *image, const char *fstype, const char *mountpoint,
			   cells_err_t *err);
/* Whether something is mounted exactly at path (from /proc/self/mountinfo). */
bool loopdev_is_mountpoint(const char *path);
/* FITRIM the whole filesystem of fd; *trimmed gets the bytes the kernel reports. */
int loopdev_fstrim(int fd, uint64_t *trimmed, cells_err_t *err);

#endif
