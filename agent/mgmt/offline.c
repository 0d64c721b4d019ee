/* offline.c - lock and wipe VPs after an offline period (see offline.h). */
#include "offline.h"
#include "audit.h"
#include "cjson.h"
#include "cleanup.h"
#include "cleanup_sqlite.h"
#include "log.h"
#include "policy_engine.h"
#include "sqldb.h"
#include "util.h"
#include "vplock.h"
#include "vpm.h"
#include "wipe.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define OFFLINE_TICK_MS 1000

static const char *const offline_schema[] = {
    "CREATE TABLE offline_contact(id INTEGER PRIMARY KEY CHECK (id = 1),"
    " last_us INTEGER NOT NULL)",
    /* since_us: when the VP's limit was first seen in force; wiped_for: the start of
     * the offline period a wipe was already started for (never twice for one period) */
    "CREATE TABLE offline_vp(vp TEXT PRIMARY KEY, since_us INTEGER NOT NULL,"
    " wiped_for INTEGER NOT NULL DEFAULT 0)",
};

static struct {
	struct cellsd *d;
	uint64_t timer;
} g;

static int64_t last_contact(struct cellsd *d)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	cells_err_t err;
	if (sqldb_prepare(d->db, "SELECT last_us FROM offline_contact WHERE id=1", &st, &err) < 0)
		return 0;
	return sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
}

/* The VP's row: 1 found, 0 none (created with now), -1 error. */
static int vp_row(struct cellsd *d, const char *vp, int64_t now, int64_t *since, int64_t *wiped_for)
{
	cells_err_t err;
	{
		cleanup_stmt sqlite3_stmt *st = NULL;
		if (sqldb_prepare(d->db, "SELECT since_us, wiped_for FROM offline_vp WHERE vp=?",
				  &st, &err) < 0)
			return -1;
		sqlite3_bind_text(st, 1, vp, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW) {
			*since = sqlite3_column_int64(st, 0);
			*wiped_for = sqlite3_column_int64(st, 1);
			return 1;
		}
	}
	cleanup_stmt sqlite3_stmt *ins = NULL;
	if (sqldb_prepare(d->db, "INSERT INTO offline_vp(vp, since_us) VALUES(?, ?)", &ins, &err) <
	    0)
		return -1;
	sqlite3_bind_text(ins, 1, vp, -1, SQLITE_STATIC);
	sqlite3_bind_int64(ins, 2, now);
	if (sqlite3_step(ins) != SQLITE_DONE)
		return -1;
	*since = now;
	*wiped_for = 0;
	return 0;
}

static void vp_unarm(struct cellsd *d, const char *vp)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	cells_err_t err;
	if (sqldb_prepare(d->db, "DELETE FROM offline_vp WHERE vp=?", &st, &err) < 0)
		return;
	sqlite3_bind_text(st, 1, vp, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		log_warn("offline %s: limit not disarmed: %s", vp, sqlite3_errmsg(d->db));
}

static int set_wiped_for(struct cellsd *d, const char *vp, int64_t start, cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db, "UPDATE offline_vp SET wiped_for=? WHERE vp=?", &st, err) < 0)
		return -1;
	sqlite3_bind_int64(st, 1, start);
	sqlite3_bind_text(st, 2, vp, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		return sqldb_err(d->db, "offline wipe", err);
	return 0;
}

/* How long vp has been offline as its limit counts it (seconds), its limits. -1: no
 * limit applies. */
static int64_t offline_s(struct cellsd *d, const char *vp, int64_t now, uint32_t *lock_s,
			 uint32_t *wipe_s, int64_t *start, int64_t *wiped_for)
{
	const struct pol_vp_rule *r = policy_vp_rule(d, vp);
	*lock_s = r ? r->lock_after_offline_s : 0;
	*wipe_s = r ? r->wipe_after_offline_s : 0;
	if (!*lock_s && !*wipe_s)
		return -1;
	int64_t since = 0;
	if (vp_row(d, vp, now, &since, wiped_for) < 0)
		return -1;
	int64_t c = last_contact(d);
	*start = c > since ? c : since;
	return now > *start ? (now - *start) / 1000000 : 0;
}

