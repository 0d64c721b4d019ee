#include "err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

__attribute__((format(printf, 3, 0))) static void vset(cells_err_t *err, int errnum,
						       const char *fmt, va_list ap)
{
	if (!err)
		return;
	err->code = errnum;
	vsnprintf(err->msg, sizeof err->msg, fmt, ap);
	/* one line: fold any newline from a caller's string */
	for (char *p = err->msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
}

int cells_err_set(cells_err_t *err, int errnum, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vset(err, errnum, fmt, ap);
	va_end(ap);
	return -1;
}

int cells_err_sys(cells_err_t *err, int errnum, const char *fmt, ...)
{
	va_list ap;
	if (!err)
		return -1;
	va_start(ap, fmt);
	vset(err, errnum, fmt, ap);
	va_end(ap);
	size_t n = strlen(err->msg);
	snprintf(err->msg + n, sizeof err->msg - n, ": %s", strerror(errnum));
	return -1;
}

int cells_err_prefix(cells_err_t *err, const char *fmt, ...)
{
	char ctx[CELLS_ERR_MSG_MAX];
	char old[CELLS_ERR_MSG_MAX];
	va_list ap;
	if (!err)
		return -1;
	va_start(ap, fmt);
	vsnprintf(ctx, sizeof ctx, fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof old);
	size_t n = strnlen(ctx, sizeof ctx - 1);
	size_t room = sizeof err->msg - 1;
	if (n > room)
		n = room;
	memcpy(err->msg, ctx, n);
	if (n + 2 <= room) {
		memcpy(err->msg + n, ": ", 2);
		n += 2;
	}
	size_t ol = strnlen(old, sizeof old - 1);
	if (ol > room - n)
		ol = room - n;
	memcpy(err->msg + n, old, ol);
	err->msg[n + ol] = 0;
	return -1;
}

int cells_err_ssl(cells_err_t *err, const char *fmt, ...)
{
	va_list ap;
	unsigned long e = ERR_get_error();
	ERR_clear_error();
	if (!err)
		return -1;
	va_start(ap, fmt);
	vset(err, EPROTO, fmt, ap);
	va_end(ap);
	if (e) {
		char buf[256];
		ERR_error_string_n(e, buf, sizeof buf);
		size_t n = strlen(err->msg);
		snprintf(err->msg + n, sizeof err->msg - n, ": %s", buf);
	}
	return -1;
}

void cells_err_clear(cells_err_t *err)
{
	if (err) {
		err->code = 0;
		err->msg[0] = '\0';
	}
}
