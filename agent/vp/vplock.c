/* vplock.c - locked and paused VPs: freezer, network, lock screen (see vplock.h). */
#include "vplock.h"
#include "audit.h"
#include "cjson.h"
#include "wipe.h"
#include "compliance.h"
#include "cleanup.h"
#include "cleanup_sqlite.h"
#include "kcgroup.h"
#include "knet.h"
#include "log.h"
#include "policy_engine.h"
#include "sqldb.h"
#include "util.h"
#include "vpm.h"

#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VPLOCK_MAX 64
#define VPLOCK_TICK_MS 1000

static const char *const vplock_schema[] = {
    "CREATE TABLE vp_lock(vp TEXT PRIMARY KEY, paused INTEGER NOT NULL,"
    " reason TEXT NOT NULL, actor TEXT NOT NULL, since_us INTEGER NOT NULL)",
};

struct lock_ent {
	char vp[33];
	bool paused;
	char reason[32];
	char actor[64];
	int64_t since_us;
};

/* One agent per process: the module's state (the state DB is the truth; this is its
 * cache, loaded at init and changed with it). */
static struct {
	struct cellsd *d;
	struct lock_ent e[VPLOCK_MAX];
	size_t n;
	uint64_t timer;
} g;

/* Who follows lock changes (vplock_add_listener); kept across vplock_init. */
static struct {
	vplock_listener_fn fn[VPLOCK_MAX_LISTENERS];
	size_t n;
} listeners;

int vplock_add_listener(vplock_listener_fn fn, cells_err_t *err)
{
	for (size_t i = 0; i < listeners.n; i++)
		if (listeners.fn[i] == fn)
			return 0;
	if (listeners.n == VPLOCK_MAX_LISTENERS)
		return cells_err_set(err, ENOSPC, "vp locks: too many listeners");
	listeners.fn[listeners.n++] = fn;
	return 0;
}

static struct lock_ent *find(const char *vp)
{
	for (size_t i = 0; vp && i < g.n; i++)
		if (!strcmp(g.e[i].vp, vp))
			return &g.e[i];
	return NULL;
}

bool vplock_is_locked(struct cellsd *d, const char *vp)
{
	return g.d == d && find(vp) != NULL;
}

bool vplock_is_paused(struct cellsd *d, const char *vp)
{
	struct lock_ent *e = g.d == d ? find(vp) : NULL;
	return e && e->paused;
}

/* Carry a lock (or its absence) out on a running VP. */
static int apply(struct cellsd *d, const char *vp, bool locked, bool paused, cells_err_t *err)
{
	struct kcg *cg = vpm_kcg(d, vp);
	int rc = 0;
	bool enc = d->wipe && wipe_vp_encrypted(d, vp);
	cells_err_t ek = {0};
	char dir[PATH_MAX];
	/* unlock: the VP's fscrypt key comes back before its processes run again */
	if (!locked && enc && wipe_prepare_vp_storage(d, vp, dir, &ek) < 0)
		return cells_err_set(err, ek.code, "VP %s: unlock its storage: %s", vp, ek.msg);
	if (cg && kcg_freeze(cg, locked, err) < 0)
		rc = cells_err_prefix(err, "VP %s: %s", vp, locked ? "freeze" : "thaw");
	/* lock: frozen first, then its key leaves the kernel (as Android does for
	 * credential-encrypted storage): what it does not hold open is ciphertext */
	if (locked && rc == 0 && enc && wipe_vp_storage_lock(d, vp, false, &ek) < 0)
		log_warn("VP %s: lock its storage: %s", vp, ek.msg);
	char veth[IFNAMSIZ];
	cells_err_t e2 = {0};
	if (vpm_veth(d, vp, veth, sizeof veth) && knet_link_set(veth, !paused, &e2) < 0) {
		log_warn("VP %s: network %s: %s", vp, paused ? "block" : "unblock", e2.msg);
		if (rc == 0)
			rc = cells_err_set(err, e2.code, "VP %s: network: %s", vp, e2.msg);
	}
	for (size_t i = 0; i < listeners.n; i++)
		listeners.fn[i](d, vp);
	return rc;
}

