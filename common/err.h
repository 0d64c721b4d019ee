/* err.h - the error contract of every Cells module (after crun's libcrun_error_t).
 *
 * A fallible function returns 0 (or a non-negative count) on success and a negative
 * value on failure, and fills the caller's cells_err_t with an errno value and one line
 * of text. Every error site writes one line; callers add context on the way up with
 * cells_err_prefix() ("vp create work: mount overlay: Permission denied").
 * The err argument may be NULL when the caller does not care about the text.
 */
#ifndef CELLS_ERR_H
#define CELLS_ERR_H

#include <stddef.h>

#define CELLS_ERR_MSG_MAX 512

typedef struct cells_err {
	int code;		     /* errno value, or 0 when not an OS error */
	char msg[CELLS_ERR_MSG_MAX]; /* one line, no trailing newline */
} cells_err_t;

/* Set err from a printf-style message; returns -1 (so `return cells_err_set(...)`).
 * errnum is stored as err->code; message has no errno text appended. */
int cells_err_set(cells_err_t *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like cells_err_set but appends ": strerror(errnum)" to the message. */
int cells_err_sys(cells_err_t *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepend "context: " to an already set error; returns -1. */
int cells_err_prefix(cells_err_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Append the OpenSSL error queue's first entry (and clear the queue). Returns -1. */
int cells_err_ssl(cells_err_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void cells_err_clear(cells_err_t *err);

#endif
