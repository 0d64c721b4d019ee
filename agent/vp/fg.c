/* fg.c - the foreground VP and its switch (see fg.h). */
#include "fg.h"
#include "audit.h"
#include "cjson.h"
#include "cleanup.h"
#include "enforce.h"
#include "log.h"
#include "vplock.h"
#include "policy_engine.h"
#include "util.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#define FG_MAX_VPS 64
#define FG_MAX_LISTENERS 16
#define FG_NAME_MAX 33

struct fg_listener {
	fg_listener_fn cb;
	void *data;
};

struct fg {
	char up[FG_MAX_VPS][FG_NAME_MAX]; /* running VPs, in start order */
	size_t nup;
	char cur[FG_NAME_MAX]; /* "" when none */
	uint64_t gen;
	struct fg_listener l[FG_MAX_LISTENERS];
	size_t nl;
	fg_permit_fn permit;
	void *permit_data;
	uint64_t recheck_timer;
};

/* The policy's foreground rule. A VP no policy names may be brought in front both
 * ways; a rule without a `foreground` part allows neither (proto3 defaults: false). */
static bool policy_permit(struct cellsd *d, const char *vp, bool self, void *data)
{
	const struct pol_vp_rule *r = policy_vp_rule(d, vp);
	if (!r)
		return true;
	return self ? r->incoming_call_switches : r->may_be_foreground;
}

static bool may_be_front(struct fg *f, struct cellsd *d, const char *vp);
static void set_current(struct cellsd *d, const char *vp);
static int audit_switch(struct cellsd *d, const char *vp, const char *actor, const char *outcome,
			const char *reason, cells_err_t *err);

/* After a policy change is in force: an FVP that may no longer be in front gives way to
 * the longest-running VP that may (or to a black screen). */
static void recheck(struct loop *l, void *data)
{
	struct cellsd *d = data;
	struct fg *f = d->fg;
	f->recheck_timer = 0;
	if (!f->cur[0] || may_be_front(f, d, f->cur))
		return;
	const char *next = NULL;
	for (size_t k = 0; k < f->nup && !next; k++)
		if (may_be_front(f, d, f->up[k]))
			next = f->up[k];
	if (audit_switch(d, next, "cellsd", "ok", "policy no longer lets the VP be in front",
			 NULL) < 0)
		next = NULL; /* cannot record a hand-over: go black rather than keep it */
	set_current(d, next);
}

/* The "foreground" enforcer: re-check once the new policy is the effective one. */
static int fg_enforce(struct cellsd *d, const struct pol_model *nw, const struct pol_model *old,
		      cells_err_t *err)
{
	if (d->fg && !d->fg->recheck_timer)
		d->fg->recheck_timer = loop_add_timer(d->loop, 0, recheck, d);
	return 0;
}

int fg_init(struct cellsd *d, cells_err_t *err)
{
	d->fg = calloc(1, sizeof *d->fg);
	if (!d->fg)
		return cells_err_sys(err, ENOMEM, "foreground");
	d->fg->permit = policy_permit;
	static const struct enforcer enf = {"foreground", fg_enforce};
	if (d->pe && enforce_register(d, &enf, err) < 0) {
		fg_shutdown(d);
		return -1;
	}
	return 0;
}

void fg_shutdown(struct cellsd *d)
{
	if (d->fg && d->fg->recheck_timer)
		loop_cancel_timer(d->loop, d->fg->recheck_timer);
	free(d->fg);
	d->fg = NULL;
}

const char *fg_current(struct cellsd *d)
{
	return d->fg && d->fg->cur[0] ? d->fg->cur : NULL;
}

uint64_t fg_generation(struct cellsd *d)
{
	return d->fg ? d->fg->gen : 0;
}

int fg_add_listener(struct cellsd *d, fg_listener_fn cb, void *data)
{
	if (!d->fg || d->fg->nl >= FG_MAX_LISTENERS)
		return -1;
	d->fg->l[d->fg->nl++] = (struct fg_listener){cb, data};
	return 0;
}

void fg_set_permit(struct cellsd *d, fg_permit_fn fn, void *data)
{
	d->fg->permit = fn ? fn : policy_permit;
	d->fg->permit_data = data;
}

static ssize_t up_index(struct fg *f, const char *vp)
{
	for (size_t i = 0; i < f->nup; i++)
		if (!strcmp(f->up[i], vp))
			return (ssize_t)i;
	return -1;
}

bool fg_vp_is_up(struct cellsd *d, const char *vp)
{
	return d->fg && vp && up_index(d->fg, vp) >= 0;
}