static int db_put(struct cellsd *d, const struct lock_ent *e, cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db,
			  "INSERT OR REPLACE INTO vp_lock(vp, paused, reason, actor, since_us)"
			  " VALUES(?,?,?,?,?)",
			  &st, err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, e->vp, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, e->paused);
	sqlite3_bind_text(st, 3, e->reason, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, e->actor, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, e->since_us);
	if (sqlite3_step(st) != SQLITE_DONE)
		return sqldb_err(d->db, "vp lock", err);
	return 0;
}

static int db_del(struct cellsd *d, const char *vp, cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db, "DELETE FROM vp_lock WHERE vp=?", &st, err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, vp, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		return sqldb_err(d->db, "vp unlock", err);
	return 0;
}

static void audit_lock(struct cellsd *d, const char *vp, const char *actor, const char *event,
		       const char *outcome, bool paused, const char *reason, const char *why,
		       cells_err_t *err)
{
	cleanup_json json_object *det = json_object_new_object();
	json_object_object_add(det, "paused", json_object_new_boolean(paused));
	if (reason)
		json_object_object_add(det, "reason", json_object_new_string(reason));
	if (why)
		json_object_object_add(det, "refused", json_object_new_string(why));
	cellsd_audit(d, vp, actor, event, outcome, det, err);
}

int vplock_set_reason(struct cellsd *d, const char *vp, bool pause, const char *actor,
		      const char *reason, cells_err_t *err)
{
	if (!g.d)
		return cells_err_set(err, ENODEV, "vp lock: the lock module is not running");
	if (cells_valid_name(vp, err) < 0)
		return cells_err_prefix(err, "vp lock");
	if (!vpm_exists(d, vp)) {
		cells_err_set(err, ENOENT, "vp lock: no VP named '%s'", vp);
		audit_lock(d, vp, actor, "vp.lock", "refused", pause, reason, err->msg, NULL);
		return -1;
	}
	struct lock_ent *old = find(vp);
	if (!old && g.n >= VPLOCK_MAX)
		return cells_err_set(err, ENOSPC, "vp lock: too many locked VPs");
	struct lock_ent e = {0};
	snprintf(e.vp, sizeof e.vp, "%s", vp);
	e.paused = pause || (old && old->paused);
	snprintf(e.reason, sizeof e.reason, "%s", old ? old->reason : reason);
	snprintf(e.actor, sizeof e.actor, "%s", old ? old->actor : actor);
	e.since_us = old ? old->since_us : cells_now_us();
	if (old && old->paused == e.paused)
		return apply(d, vp, true, e.paused, err); /* already so: make sure of the effect */
	/* locking only removes access: a lock whose record cannot be written is still
	 * carried out (and the daemon is failing closed anyway) */
	cells_err_t ae = {0};
	audit_lock(d, vp, actor, "vp.lock", "ok", e.paused, reason, NULL, &ae);
	if (db_put(d, &e, err) < 0)
		log_error("vp lock %s: not persisted: %s", vp, err->msg);
	if (old)
		*old = e;
	else
		g.e[g.n++] = e;
	log_info("VP %s %s by %s (%s)", vp, e.paused ? "paused" : "locked", actor, reason);
	return apply(d, vp, true, e.paused, err);
}

int vplock_set(struct cellsd *d, const char *vp, bool pause, const char *actor, cells_err_t *err)
{
	return vplock_set_reason(d, vp, pause, actor,
				 !strcmp(actor, "mdm") ? "mdm"
				 : pause	       ? "paused"
						       : "local",
				 err);
}

