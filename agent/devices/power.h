/* power.h - per-VP power requests, the paper's rule: only the foreground VP's requests
 * reach the power backend; a background VP can neither suspend the device nor keep it
 * awake against the foreground VP.
 *
 * Each VP gets /dev/cells/power: the slave of a pty whose master cellsd reads (the
 * slave is bind-mounted into the VP: a mknod'ed copy of a devpts node cannot be opened,
 * see kernel/devnode.h). Line protocol (docs/DEVICES.md "Power"): the VP writes one of
 *     suspend | wake_lock NAME | wake_unlock NAME        (NAME: [A-Za-z0-9_.-]{1,64})
 * terminated by \n, and reads back "ok\n" or "refused: REASON\n".
 *
 * Wake locks are per VP (named cells-VP-NAME in the backend). A foreground VP's locks
 * reach the backend; when it goes to the background they are released in the backend
 * and re-taken when it comes back to the front (a BVP cannot hold the device awake).
 * A BVP's wake_lock is refused. suspend from the FVP goes to the backend; from a BVP
 * it is refused. Refusals are audited (the first of each kind per VP at once, repeats
 * aggregated into one record with a count per minute). */
#ifndef CELLS_POWER_H
#define CELLS_POWER_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "err.h"

#define POWER_MAX_VPS 16
#define POWER_MAX_LOCKS 16
#define POWER_LINE_MAX 128

enum power_backend_kind { POWER_BACKEND_SYSFS, POWER_BACKEND_RECORD };

struct power_backend {
	enum power_backend_kind kind;
	char path[PATH_MAX];	/* sysfs: the /sys/power directory; record: the log file */
	char suspend_state[16]; /* written to state (default "mem") */
};

/* kind "sysfs", "record" or "auto" (sysfs when SYSFS_DIR/wake_lock exists: an Android-
 * style kernel; else record, so a host without wake locks is never suspended).
 * record_log: the recording backend's file (RUN_DIR/power.log). */
int power_backend_init(struct power_backend *b, const char *kind, const char *sysfs_dir,
		       const char *record_log, cells_err_t *err);
int power_backend_op(struct power_backend *b, const char *op, const char *arg, cells_err_t *err);

struct power_vp {
	char name[33];
	int master; /* pty master, -1 when none (owned) */
	int slave;  /* kept open by cellsd so the master never sees a hang-up (owned) */
	char slave_path[64];
	char line[POWER_LINE_MAX + 1];
	size_t len;
	bool overlong;
	size_t nlocks;
	char locks[POWER_MAX_LOCKS][65];
	uint64_t refused, refused_unreported;
	int64_t last_refusal_audit_ms;
};

struct power {
	struct power_backend be;
	char fg[33];
	struct power_vp vps[POWER_MAX_VPS];
	void (*audit)(void *ctx, const char *vp, const char *event, const char *outcome,
		      json_object *details);
	/* optional: whether the policy lets the VP use power at all (device class
	 * "power"); false: suspend and wake_lock are refused even from the FVP */
	bool (*vp_allowed)(void *ctx, const char *vp);
	void *ctx;
};

void power_init(struct power *p, const struct power_backend *be);
/* Handle one request line (without the newline) of VP vp; reply gets "ok" or
 * "refused: REASON" (without newline). Returns 0 when accepted. */
int power_request(struct power *p, const char *vp, const char *line, char *reply, size_t n);
/* The foreground VP changed: release the old FVP's locks in the backend, take the new
 * FVP's. */
int power_set_foreground(struct power *p, const char *vp, cells_err_t *err);

/* Open the VP's pty (master + slave kept by cellsd); *slave_path is the host path of the
 * slave (for the bind mount), major and minor its device (for the device cgroup). */
int power_vp_open(struct power *p, const char *vp, const char **slave_path, unsigned *major,
		  unsigned *minor, cells_err_t *err);
int power_vp_master(struct power *p, const char *vp); /* -1 when none */
/* Read what the VP wrote and answer each complete line. */
void power_vp_input(struct power *p, const char *vp);
/* The VP stopped: close its pty; its locks are dropped (released in the backend). */
void power_vp_close(struct power *p, const char *vp);

json_object *power_describe(const struct power *p);

#endif
