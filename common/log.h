/* log.h - leveled logging to stderr and (optionally) syslog.
 * Levels follow syslog. The threshold comes from cells_log_init() or $CELLS_LOG_LEVEL
 * (error|warn|info|debug). Each call writes one line. */
#ifndef CELLS_LOG_H
#define CELLS_LOG_H

#include <stdbool.h>
#include <syslog.h>

void cells_log_init(const char *ident, int level, bool use_syslog);
void cells_log_set_level(int level);
int cells_log_level_parse(const char *s); /* -1 when unknown */
void cells_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) cells_log(LOG_ERR, __VA_ARGS__)
#define log_warn(...) cells_log(LOG_WARNING, __VA_ARGS__)
#define log_info(...) cells_log(LOG_INFO, __VA_ARGS__)
#define log_debug(...) cells_log(LOG_DEBUG, __VA_ARGS__)

#endif
