/* devmode.h - per-VP device access modes (no-access / shared / exclusive), enforced by
 * the kernel: the VP's device cgroup rules and the contents of its /dev.
 *
 * Input: the device profile (which classes and nodes exist) and the effective policy
 * (each VP's mode per class; classes a VP's rule does not name are no-access). Output:
 * for every running VP and every class, whether the VP may open the class's nodes now:
 *
 *   access(vp, class) = vp runs
 *                       and mode(vp, class) != no-access
 *                       and (class is not foreground-bound, or vp is the foreground VP)
 *                       and no other running VP holds the class exclusively
 *
 * so an exclusive holder that stops frees the device for the others, and
 * foreground-bound classes follow the foreground VP on every switch. Changes are made
 * live (running VPs are never restarted) through an ops table: dev_apply (the device
 * cgroup: every rule of a VP's change in one call, on cgroup v2 one BPF program;
 * vpm_dev_apply in cellsd) and node_set (mknod/unlink in the VP's /dev; in cellsd through
 * knsrun, kernel/devnode.h). The whole access table is computed first; then every VP
 * that loses access gets one cgroup change, then every VP that gains access one (at
 * most two per VP, one in the usual case). A change is all or nothing: when an op fails,
 * the changes already made are undone.
 *
 * Every change of a VP's access is reported once through ops->audit (event
 * "device.access", details {"allowed":[classes], "denied":[classes]}): the kernel does
 * not report refused opens of the device cgroup, so the record says what changed.
 *
 * Validation (devmode_validate, also run before any change): a mode the class does not
 * support is refused (e.g. shared on the display: the paper's framebuffer), and two VPs
 * exclusive on one class are refused. Classes the profile lacks are ignored (one policy
 * may serve phones with different hardware) and listed as such.
 */
#ifndef CELLS_DEVMODE_H
#define CELLS_DEVMODE_H

#include <stdbool.h>

#include <json-c/json.h>

#include "devprofile.h"
#include "err.h"
#include "kcgroup.h"
#include "pol_model.h"
#include "wire.h"

#define DEVMODE_MAX_VPS 16

struct devmode_ops {
	/* allow or deny rules[n] in the VP's device cgroup at once, all or nothing */
	int (*dev_apply)(void *ctx, const char *vp, const struct kcg_dev *rules, size_t n,
			 cells_err_t *err);
	int (*node_set)(void *ctx, const char *vp, const struct devprofile_node *n, bool present,
			cells_err_t *err);
	/* details borrowed; may be NULL */
	void (*audit)(void *ctx, const char *vp, const char *event, const char *outcome,
		      json_object *details);
	void *ctx;
};

struct devmode_vp {
	char name[33];
	bool running;
	bool in_policy;
	enum devmode_kind mode[DEVPROFILE_MAX_CLASSES];
	bool access[DEVPROFILE_MAX_CLASSES]; /* what the kernel currently enforces */
};

struct devmode {
	const struct devprofile *prof; /* borrowed */
	struct devmode_ops ops;
	uint64_t policy_version; /* 0: no policy in force */
	bool bvp_wifi_status_allowed;
	char fg[33]; /* "" when none */
	size_t nvps;
	struct devmode_vp vps[DEVMODE_MAX_VPS];
	uint64_t changes; /* number of node/cgroup changes made (for benchmarks) */
	size_t nunknown;  /* classes the policy names that this phone lacks */
	char unknown[16][DEVPROFILE_NAME_MAX + 1];
};

/* Initialise (prof and ops borrowed/copied). */
void devmode_init(struct devmode *dm, const struct devprofile *prof, const struct devmode_ops *ops);

/* Check a policy against the profile without changing anything. */
int devmode_validate(const struct devprofile *prof, const struct pol_model *pol, cells_err_t *err);

/* Make pol the policy in force and change every running VP's access accordingly (all
 * or nothing: on failure the previous policy stays in force). */
int devmode_set_policy(struct devmode *dm, const struct pol_model *pol, cells_err_t *err);
/* A VP started (its /dev exists and is minimal) or stopped. */
int devmode_vp_started(struct devmode *dm, const char *vp, cells_err_t *err);
void devmode_vp_stopped(struct devmode *dm, const char *vp);
/* The foreground VP changed (vp NULL: none). */
int devmode_set_foreground(struct devmode *dm, const char *vp, cells_err_t *err);

/* The VP's mode for a class in the policy in force (DEVMODE_NONE when none). */
enum devmode_kind devmode_mode(const struct devmode *dm, const char *vp, const char *cls);
/* Whether the kernel currently lets the VP open the class's nodes. */
bool devmode_access(const struct devmode *dm, const char *vp, const char *cls);

/* `cellctl device list`: {"profile", "policy_version", "foreground", "classes":[{"class",
 * "nodes":[...], "modes":[...], "foreground_bound", "vps":{VP: MODE}, "access":[VP...],
 * "holder"}], "unknown_classes":[...]} (new object). */
json_object *devmode_describe(const struct devmode *dm);

#endif
