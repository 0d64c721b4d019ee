/* devprofile.h - the device profile: which devices this phone has, grouped in classes.
 *
 * A profile is a JSON file (profiles/NAME.json, format in docs/DEVICES.md "Device
 * profile") naming, per device class (display, input, audio, camera, gps, gpu-render,
 * modem, storage, sensors, power, wifi, ...), the nodes behind it, the access modes
 * it supports and whether it follows the foreground VP. Two kinds of node:
 *   - a device node: a path under /dev (created in a VP's /dev when the VP may use the
 *     class) and/or a char or block major:minor (allowed in the VP's device cgroup);
 *     minor "*" means every minor of the major (cgroup rule only, no path);
 *   - a virtual device of cellsd ("virtual": true): a file cellsd itself serves in the
 *     VP's /dev/cells (display panel, power, wpa_ctrl ...); listed, never mknod'ed.
 *
 * devprofile_parse() is the strict parser (fuzzed: tests/fuzz/fuzz_devprofile.c): it
 * refuses unknown keys, wrong types, duplicate classes, bad names and oversize input.
 * It does no I/O. devprofile_resolve() then fills in the major:minor of nodes given
 * only by path, from the host's node (stat), and marks nodes missing on this host.
 */
#ifndef CELLS_DEVPROFILE_H
#define CELLS_DEVPROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "err.h"

#define DEVPROFILE_MAX_BYTES (64 * 1024)
#define DEVPROFILE_MAX_CLASSES 48
#define DEVPROFILE_MAX_NODES 16
#define DEVPROFILE_NAME_MAX 32
#define DEVPROFILE_PATH_MAX 96
#define DEVPROFILE_ANY_MINOR (~0u)

enum devmode_kind {
	DEVMODE_NONE = 0, /* no-access */
	DEVMODE_SHARED = 1,
	DEVMODE_EXCLUSIVE = 2,
};
#define DEVMODE_BIT(m) (1u << (m))

struct devprofile_node {
	char path[DEVPROFILE_PATH_MAX]; /* "" when the node is a cgroup rule only */
	char type;			/* 'c' or 'b'; 0 when unknown (virtual, unresolved) */
	unsigned major, minor;		/* minor DEVPROFILE_ANY_MINOR: every minor */
	unsigned perm;			/* permission bits of the node made in a VP (0666) */
	bool has_dev;			/* major:minor given in the profile or resolved */
	bool is_virtual;		/* served by cellsd in /dev/cells */
	bool missing;			/* devprofile_resolve: absent on this host */
};

struct devprofile_class {
	char name[DEVPROFILE_NAME_MAX + 1];
	char description[128];
	unsigned modes; /* DEVMODE_BIT()s supported; no-access is always supported */
	bool foreground_bound;
	size_t nnodes;
	struct devprofile_node nodes[DEVPROFILE_MAX_NODES];
};

struct devprofile {
	char name[DEVPROFILE_NAME_MAX + 1];
	char description[128];
	size_t nclasses;
	struct devprofile_class classes[DEVPROFILE_MAX_CLASSES];
};

/* Parse a profile (untrusted bytes, at most DEVPROFILE_MAX_BYTES). *out owned (free()). */
int devprofile_parse(const uint8_t *buf, size_t len, struct devprofile **out, cells_err_t *err);
/* Read and parse a profile file, then resolve it. *out owned (free()). */
int devprofile_load(const char *path, struct devprofile **out, cells_err_t *err);
/* Fill in major:minor of path-only nodes from the host (stat); mark missing nodes. */
void devprofile_resolve(struct devprofile *p);

const struct devprofile_class *devprofile_class(const struct devprofile *p, const char *name);

const char *devmode_name(enum devmode_kind m); /* "no-access" | "shared" | "exclusive" */
int devmode_parse(const char *s, enum devmode_kind *out);

/* A JSON description of one node ("path", "dev" "c 10:200", "virtual", "missing"). */
json_object *devprofile_node_json(const struct devprofile_node *n);

#endif