int vplock_clear(struct cellsd *d, const char *vp, const char *actor, cells_err_t *err)
{
	if (!g.d)
		return cells_err_set(err, ENODEV, "vp unlock: the lock module is not running");
	if (cells_valid_name(vp, err) < 0)
		return cells_err_prefix(err, "vp unlock");
	struct lock_ent *e = find(vp);
	if (!e)
		return cells_err_set(err, EALREADY, "VP '%s' is not locked", vp);
	if (policy_vp_expiry_locked(d, vp)) {
		cells_err_set(err, EPERM,
			      "VP %s stays locked while the policy in force is expired "
			      "(lock_on_expiry): a new policy from the MDM lifts it",
			      vp);
		audit_lock(d, vp, actor, "vp.unlock", "refused", e->paused, e->reason, err->msg,
			   NULL);
		return -1;
	}
	bool paused = e->paused;
	cleanup_json json_object *det = json_object_new_object();
	json_object_object_add(det, "was", json_object_new_string(paused ? "paused" : "locked"));
	json_object_object_add(det, "reason", json_object_new_string(e->reason));
	int a = cellsd_audit(d, vp, actor, "vp.unlock", "ok", det, err);
	if (a < 0)
		return cells_err_set(err, EIO,
				     "vp unlock %s: the audit log cannot be written "
				     "(refused)",
				     vp);
	if (db_del(d, vp, err) < 0)
		return -1;
	*e = g.e[--g.n];
	log_info("VP %s unlocked by %s", vp, actor);
	return apply(d, vp, false, false, err);
}

void vplock_forget(struct cellsd *d, const char *vp)
{
	struct lock_ent *e = g.d == d ? find(vp) : NULL;
	if (!e)
		return;
	cells_err_t err;
	if (db_del(d, vp, &err) < 0)
		log_warn("vp lock %s: %s", vp, err.msg);
	*e = g.e[--g.n];
}

void vplock_describe(struct cellsd *d, const char *vp, json_object *o)
{
	struct lock_ent *e = g.d == d ? find(vp) : NULL;
	json_object_object_add(o, "lock",
			       json_object_new_string(!e	  ? ""
						      : e->paused ? "paused"
								  : "locked"));
	if (!e)
		return;
	json_object_object_add(o, "lock_reason", json_object_new_string(e->reason));
	json_object_object_add(o, "locked_by", json_object_new_string(e->actor));
	json_object_object_add(o, "locked_since_us", json_object_new_int64(e->since_us));
	struct kcg *cg = vpm_kcg(d, vp);
	if (cg) {
		char f[PATH_MAX + 32];
		int fr = kcg_frozen(cg);
		json_object_object_add(o, "frozen", fr < 0 ? NULL : json_object_new_boolean(fr));
		json_object_object_add(o, "freezer",
				       json_object_new_string(kcg_freezer_file(cg, f, sizeof f)));
	}
}

/* A VP starts (before its init execs): a locked VP is not started by the control
 * requests, but any other path (a wipe's recreate, an adopted definition) finds it frozen. */
static void on_vp_start(struct cellsd *d, const char *vp, void *data)
{
	struct lock_ent *e = find(vp);
	cells_err_t err = {0};
	if (e && apply(d, vp, true, e->paused, &err) < 0)
		log_error("VP %s is locked: %s", vp, err.msg);
}

/* lock_on_expiry: an expired policy keeps its VPs locked; a valid one lifts that lock. */
static void on_tick(struct loop *l, void *data)
{
	struct cellsd *d = data;
	cleanup_json json_object *names = vpm_names(d);
	for (size_t i = 0; i < json_object_array_length(names); i++) {
		const char *vp = json_object_get_string(json_object_array_get_idx(names, i));
		struct lock_ent *e = find(vp);
		cells_err_t err = {0};
		bool exp = policy_vp_expiry_locked(d, vp);
		if (exp && !e) {
			if (vplock_set_reason(d, vp, false, "policy", "policy-expired", &err) < 0)
				log_error("lock_on_expiry %s: %s", vp, err.msg);
		} else if (!exp && e && !strcmp(e->reason, "policy-expired")) {
			if (vplock_clear(d, vp, "policy", &err) < 0)
				log_error("lock_on_expiry %s: unlock: %s", vp, err.msg);
		}
	}
	g.timer = loop_add_timer(l, VPLOCK_TICK_MS, on_tick, d);
}

