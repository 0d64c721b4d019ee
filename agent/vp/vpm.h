/* vpm.h - the VP manager: virtual phones as hardened containers (the contract other
 * modules code against; see BRIEF.md "Contracts between helpers").
 *
 * A VP is a row of the state DB (module "vp") plus, while it runs, an init process in
 * its own pid/mount/net/uts/ipc/cgroup namespaces, a cgroup per hierarchy named
 * cells-<id>-<vp> (<id>: the first 8 hex of sha256(state dir), unique per agent), a
 * devcells tmpfs at RUN_DIR/vp/NAME/devcells (bind-mounted at /dev/cells in the VP)
 * and, in nat mode, a veth pair cv<id6><n>.
 *
 * All functions run on cellsd's loop thread. Strings are borrowed. */
#ifndef CELLS_VPM_H
#define CELLS_VPM_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "cellsd.h"
#include "err.h"
#include "kcgroup.h"

struct vpm;

/* Lifecycle listeners. on_start runs after the VP's devcells exists and before its
 * init is released (its root is not mounted yet); on_stop after the init is gone and
 * before devcells is unmounted; on_change after a VP was created or destroyed. */
struct vpm_listener {
	void (*on_start)(struct cellsd *d, const char *vp, void *data);
	void (*on_stop)(struct cellsd *d, const char *vp, void *data);
	void (*on_change)(struct cellsd *d, const char *vp, void *data);
	void *data;
};
/* A ready listener runs once the VP's init has exec'd and before it runs its first
 * instruction (held at its exec: its root, /dev and cgroups are in place, and
 * vpm_init_pid and vpm_dev_set work): what the VP must find when it boots (the device
 * nodes and device cgroup rules its policy grants) is made there. */
typedef void (*vpm_ready_fn)(struct cellsd *d, const char *vp, void *data);

/* Set up d->vpm: migrate the "vp" tables, find VPs that were running when a previous
 * cellsd died (adopt them when their init is still the same process, else clean up). */
int vpm_init(struct cellsd *d, cells_err_t *err);
/* Stop every running VP and free d->vpm (at shutdown). */
void vpm_shutdown(struct cellsd *d);

bool vpm_exists(struct cellsd *d, const char *vp);
bool vpm_running(struct cellsd *d, const char *vp);
/* Host pid of the VP's init, 0 if stopped or unknown. */
pid_t vpm_init_pid(struct cellsd *d, const char *vp);
/* RUN_DIR/vp/NAME/devcells into buf; returns buf (NULL if the name is invalid). */
const char *vpm_devcells_dir(struct cellsd *d, const char *vp, char buf[PATH_MAX]);
/* Allow or deny a device in a running VP's device cgroup (v1 devices.allow/deny and/or
 * the v2 BPF device program). type 'c' or 'b'; major/minor ~0u for any. */
int vpm_dev_set(struct cellsd *d, const char *vp, char type, unsigned major, unsigned minor,
		bool allow, cells_err_t *err);
/* Allow or deny the devices of rules[n] in one change of the VP's device cgroup (one BPF
 * program on v2; kcg_dev_apply): all of them or, when the kernel refuses, none. */
int vpm_dev_apply(struct cellsd *d, const char *vp, const struct kcg_dev *rules, size_t n,
		  cells_err_t *err);
/* Register a listener (copied). */
int vpm_add_listener(struct cellsd *d, const struct vpm_listener *l);
int vpm_add_ready_listener(struct cellsd *d, vpm_ready_fn fn, void *data);

/* Used by the control handlers (handlers_vp.c). */
struct vpm_def {
	char name[33];
	char image[PATH_MAX];
	char net[8]; /* "nat" | "none" */
	char hostname[65];
	unsigned long long memory; /* bytes, 0: none */
	unsigned pids;		   /* 0: default */
	char **init;		   /* NULL-terminated, owned; NULL: default */
	bool transient;		   /* made by `vp run`: removed if found after a crash */
};
void vpm_def_free(struct vpm_def *def);
int vpm_create(struct cellsd *d, const struct vpm_def *def, cells_err_t *err);
/* cellsd --uid-base N: VP id ranges (65536 ids each, kidmap.h) are allocated from host
 * id N up (default 1048576); a VP keeps its range until it is destroyed. */
int vpm_option_uid_base(const char *arg, cells_err_t *err);
/* Start a VP; init (borrowed, NULL: the defined one) and stdio (borrowed; NULL or -1:
 * /dev/null inside the VP) for `vp run`. */
int vpm_start(struct cellsd *d, const char *vp, char *const *init, const int stdio[3],
	      cells_err_t *err);
int vpm_stop(struct cellsd *d, const char *vp, cells_err_t *err);
/* Stop without blocking the loop: SIGTERM now, SIGKILL after a grace period; cb runs
 * once the VP is torn down. */
int vpm_stop_async(struct cellsd *d, const char *vp,
		   void (*cb)(struct cellsd *d, const char *vp, int status, void *data), void *data,
		   cells_err_t *err);
int vpm_destroy(struct cellsd *d, const char *vp, cells_err_t *err);
/* Status of one VP (NULL: all, as {"vps":[...]}) as a new JSON object. */
json_object *vpm_describe(struct cellsd *d, const char *vp, cells_err_t *err);
/* Spawn argv inside a running VP with the given stdio (borrowed); *pidfd (owned) of
 * the helper process whose exit status is the command's. */
int vpm_exec(struct cellsd *d, const char *vp, char *const argv[], char *const envp[],
	     const char *cwd, const int stdio[3], int *pidfd, cells_err_t *err);
/* Run a callback when the VP's init has exited and the VP is torn down (one-shot). */
int vpm_on_exit(struct cellsd *d, const char *vp,
		void (*cb)(struct cellsd *d, const char *vp, int status, void *data), void *data,
		cells_err_t *err);
/* Mark a VP made by `vp run` so that it is removed if found after a crash. */
int vpm_mark_transient(struct cellsd *d, const char *vp, cells_err_t *err);
/* The signed image "NAME@VERSION" a running VP runs on ("" on its local image dir; set
 * from before its ready listeners run), NULL when it does not run. Borrowed. */
const char *vpm_image_running(struct cellsd *d, const char *vp);
/* Number of running VPs (for status). */
int vpm_count_running(struct cellsd *d);

/* For the VP lock (vplock.h). The running VP's cgroups (borrowed, NULL when it does not
 * run): the freezer. */
struct kcg;
struct kcg *vpm_kcg(struct cellsd *d, const char *vp);
/* The host end of a running nat VP's veth into buf (n >= IFNAMSIZ); NULL when none. */
const char *vpm_veth(struct cellsd *d, const char *vp, char *buf, size_t n);
/* The names of the defined VPs as a new JSON array (owned; empty on error). */
json_object *vpm_names(struct cellsd *d);

#endif
