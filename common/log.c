#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int g_level = LOG_INFO;
static bool g_syslog;
static const char *g_ident = "cells";

int cells_log_level_parse(const char *s)
{
	static const struct {
		const char *name;
		int level;
	} names[] = {{"error", LOG_ERR},
		     {"warn", LOG_WARNING},
		     {"warning", LOG_WARNING},
		     {"info", LOG_INFO},
		     {"debug", LOG_DEBUG}};
	for (size_t i = 0; s && i < sizeof names / sizeof names[0]; i++)
		if (strcmp(s, names[i].name) == 0)
			return names[i].level;
	return -1;
}

void cells_log_init(const char *ident, int level, bool use_syslog)
{
	g_ident = ident;
	g_level = level;
	int env = cells_log_level_parse(getenv("CELLS_LOG_LEVEL"));
	if (env >= 0)
		g_level = env;
	g_syslog = use_syslog;
	if (use_syslog)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void cells_log_set_level(int level)
{
	g_level = level;
}

void cells_log(int level, const char *fmt, ...)
{
	static const char *tags[] = {"emerg", "alert", "crit", "error",
				     "warn",  "note",  "info", "debug"};
	char line[1024];
	va_list ap;
	if (level > g_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	for (char *p = line; *p; p++)
		if (*p == '\n')
			*p = ' ';
	if (g_syslog)
		syslog(level, "%s", line);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	fprintf(stderr, "%02d:%02d:%02d.%03ld %s[%d] %s: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
		ts.tv_nsec / 1000000, g_ident, (int)getpid(), tags[level & 7], line);
}
