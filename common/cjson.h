/* cjson.h - strict JSON getters over json-c, shared by every parser of JSON documents
 * (policy JSON, device profiles). Strict: a key of the wrong type is an error (never
 * coerced), unknown keys are refused by cj_only_keys, strings may not hold a NUL byte
 * or exceed their bound. Errors name the place: "<where>.<key>: <what>".
 *
 * Getters return 1 when the key is present and valid (*out set), 0 when it is absent
 * (*out untouched), -1 with err set when it is present but invalid. */
#ifndef CELLS_CJSON_H
#define CELLS_CJSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "err.h"

static inline void cells_json_putp(json_object **o)
{
	if (*o)
		json_object_put(*o);
}
/* A json-c object released at scope exit (steal_pointer hands it over). */
#define cleanup_json __attribute__((cleanup(cells_json_putp)))

/* Refuse a key of obj not in allowed (NULL-terminated). */
int cj_only_keys(json_object *obj, const char *where, const char *const *allowed, cells_err_t *err);
json_object *cj_get(json_object *obj, const char *key);
int cj_int(json_object *obj, const char *where, const char *key, int64_t min, int64_t max,
	   int64_t *out, cells_err_t *err);
int cj_bool(json_object *obj, const char *where, const char *key, bool *out, cells_err_t *err);
/* *out points into obj; max: the longest accepted length in bytes (0: no bound). */
int cj_str(json_object *obj, const char *where, const char *key, size_t max, const char **out,
	   cells_err_t *err);
int cj_obj(json_object *obj, const char *where, const char *key, json_object **out,
	   cells_err_t *err);
int cj_array(json_object *obj, const char *where, const char *key, json_object **out,
	     cells_err_t *err);
/* A present key is required: like the getters, but absent is -1 ("missing"). */
int cj_required(int got, const char *where, const char *key, cells_err_t *err);

#endif
