/* devprofile.c - strict parser of device profiles (see devprofile.h). */
#include "devprofile.h"
#include "cjson.h"
#include "cleanup.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#define DEVPROFILE_FORMAT "cells-device-profile/1"

static const char *const mode_names[] = {"no-access", "shared", "exclusive"};

const char *devmode_name(enum devmode_kind m)
{
	return (unsigned)m < CELLS_ARRAY_SIZE(mode_names) ? mode_names[m] : "?";
}

int devmode_parse(const char *s, enum devmode_kind *out)
{
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(mode_names); i++)
		if (!strcmp(s, mode_names[i])) {
			*out = (enum devmode_kind)i;
			return 0;
		}
	return -1;
}

/* [a-z0-9][a-z0-9-]{0,31} */
static bool valid_class_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > DEVPROFILE_NAME_MAX ||
	    !(islower((unsigned char)s[0]) || isdigit((unsigned char)s[0])))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '-'))
			return false;
	return true;
}

/* An absolute path under /dev/ of [A-Za-z0-9._-/] components, no "." or ".." and no
 * empty component: it is created inside a VP's /dev, so it must not escape it. */
static bool valid_dev_path(const char *s)
{
	size_t n = strlen(s);
	if (n < 6 || n >= DEVPROFILE_PATH_MAX || strncmp(s, "/dev/", 5) != 0)
		return false;
	const char *c = s + 5;
	while (*c) {
		const char *e = strchr(c, '/');
		size_t len = e ? (size_t)(e - c) : strlen(c);
		if (len == 0 || (len == 1 && c[0] == '.') ||
		    (len == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		for (size_t i = 0; i < len; i++)
			if (!(isalnum((unsigned char)c[i]) || c[i] == '.' || c[i] == '_' ||
			      c[i] == '-' || c[i] == ':'))
				return false;
		c += len;
		if (*c == '/')
			c++;
		if (e && !*c)
			return false; /* trailing slash */
	}
	return true;
}

static bool printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/* A bounded, printable string into out ("" when absent and not required). */
static int get_string(json_object *o, const char *key, bool required, char *out, size_t max,
		      const char *where, cells_err_t *err)
{
	const char *s = NULL;
	int rc = cj_str(o, where, key, max - 1, &s, err);
	if (rc == 0 && required)
		rc = cj_required(rc, where, key, err);
	if (rc < 0)
		return -1;
	out[0] = 0;
	if (rc == 0)
		return 0;
	if (!printable(s))
		return cells_err_set(err, EINVAL, "%s.%s: has control characters", where, key);
	memcpy(out, s, strlen(s) + 1);
	return 0;
}

static int get_bool(json_object *o, const char *key, bool *out, const char *where, cells_err_t *err)
{
	*out = false;
	return cj_bool(o, where, key, out, err) < 0 ? -1 : 0;
}

/* "c 10:200", "b 8:*" */
static int parse_dev(const char *s, struct devprofile_node *n)
{
	if ((s[0] != 'c' && s[0] != 'b') || s[1] != ' ' || !isdigit((unsigned char)s[2]))
		return -1;
	char *end;
	errno = 0;
	unsigned long maj = strtoul(s + 2, &end, 10);
	if (errno || maj > 4095 || *end != ':')
		return -1;
	const char *m = end + 1;
	unsigned long min;
	if (!strcmp(m, "*"))
		min = DEVPROFILE_ANY_MINOR;
	else {
		if (!isdigit((unsigned char)m[0]))
			return -1;
		min = strtoul(m, &end, 10);
		if (errno || min > 1048575 || *end)
			return -1;
	}
	n->type = s[0];
	n->major = (unsigned)maj;
	n->minor = (unsigned)min;
	n->has_dev = true;
	return 0;
}

static int parse_node(json_object *o, struct devprofile_node *n, const char *where,
		      cells_err_t *err)
{
	static const char *const keys[] = {"path", "dev", "perm", "virtual", NULL};
	if (!json_object_is_type(o, json_type_object))
		return cells_err_set(err, EINVAL, "%s: a node must be an object", where);
	if (cj_only_keys(o, where, keys, err) < 0)
		return -1;
	char dev[24];
	if (get_string(o, "path", false, n->path, sizeof n->path, where, err) < 0 ||
	    get_string(o, "dev", false, dev, sizeof dev, where, err) < 0 ||
	    get_bool(o, "virtual", &n->is_virtual, where, err) < 0)
		return -1;
	if (n->path[0] && !valid_dev_path(n->path))
		return cells_err_set(err, EINVAL,
				     "%s: path \"%s\" must be a plain path under /dev/", where,
				     n->path);
	if (dev[0] && parse_dev(dev, n) < 0)
		return cells_err_set(err, EINVAL,
				     "%s: dev \"%s\" must be \"c|b MAJOR:MINOR\" (MINOR may be *)",
				     where, dev);
	if (!n->path[0] && !n->has_dev)
		return cells_err_set(err, EINVAL, "%s: a node needs a path or a dev", where);
	if (n->path[0] && n->has_dev && n->minor == DEVPROFILE_ANY_MINOR)
		return cells_err_set(err, EINVAL, "%s: a node with a path needs one minor", where);
	if (n->is_virtual && strncmp(n->path, "/dev/cells/", 11) != 0)
		return cells_err_set(err, EINVAL, "%s: a virtual node lives under /dev/cells/",
				     where);
	if (!n->is_virtual && !strncmp(n->path, "/dev/cells/", 11))
		return cells_err_set(err, EINVAL,
				     "%s: /dev/cells/ belongs to cellsd's virtual devices", where);
	n->perm = 0666;
	json_object *p;
	if (json_object_object_get_ex(o, "perm", &p)) {
		if (!json_object_is_type(p, json_type_string))
			return cells_err_set(err, EINVAL, "%s: perm must be an octal string",
					     where);
		const char *s = json_object_get_string(p);
		char *end;
		unsigned long v = strtoul(s, &end, 8);
		if (!*s || *end || v > 0666 || strlen(s) > 4)
			return cells_err_set(err, EINVAL,
					     "%s: perm must be octal, at most 0666 (no exec/suid)",
					     where);
		n->perm = (unsigned)v;
	}
	return 0;
}

static int parse_class(json_object *o, struct devprofile_class *c, size_t idx, cells_err_t *err)
{
	static const char *const keys[] = {"class", "description", "modes", "foreground_bound",
					   "nodes", NULL};
	char where[64];
	snprintf(where, sizeof where, "classes[%zu]", idx);
	if (!json_object_is_type(o, json_type_object))
		return cells_err_set(err, EINVAL, "%s: must be an object", where);
	if (cj_only_keys(o, where, keys, err) < 0 ||
	    get_string(o, "class", true, c->name, sizeof c->name, where, err) < 0 ||
	    get_string(o, "description", false, c->description, sizeof c->description, where, err) <
		0 ||
	    get_bool(o, "foreground_bound", &c->foreground_bound, where, err) < 0)
		return -1;
	if (!valid_class_name(c->name))
		return cells_err_set(err, EINVAL, "%s: class \"%s\" must match [a-z0-9][a-z0-9-]*",
				     where, c->name);
	snprintf(where, sizeof where, "class %s", c->name);
	json_object *modes, *nodes;
	if (!json_object_object_get_ex(o, "modes", &modes) ||
	    !json_object_is_type(modes, json_type_array))
		return cells_err_set(err, EINVAL, "%s: \"modes\" must be an array", where);
	c->modes = DEVMODE_BIT(DEVMODE_NONE);
	size_t nm = json_object_array_length(modes);
	if (nm == 0 || nm > 3)
		return cells_err_set(err, EINVAL, "%s: \"modes\" lists 1 to 3 modes", where);
	for (size_t i = 0; i < nm; i++) {
		json_object *m = json_object_array_get_idx(modes, i);
		enum devmode_kind k;
		if (!json_object_is_type(m, json_type_string) ||
		    devmode_parse(json_object_get_string(m), &k) < 0)
			return cells_err_set(
			    err, EINVAL, "%s: a mode is \"no-access\", \"shared\" or \"exclusive\"",
			    where);
		if ((c->modes & DEVMODE_BIT(k)) && k != DEVMODE_NONE)
			return cells_err_set(err, EINVAL, "%s: mode %s listed twice", where,
					     devmode_name(k));
		c->modes |= DEVMODE_BIT(k);
	}
	if (!json_object_object_get_ex(o, "nodes", &nodes) ||
	    !json_object_is_type(nodes, json_type_array))
		return cells_err_set(err, EINVAL, "%s: \"nodes\" must be an array", where);
	size_t nn = json_object_array_length(nodes);
	if (nn > DEVPROFILE_MAX_NODES)
		return cells_err_set(err, EINVAL, "%s: more than %d nodes", where,
				     DEVPROFILE_MAX_NODES);
	for (size_t i = 0; i < nn; i++) {
		char w2[96];
		snprintf(w2, sizeof w2, "%s node %zu", where, i);
		if (parse_node(json_object_array_get_idx(nodes, i), &c->nodes[i], w2, err) < 0)
			return -1;
		for (size_t j = 0; j < i; j++)
			if (c->nodes[i].path[0] && !strcmp(c->nodes[i].path, c->nodes[j].path))
				return cells_err_set(err, EINVAL, "%s: path %s listed twice", where,
						     c->nodes[i].path);
	}
	c->nnodes = nn;
	return 0;
}

int devprofile_parse(const uint8_t *buf, size_t len, struct devprofile **out, cells_err_t *err)
{
	*out = NULL;
	if (len > DEVPROFILE_MAX_BYTES)
		return cells_err_set(err, EFBIG, "device profile larger than %d bytes",
				     DEVPROFILE_MAX_BYTES);
	if (memchr(buf, 0, len))
		return cells_err_set(err, EINVAL, "device profile contains a NUL byte");
	struct json_tokener *tok = json_tokener_new_ex(8);
	if (!tok)
		return cells_err_set(err, ENOMEM, "out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	json_object *root = json_tokener_parse_ex(tok, (const char *)buf, (int)len);
	enum json_tokener_error je = json_tokener_get_error(tok);
	size_t used = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (!root || je != json_tokener_success) {
		json_object_put(root);
		return cells_err_set(err, EINVAL, "device profile is not valid JSON: %s",
				     root ? "incomplete" : json_tokener_error_desc(je));
	}
	for (size_t i = used; i < len; i++)
		if (!isspace((unsigned char)buf[i])) {
			json_object_put(root);
			return cells_err_set(err, EINVAL, "device profile: bytes after the JSON");
		}
	static const char *const keys[] = {"format", "name", "description", "classes", NULL};
	cleanup_free struct devprofile *p = calloc(1, sizeof *p);
	char fmt[40];
	json_object *classes;
	int rc = -1;
	if (!p) {
		cells_err_set(err, ENOMEM, "out of memory");
		goto out;
	}
	if (!json_object_is_type(root, json_type_object)) {
		cells_err_set(err, EINVAL, "device profile must be a JSON object");
		goto out;
	}
	if (cj_only_keys(root, "profile", keys, err) < 0 ||
	    get_string(root, "format", true, fmt, sizeof fmt, "profile", err) < 0 ||
	    get_string(root, "name", true, p->name, sizeof p->name, "profile", err) < 0 ||
	    get_string(root, "description", false, p->description, sizeof p->description, "profile",
		       err) < 0)
		goto out;
	if (strcmp(fmt, DEVPROFILE_FORMAT) != 0) {
		cells_err_set(err, EINVAL, "profile: format must be \"" DEVPROFILE_FORMAT "\"");
		goto out;
	}
	if (cells_valid_name(p->name, err) < 0) {
		cells_err_prefix(err, "profile name");
		goto out;
	}
	if (!json_object_object_get_ex(root, "classes", &classes) ||
	    !json_object_is_type(classes, json_type_array)) {
		cells_err_set(err, EINVAL, "profile: \"classes\" must be an array");
		goto out;
	}
	size_t nc = json_object_array_length(classes);
	if (nc > DEVPROFILE_MAX_CLASSES) {
		cells_err_set(err, EINVAL, "profile: more than %d classes", DEVPROFILE_MAX_CLASSES);
		goto out;
	}
	for (size_t i = 0; i < nc; i++) {
		if (parse_class(json_object_array_get_idx(classes, i), &p->classes[i], i, err) < 0)
			goto out;
		for (size_t j = 0; j < i; j++)
			if (!strcmp(p->classes[i].name, p->classes[j].name)) {
				cells_err_set(err, EINVAL, "profile: class %s listed twice",
					      p->classes[i].name);
				goto out;
			}
	}
	p->nclasses = nc;
	*out = steal_pointer(&p);
	rc = 0;
out:
	json_object_put(root);
	return rc;
}

void devprofile_resolve(struct devprofile *p)
{
	for (size_t i = 0; i < p->nclasses; i++)
		for (size_t j = 0; j < p->classes[i].nnodes; j++) {
			struct devprofile_node *n = &p->classes[i].nodes[j];
			if (n->is_virtual || !n->path[0])
				continue;
			struct stat st;
			if (stat(n->path, &st) < 0 ||
			    !(S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))) {
				n->missing = !n->has_dev;
				continue;
			}
			if (!n->has_dev) {
				n->type = S_ISCHR(st.st_mode) ? 'c' : 'b';
				n->major = major(st.st_rdev);
				n->minor = minor(st.st_rdev);
				n->has_dev = true;
			}
		}
}

int devprofile_load(const char *path, struct devprofile **out, cells_err_t *err)
{
	cleanup_free uint8_t *b = NULL;
	size_t n;
	if (cells_read_file(path, DEVPROFILE_MAX_BYTES, &b, &n, err) < 0)
		return cells_err_prefix(err, "device profile %s", path);
	if (devprofile_parse(b, n, out, err) < 0)
		return cells_err_prefix(err, "device profile %s", path);
	devprofile_resolve(*out);
	return 0;
}

const struct devprofile_class *devprofile_class(const struct devprofile *p, const char *name)
{
	for (size_t i = 0; p && i < p->nclasses; i++)
		if (!strcmp(p->classes[i].name, name))
			return &p->classes[i];
	return NULL;
}

json_object *devprofile_node_json(const struct devprofile_node *n)
{
	json_object *o = json_object_new_object();
	if (n->path[0])
		json_object_object_add(o, "path", json_object_new_string(n->path));
	if (n->has_dev) {
		char dev[32];
		if (n->minor == DEVPROFILE_ANY_MINOR)
			snprintf(dev, sizeof dev, "%c %u:*", n->type, n->major);
		else
			snprintf(dev, sizeof dev, "%c %u:%u", n->type, n->major, n->minor);
		json_object_object_add(o, "dev", json_object_new_string(dev));
	}
	if (n->is_virtual)
		json_object_object_add(o, "virtual", json_object_new_boolean(1));
	if (n->missing)
		json_object_object_add(o, "missing", json_object_new_boolean(1));
	return o;
}
