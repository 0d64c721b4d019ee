/* audit.h - the tamper-evident audit log (STATE_DIR/audit.db).
 *
 * audit_append() returns only after the record is durable; a caller that gets -1 must
 * not carry out the security-relevant operation it was about to log (fail closed).
 * Record fields: vp ("" for device-wide), actor ("cellsd", "mdm", "uid:N", "vp:NAME"),
 * event (dotted type such as "policy.rejected"), outcome ("ok", "refused", "failed"),
 * details (a JSON object, borrowed, may be NULL). */
#ifndef CELLS_AUDIT_H
#define CELLS_AUDIT_H

#include <stdint.h>

#include <json-c/json.h>

#include "err.h"

struct audit;

int audit_open(const char *path, struct audit **out, cells_err_t *err);
void audit_close(struct audit *a);
int audit_append(struct audit *a, const char *vp, const char *actor, const char *event,
		 const char *outcome, json_object *details, uint64_t *seq, cells_err_t *err);

#endif
