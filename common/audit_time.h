/* audit_time.h - the time syntax of the audit filters (--since/--until), shared by
 * cellctl and cells-mdm. Header-only and pure: common/, which every program links. */
#ifndef CELLS_AUDIT_TIME_H
#define CELLS_AUDIT_TIME_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

/* Parse unix seconds ("@" optional), YYYY-MM-DD[THH:MM[:SS]][Z] (UTC), or an age such
 * as 10s, 5m, 2h, 3d (before now_us) into microseconds. Returns 0 or -1. */
static inline int audit_parse_time(const char *s, int64_t now_us, int64_t *out_us)
{
	char *end = NULL;
	if (!s || !*s)
		return -1;
	if (s[0] >= '0' && s[0] <= '9') {
		errno = 0;
		long long v = strtoll(s, &end, 10);
		if (errno == 0 && end && end[0] && !end[1] && v >= 0 && v < 100000000) {
			long long mul = end[0] == 's'	? 1
					: end[0] == 'm' ? 60
					: end[0] == 'h' ? 3600
					: end[0] == 'd' ? 86400
							: 0;
			if (mul) {
				*out_us = now_us - v * mul * 1000000;
				return 0;
			}
		}
	}
	const char *p = s[0] == '@' ? s + 1 : s;
	errno = 0;
	long long v = strtoll(p, &end, 10);
	if (errno == 0 && end && !*end && end != p && v >= 0 && v < 100000000000LL) {
		*out_us = v * 1000000;
		return 0;
	}
	struct tm tm = {0};
	const char *r = strptime(s, "%Y-%m-%d", &tm);
	if (!r)
		return -1;
	if (*r == 'T' || *r == ' ') {
		const char *r2 = strptime(r + 1, "%H:%M:%S", &tm);
		if (!r2)
			r2 = strptime(r + 1, "%H:%M", &tm);
		if (!r2)
			return -1;
		r = r2;
	}
	if (*r == 'Z')
		r++;
	if (*r)
		return -1;
	*out_us = (int64_t)timegm(&tm) * 1000000;
	return 0;
}

#endif
