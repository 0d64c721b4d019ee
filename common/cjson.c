/* cjson.c - strict JSON getters (see cjson.h). */
#include "cjson.h"

#include <errno.h>
#include <string.h>

#define PLACE(where, key) (where), *(where) ? "." : "", (key)

int cj_only_keys(json_object *obj, const char *where, const char *const *allowed, cells_err_t *err)
{
	json_object_object_foreach(obj, k, v)
	{
		(void)v;
		bool ok = false;
		for (size_t i = 0; allowed[i] && !ok; i++)
			ok = !strcmp(allowed[i], k);
		if (!ok)
			return cells_err_set(err, EINVAL, "%s%s%.40s: unknown key",
					     PLACE(where, k));
	}
	return 0;
}

json_object *cj_get(json_object *obj, const char *key)
{
	json_object *v = NULL;
	return json_object_object_get_ex(obj, key, &v) ? v : NULL;
}

/* The value of key when present and of type t: 1; absent 0; another type -1. */
static int typed(json_object *obj, const char *where, const char *key, json_type t,
		 const char *what, json_object **v, cells_err_t *err)
{
	*v = cj_get(obj, key);
	if (!*v)
		return 0;
	if (!json_object_is_type(*v, t))
		return cells_err_set(err, EINVAL, "%s%s%s: not %s", PLACE(where, key), what);
	return 1;
}

int cj_int(json_object *obj, const char *where, const char *key, int64_t min, int64_t max,
	   int64_t *out, cells_err_t *err)
{
	json_object *v;
	int rc = typed(obj, where, key, json_type_int, "an integer", &v, err);
	if (rc <= 0)
		return rc;
	errno = 0;
	int64_t x = json_object_get_int64(v);
	if (errno || x < min || x > max)
		return cells_err_set(err, EINVAL, "%s%s%s: %lld is out of range %lld..%lld",
				     PLACE(where, key), (long long)x, (long long)min,
				     (long long)max);
	*out = x;
	return 1;
}

int cj_bool(json_object *obj, const char *where, const char *key, bool *out, cells_err_t *err)
{
	json_object *v;
	int rc = typed(obj, where, key, json_type_boolean, "true or false", &v, err);
	if (rc > 0)
		*out = json_object_get_boolean(v);
	return rc;
}

int cj_str(json_object *obj, const char *where, const char *key, size_t max, const char **out,
	   cells_err_t *err)
{
	json_object *v;
	int rc = typed(obj, where, key, json_type_string, "a string", &v, err);
	if (rc <= 0)
		return rc;
	const char *s = json_object_get_string(v);
	size_t n = (size_t)json_object_get_string_len(v);
	if (n != strlen(s))
		return cells_err_set(err, EINVAL, "%s%s%s: contains a NUL byte", PLACE(where, key));
	if (max && n > max)
		return cells_err_set(err, EINVAL, "%s%s%s: longer than %zu bytes",
				     PLACE(where, key), max);
	*out = s;
	return 1;
}

int cj_obj(json_object *obj, const char *where, const char *key, json_object **out,
	   cells_err_t *err)
{
	json_object *v;
	int rc = typed(obj, where, key, json_type_object, "an object", &v, err);
	if (rc > 0)
		*out = v;
	return rc;
}

int cj_array(json_object *obj, const char *where, const char *key, json_object **out,
	     cells_err_t *err)
{
	json_object *v;
	int rc = typed(obj, where, key, json_type_array, "an array", &v, err);
	if (rc > 0)
		*out = v;
	return rc;
}

int cj_required(int got, const char *where, const char *key, cells_err_t *err)
{
	if (got == 0)
		return cells_err_set(err, EINVAL, "%s%s%s: missing", PLACE(where, key));
	return got < 0 ? -1 : 1;
}