/* Compliance (compliance.h): a locked VP is not compliant ("vp-locked:VP"); a lock the
 * offline limit set also says "offline-too-long". A pause the employee chose is not a
 * compliance problem. */
static void compliance_source(struct cellsd *d, struct compliance *c)
{
	for (size_t i = 0; g.d == d && i < g.n; i++) {
		if (g.e[i].paused)
			continue;
		compliance_reason_add(c, "vp-locked:%s", g.e[i].vp);
		if (!strcmp(g.e[i].reason, "offline"))
			compliance_reason_add(c, "offline-too-long");
	}
}

/* The MDM's LockVp command (mgmt_commands.c): its signature is the authority, so no
 * password; unlock lifts any lock but one an expired policy holds. */
int vplock_cmd_result(struct cellsd *d, const Cells__V1__Command *cmd,
		      Cells__V1__CommandResult *res, cells_err_t *err)
{
	(void)res;
	const Cells__V1__LockVp *l = cmd->lock;
	if (!l || cells_valid_name(l->vp, err) < 0)
		return cells_err_set(err, EINVAL, "lock: no valid VP name");
	if (!vpm_exists(d, l->vp))
		return cells_err_set(err, ENOENT, "lock: no VP %s", l->vp);
	if (l->unlock)
		return vplock_is_locked(d, l->vp) ? vplock_clear(d, l->vp, "mdm", err) : 0;
	return vplock_is_locked(d, l->vp) ? 0 : vplock_set(d, l->vp, false, "mdm", err);
}

int vplock_init(struct cellsd *d, cells_err_t *err)
{
	if (compliance_source_add("vplock", compliance_source) < 0)
		return cells_err_set(err, ENOSPC, "vp locks: compliance sources full");
	if (sqldb_migrate(d->db, "vplock", vplock_schema, CELLS_ARRAY_SIZE(vplock_schema), err) < 0)
		return cells_err_prefix(err, "vp locks");
	memset(&g, 0, sizeof g);
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db, "SELECT vp, paused, reason, actor, since_us FROM vp_lock", &st,
			  err) < 0)
		return -1;
	while (sqlite3_step(st) == SQLITE_ROW && g.n < VPLOCK_MAX) {
		struct lock_ent *e = &g.e[g.n++];
		snprintf(e->vp, sizeof e->vp, "%s", (const char *)sqlite3_column_text(st, 0));
		e->paused = sqlite3_column_int(st, 1) != 0;
		snprintf(e->reason, sizeof e->reason, "%s",
			 (const char *)sqlite3_column_text(st, 2));
		snprintf(e->actor, sizeof e->actor, "%s", (const char *)sqlite3_column_text(st, 3));
		e->since_us = sqlite3_column_int64(st, 4);
	}
	g.d = d;
	struct vpm_listener li = {.on_start = on_vp_start};
	if (vpm_add_listener(d, &li) < 0)
		return cells_err_set(err, ENOSPC, "vp locks: no room for a VP listener");
	for (size_t i = 0; i < g.n; i++) {
		cells_err_t e2 = {0};
		if (vpm_running(d, g.e[i].vp) && apply(d, g.e[i].vp, true, g.e[i].paused, &e2) < 0)
			log_error("VP %s is locked: %s", g.e[i].vp, e2.msg);
	}
	g.timer = loop_add_timer(d->loop, VPLOCK_TICK_MS, on_tick, d);
	return 0;
}

void vplock_fini(struct cellsd *d)
{
	if (g.d != d)
		return;
	if (g.timer)
		loop_cancel_timer(d->loop, g.timer);
	memset(&g, 0, sizeof g);
}
