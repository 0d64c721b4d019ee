/* pol_json.h - the policy's human-friendly JSON form (docs/PROTOCOL.md "Policy JSON").
 * Strict: an unknown key, a wrong type or an unknown enum name is refused with a message
 * naming the key path ("vps[0].devices.camera: unknown mode 'maybe'"). The result is
 * validated with pol_policy_validate(). Pure code on buffers. */
#ifndef CELLS_POL_JSON_H
#define CELLS_POL_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "err.h"
#include "wire.h"

#define POL_MAX_JSON (256 * 1024)
/* vps[].lock_after_offline_s / wipe_after_offline_s: 0 (never) .. one year; a wipe
 * limit below the lock limit is refused. */
#define POL_MAX_OFFLINE_S (366 * 24 * 3600)

/* JSON text -> the serialized Policy (the bytes to sign; *payload owned). Without a
 * top-level "device" the result is a template with an empty device id (validated
 * otherwise) that `cells-mdm policy push` completes per device; `cells-mdm policy sign`
 * and every device refuse a policy without one. A VP may be named "name" or "vp". */
int pol_json_to_policy(const char *text, size_t n, uint8_t **payload, size_t *len,
		       cells_err_t *err);
/* Policy -> a new JSON object in the same format (owned; NULL on ENOMEM or when p does
 * not fit a pol_model). */
json_object *pol_policy_to_json(const Cells__V1__Policy *p);
/* The same JSON of a policy's model (pol_model.h). */
struct pol_model;
json_object *pol_model_to_json(const struct pol_model *m);

#endif