/* Change the FVP and tell the listeners (the caller has audited). */
static void set_current(struct cellsd *d, const char *vp)
{
	struct fg *f = d->fg;
	char old[FG_NAME_MAX];
	snprintf(old, sizeof old, "%s", f->cur);
	snprintf(f->cur, sizeof f->cur, "%s", vp ? vp : "");
	f->gen++;
	log_info("foreground: %s -> %s (generation %llu)", old[0] ? old : "(none)",
		 vp ? vp : "(none)", (unsigned long long)f->gen);
	for (size_t i = 0; i < f->nl; i++)
		f->l[i].cb(d, old[0] ? old : NULL, vp, f->l[i].data);
}

static int audit_switch(struct cellsd *d, const char *vp, const char *actor, const char *outcome,
			const char *reason, cells_err_t *err)
{
	cleanup_json json_object *det = json_object_new_object();
	json_object_object_add(det, "from", json_object_new_string(d->fg->cur));
	json_object_object_add(det, "to", json_object_new_string(vp ? vp : ""));
	if (reason)
		json_object_object_add(det, "reason", json_object_new_string(reason));
	int r = cellsd_audit(d, vp ? vp : "", actor, "fg.switch", outcome, det, err);
	return r;
}

int fg_switch(struct cellsd *d, const char *vp, const char *actor, cells_err_t *err)
{
	struct fg *f = d->fg;
	if (!f)
		return cells_err_set(err, ENODEV, "switch: no foreground module");
	if (cells_valid_name(vp, err) < 0)
		return cells_err_prefix(err, "switch");
	if (up_index(f, vp) < 0) {
		audit_switch(d, vp, actor, "refused", "not running", NULL);
		return cells_err_set(err, ESRCH, "switch %s: the VP is not running", vp);
	}
	if (vplock_is_paused(d, vp)) {
		/* "turn off work apps": no notifications, no call takes it to the front */
		const char *why = "the VP is paused (cellctl vp resume)";
		audit_switch(d, vp, actor, "refused", why, NULL);
		return cells_err_set(err, EPERM, "switch %s: %s", vp, why);
	}
	bool self = strncmp(actor, "uid:", 4) != 0;
	if (f->permit && !f->permit(d, vp, self, f->permit_data)) {
		const char *why = self ? "policy does not let this VP take the foreground itself"
				       : "policy does not let this VP be in the foreground";
		audit_switch(d, vp, actor, "refused", why, NULL);
		return cells_err_set(err, EPERM, "switch %s: %s", vp, why);
	}
	if (!strcmp(f->cur, vp))
		return 0;
	/* fail closed: no record, no switch */
	if (audit_switch(d, vp, actor, "ok", NULL, err) < 0)
		return cells_err_prefix(err, "switch %s: audit", vp);
	set_current(d, vp);
	return 0;
}

/* May vp be brought in front without anyone asking (start, fallback)? Only when the
 * employee could switch to it; otherwise the screen stays black until one can. */
static bool may_be_front(struct fg *f, struct cellsd *d, const char *vp)
{
	return !f->permit || f->permit(d, vp, false, f->permit_data);
}

int fg_vp_up(struct cellsd *d, const char *vp, cells_err_t *err)
{
	struct fg *f = d->fg;
	if (!f)
		return 0;
	if (cells_valid_name(vp, err) < 0)
		return -1;
	if (up_index(f, vp) >= 0)
		return 0;
	if (f->nup >= FG_MAX_VPS)
		return cells_err_set(err, ENOSPC, "foreground: too many running VPs");
	snprintf(f->up[f->nup++], FG_NAME_MAX, "%s", vp);
	if (!f->cur[0] && may_be_front(f, d, vp)) {
		/* the first running VP takes the (empty) screen; the record is best
		 * effort: nothing is taken from another VP */
		audit_switch(d, vp, "cellsd", "ok", "first running VP", NULL);
		set_current(d, vp);
	}
	return 0;
}

void fg_vp_down(struct cellsd *d, const char *vp)
{
	struct fg *f = d->fg;
	ssize_t i = f && vp ? up_index(f, vp) : -1;
	if (i < 0)
		return;
	memmove(f->up[i], f->up[i + 1], (f->nup - (size_t)i - 1) * sizeof f->up[0]);
	f->nup--;
	if (strcmp(f->cur, vp))
		return;
	/* the FVP stopped: the longest-running VP permitted in front takes over */
	const char *next = NULL;
	for (size_t k = 0; k < f->nup && !next; k++)
		if (may_be_front(f, d, f->up[k]))
			next = f->up[k];
	audit_switch(d, next, "cellsd", "ok", "foreground VP stopped", NULL);
	set_current(d, next);
}
