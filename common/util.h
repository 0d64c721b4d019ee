/* util.h - small file, name and time helpers shared by every Cells program. */
#ifndef CELLS_UTIL_H
#define CELLS_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

/* Read a whole file of at most max bytes into a new malloc'd buffer (NUL-terminated,
 * the NUL not counted in *len). A larger file is refused with EFBIG before reading it. */
int cells_read_file(const char *path, size_t max, uint8_t **out, size_t *len, cells_err_t *err);

/* Write data to path atomically and durably: temp file in the same directory, fsync,
 * rename over path, fsync the directory. */
int cells_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
			    cells_err_t *err);

/* mkdir -p with mode for the missing components. */
int cells_mkdir_p(const char *path, mode_t mode, cells_err_t *err);

/* Remove a directory tree without following symlinks or crossing mount points. */
int cells_rm_rf(const char *path, cells_err_t *err);

/* A name usable for a VP, key id or file: 1..32 chars of [a-z0-9_-], starts with a
 * letter or digit. Fills err with a one-line reason when not. */
int cells_valid_name(const char *name, cells_err_t *err);

/* Lowercase hex of n bytes into out (2n+1 bytes). */
void cells_hex(const uint8_t *in, size_t n, char *out);
/* Parse exactly n bytes of hex; -1 on any other length or a non-hex char. */
int cells_unhex(const char *in, uint8_t *out, size_t n);

int64_t cells_now_us(void);  /* CLOCK_REALTIME, microseconds */
int64_t cells_mono_ns(void); /* CLOCK_MONOTONIC, nanoseconds */

/* Write all bytes, retrying on EINTR / short writes. */
int cells_write_all(int fd, const void *p, size_t n);

/* Mark an fd close-on-exec / non-blocking. */
int cells_set_cloexec(int fd);
int cells_set_nonblock(int fd);

/* Close every fd >= lowfd except those listed (for forked children before exec). */
void cells_close_fds_from(int lowfd, const int *keep, size_t nkeep);

#endif
