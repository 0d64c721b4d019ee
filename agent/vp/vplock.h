/* vplock.h - a VP lock that is an effect, not a label (issue 18.4).
 *
 * A locked VP is frozen with the cgroup freezer (kcgroup.h kcg_freeze: v2 cgroup.freeze,
 * else v1 freezer.state; we wait until the kernel reports it frozen): its processes
 * stop. `vp exec`, `vp start` and `vp config` are refused for it (one line, audited);
 * the input mux drops events meant for it; in front it shows the lock screen cellsd
 * draws (display.c) instead of its frame. A paused VP (the employee's "turn off work
 * apps") is locked and also gets no network (the host end of its veth is down) and
 * cannot take the foreground (no notifications).
 *
 * Who locks: the employee or admin (`cellctl vp lock/pause`, no password: locking only
 * removes access), the MDM (LockVp, actor "mdm"), the policy (lock_on_expiry, reason
 * "policy-expired", checked on a timer; lifted by itself once a valid policy is in
 * force) and the offline limit (offline.h, reason "offline"). Who unlocks: the VP's
 * password (password_authorize: Argon2id, throttled, failures counted) or the MDM.
 *
 * State: table vp_lock of the state DB (module "vplock"): the lock survives a cellsd
 * restart; a running VP found locked at start-up is frozen again, a locked VP is not
 * started. Every lock, unlock and refusal is audited (vp.lock, vp.unlock); a lock
 * whose audit record cannot be written is still carried out (locking removes access),
 * an unlock is not (fail closed).
 *
 * All functions run on cellsd's loop thread. Strings are borrowed. */
#ifndef CELLS_VPLOCK_H
#define CELLS_VPLOCK_H

#include <stdbool.h>

#include <json-c/json.h>

#include "cellsd.h"
#include "cells.pb-c.h"
#include "err.h"

/* Migrate the table, follow VP starts, freeze running locked VPs again, start the
 * policy-expiry timer. After vpm_init and disp_init. */
int vplock_init(struct cellsd *d, cells_err_t *err);
void vplock_fini(struct cellsd *d);

/* Lock (pause=false) or pause (pause=true) vp. actor for the audit record ("mdm",
 * "policy", "offline", "uid:N"). A paused VP that is locked again stays paused. */
int vplock_set(struct cellsd *d, const char *vp, bool pause, const char *actor, cells_err_t *err);
/* Same with a reason recorded with the lock ("local", "mdm", "policy-expired",
 * "offline"). */
int vplock_set_reason(struct cellsd *d, const char *vp, bool pause, const char *actor,
		      const char *reason, cells_err_t *err);
/* Lift the lock: thaw, network back, the VP's frame back. The caller checked the
 * authority (password or MDM signature). Refused (EPERM) while the policy in force
 * keeps the VP locked (expired with lock_on_expiry). */
int vplock_clear(struct cellsd *d, const char *vp, const char *actor, cells_err_t *err);

/* Called after a VP's lock changed and took effect (locked, paused or unlocked): the
 * display module shows the lock screen or the VP's frame again. Registered in a module's
 * init; at most VPLOCK_MAX_LISTENERS, the same fn once. */
#define VPLOCK_MAX_LISTENERS 4
typedef void (*vplock_listener_fn)(struct cellsd *d, const char *vp);
int vplock_add_listener(vplock_listener_fn fn, cells_err_t *err);

bool vplock_is_locked(struct cellsd *d, const char *vp);
bool vplock_is_paused(struct cellsd *d, const char *vp);
/* Add "lock" ("", "locked", "paused") and, when locked, "lock_reason", "locked_by",
 * "locked_since", "frozen" (what the kernel reports) and "freezer" (the control file)
 * to a VP's status object o (vpm_describe). */
void vplock_describe(struct cellsd *d, const char *vp, json_object *o);
/* Forget vp's lock (the VP is destroyed or wiped). */
void vplock_forget(struct cellsd *d, const char *vp);
/* The MDM's LockVp command (mgmt_commands.h's handler signature). */
int vplock_cmd_result(struct cellsd *d, const Cells__V1__Command *cmd,
		      Cells__V1__CommandResult *res, cells_err_t *err);

#endif