static void audit_limit(struct cellsd *d, const char *vp, const char *event, int64_t off,
			uint32_t limit, const char *outcome, const char *why)
{
	cleanup_json json_object *det = json_object_new_object();
	json_object_object_add(det, "offline_s", json_object_new_int64(off));
	json_object_object_add(det, "limit_s", json_object_new_int64(limit));
	if (why)
		json_object_object_add(det, "reason", json_object_new_string(why));
	cellsd_audit(d, vp, "offline", event, outcome, det, NULL);
}

static void check_vp(struct cellsd *d, const char *vp, int64_t now)
{
	uint32_t lock_s, wipe_s;
	int64_t start = 0, wiped_for = 0;
	int64_t off = offline_s(d, vp, now, &lock_s, &wipe_s, &start, &wiped_for);
	if (off < 0) {
		vp_unarm(d, vp); /* no limit: a later one counts from when it is set */
		return;
	}
	cells_err_t err = {0};
	if (wipe_s && off >= wipe_s && wiped_for != start) {
		/* recorded first: a crash after this point is finished by the wipe module's
		 * own recovery, never started twice for one offline period */
		if (set_wiped_for(d, vp, start, &err) < 0) {
			log_error("offline %s: %s", vp, err.msg);
			return;
		}
		audit_limit(d, vp, "offline.wipe", off, wipe_s, "ok", NULL);
		log_warn("VP %s: offline for %llds (limit %us): wiping", vp, (long long)off,
			 wipe_s);
		char id[64];
		snprintf(id, sizeof id, "%s", "offline");
		vplock_forget(d, vp);
		if (wipe_start(d, vp, id, false, &err) < 0) {
			log_error("offline wipe %s: %s", vp, err.msg);
			audit_limit(d, vp, "offline.wipe", off, wipe_s, "failed", err.msg);
		}
		return;
	}
	if (lock_s && off >= lock_s && !vplock_is_locked(d, vp)) {
		audit_limit(d, vp, "offline.lock", off, lock_s, "ok", NULL);
		if (vplock_set_reason(d, vp, false, "offline", "offline", &err) < 0)
			log_error("offline lock %s: %s", vp, err.msg);
	}
}

static void on_tick(struct loop *l, void *data)
{
	struct cellsd *d = data;
	cleanup_json json_object *names = vpm_names(d);
	int64_t now = cells_now_us();
	for (size_t i = 0; i < json_object_array_length(names); i++)
		check_vp(d, json_object_get_string(json_object_array_get_idx(names, i)), now);
	g.timer = loop_add_timer(l, OFFLINE_TICK_MS, on_tick, d);
}

void offline_contact(struct cellsd *d)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	cells_err_t err;
	if (sqldb_prepare(d->db, "INSERT OR REPLACE INTO offline_contact(id, last_us) VALUES(1, ?)",
			  &st, &err) < 0 ||
	    (sqlite3_bind_int64(st, 1, cells_now_us()), sqlite3_step(st)) != SQLITE_DONE) {
		log_error("offline: cannot record the MDM contact: %s", sqlite3_errmsg(d->db));
		return;
	}
	/* back in touch: lift the locks the offline limit set */
	cleanup_json json_object *names = vpm_names(d);
	for (size_t i = 0; i < json_object_array_length(names); i++) {
		const char *vp = json_object_get_string(json_object_array_get_idx(names, i));
		json_object *o = json_object_new_object();
		vplock_describe(d, vp, o);
		const char *why = json_object_get_string(json_object_object_get(o, "lock_reason"));
		if (why && !strcmp(why, "offline") && vplock_clear(d, vp, "offline", &err) < 0)
			log_error("offline: unlock %s: %s", vp, err.msg);
		json_object_put(o);
	}
}

int offline_init(struct cellsd *d, cells_err_t *err)
{
	if (sqldb_migrate(d->db, "offline", offline_schema, CELLS_ARRAY_SIZE(offline_schema), err) <
	    0)
		return cells_err_prefix(err, "offline limits");
	g.d = d;
	g.timer = loop_add_timer(d->loop, OFFLINE_TICK_MS, on_tick, d);
	return 0;
}

void offline_fini(struct cellsd *d)
{
	if (g.d != d)
		return;
	if (g.timer)
		loop_cancel_timer(d->loop, g.timer);
	g.d = NULL;
	g.timer = 0;
}
