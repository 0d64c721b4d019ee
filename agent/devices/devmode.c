/* devmode.c - per-VP device access modes (see devmode.h). */
#include "devmode.h"
#include "cleanup.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void devmode_init(struct devmode *dm, const struct devprofile *prof, const struct devmode_ops *ops)
{
	memset(dm, 0, sizeof *dm);
	dm->prof = prof;
	if (ops)
		dm->ops = *ops;
}

static enum devmode_kind rule_mode(Cells__V1__AccessMode m)
{
	switch (m) {
	case CELLS__V1__ACCESS_MODE__ACCESS_SHARED:
		return DEVMODE_SHARED;
	case CELLS__V1__ACCESS_MODE__ACCESS_EXCLUSIVE:
		return DEVMODE_EXCLUSIVE;
	default:
		return DEVMODE_NONE;
	}
}

static int class_index(const struct devprofile *p, const char *name)
{
	for (size_t i = 0; i < p->nclasses; i++)
		if (!strcmp(p->classes[i].name, name))
			return (int)i;
	return -1;
}

int devmode_validate(const struct devprofile *prof, const struct pol_model *pol, cells_err_t *err)
{
	const char *holder[DEVPROFILE_MAX_CLASSES] = {0};
	if (!pol)
		return 0;
	for (size_t v = 0; v < pol->nvps; v++) {
		const struct pol_vp_rule *r = &pol->vps[v];
		for (size_t k = 0; k < r->ndevices; k++) {
			const struct pol_dev_rule *dr = &r->devices[k];
			int ci = class_index(prof, dr->cls);
			for (size_t k2 = 0; k2 < k; k2++)
				if (!strcmp(r->devices[k2].cls, dr->cls))
					return cells_err_set(err, EINVAL,
							     "VP %s: device class %s named twice",
							     r->vp, dr->cls);
			if (ci < 0)
				continue;
			enum devmode_kind m = rule_mode(dr->mode);
			const struct devprofile_class *c = &prof->classes[ci];
			if (!(c->modes & DEVMODE_BIT(m)))
				return cells_err_set(
				    err, EINVAL, "VP %s: device class %s does not support mode %s",
				    r->vp, c->name, devmode_name(m));
			if (m == DEVMODE_EXCLUSIVE && !c->foreground_bound) {
				if (holder[ci] && strcmp(holder[ci], r->vp) != 0)
					return cells_err_set(
					    err, EINVAL,
					    "device class %s: exclusive for both VP %s and VP %s "
					    "(at most one VP may hold it)",
					    c->name, holder[ci], r->vp);
				holder[ci] = r->vp;
			}
		}
	}
	return 0;
}

static struct devmode_vp *find_vp(const struct devmode *dm, const char *vp)
{
	for (size_t i = 0; i < dm->nvps; i++)
		if (!strcmp(dm->vps[i].name, vp))
			return (struct devmode_vp *)&dm->vps[i];
	return NULL;
}

static struct devmode_vp *add_vp(struct devmode *dm, const char *vp, cells_err_t *err)
{
	struct devmode_vp *v = find_vp(dm, vp);
	if (v)
		return v;
	/* reuse a slot of a VP that neither runs nor is named by the policy */
	for (size_t i = 0; i < dm->nvps; i++)
		if (!dm->vps[i].running && !dm->vps[i].in_policy) {
			v = &dm->vps[i];
			break;
		}
	if (!v) {
		if (dm->nvps >= DEVMODE_MAX_VPS) {
			cells_err_set(err, ENOSPC, "more than %d VPs", DEVMODE_MAX_VPS);
			return NULL;
		}
		v = &dm->vps[dm->nvps++];
	}
	memset(v, 0, sizeof *v);
	snprintf(v->name, sizeof v->name, "%s", vp);
	return v;
}

static bool want_access(const struct devmode *dm, const struct devmode_vp *v, size_t ci)
{
	const struct devprofile_class *c = &dm->prof->classes[ci];
	if (!v->running || v->mode[ci] == DEVMODE_NONE)
		return false;
	if (c->foreground_bound && strcmp(dm->fg, v->name) != 0)
		return false;
	for (size_t i = 0; i < dm->nvps; i++) {
		const struct devmode_vp *w = &dm->vps[i];
		if (w != v && w->running && w->mode[ci] == DEVMODE_EXCLUSIVE)
			return false;
	}
	return true;
}

/* The device rules that allow or deny the nodes of the classes in set[]. */
static size_t class_rules(const struct devmode *dm, const bool *set, bool allow, struct kcg_dev *r)
{
	size_t n = 0;
	for (size_t ci = 0; ci < dm->prof->nclasses; ci++) {
		const struct devprofile_class *c = &dm->prof->classes[ci];
		for (size_t k = 0; set[ci] && k < c->nnodes; k++)
			if (!c->nodes[k].is_virtual && c->nodes[k].has_dev)
				r[n++] = (struct kcg_dev){c->nodes[k].type, c->nodes[k].major,
							  c->nodes[k].minor, allow};
	}
	return n;
}

/* Make the nodes of the classes in set[] present (or remove them) in the VP's /dev. On
 * failure the ones already done are put back. */
static int nodes_set(struct devmode *dm, const struct devmode_vp *v, const bool *set, bool present,
		     cells_err_t *err)
{
	if (!dm->ops.node_set)
		return 0;
	size_t done = 0, total = 0;
	int rc = 0;
	for (size_t ci = 0; rc == 0 && ci < dm->prof->nclasses; ci++) {
		const struct devprofile_class *c = &dm->prof->classes[ci];
		for (size_t k = 0; rc == 0 && set[ci] && k < c->nnodes; k++) {
			const struct devprofile_node *n = &c->nodes[k];
			if (n->is_virtual || !n->has_dev || !n->path[0])
				continue;
			rc = dm->ops.node_set(dm->ops.ctx, v->name, n, present, err);
			if (rc == 0)
				done++;
		}
	}
	for (size_t ci = 0; rc < 0 && ci < dm->prof->nclasses && total < done; ci++) {
		const struct devprofile_class *c = &dm->prof->classes[ci];
		for (size_t k = 0; set[ci] && k < c->nnodes && total < done; k++) {
			const struct devprofile_node *n = &c->nodes[k];
			if (n->is_virtual || !n->has_dev || !n->path[0])
				continue;
			cells_err_t e2;
			if (dm->ops.node_set(dm->ops.ctx, v->name, n, !present, &e2) < 0)
				log_error("device modes: VP %s: cannot put %s back: %s", v->name,
					  n->path, e2.msg);
			total++;
		}
	}
	return rc;
}

static void class_names(const struct devmode *dm, const bool *set, char *buf, size_t len)
{
	size_t l = 0;
	buf[0] = 0;
	for (size_t ci = 0; ci < dm->prof->nclasses && l < len; ci++)
		if (set[ci])
			l += (size_t)snprintf(buf + l, len - l, "%s%s", l ? "," : "",
					      dm->prof->classes[ci].name);
}

/* Give (allow) or take the classes in set[] in one VP, all or nothing, with one change of
 * its device cgroup. Deny: the nodes leave first, then the cgroup denies; allow: the
 * cgroup allows first, then the nodes appear; so a half-done step never leaves an
 * openable node behind. */
static int step(struct devmode *dm, struct devmode_vp *v, const bool *set, bool allow,
		cells_err_t *err)
{
	struct kcg_dev rules[DEVPROFILE_MAX_CLASSES * DEVPROFILE_MAX_NODES];
	size_t n = class_rules(dm, set, allow, rules);
	char names[256];
	class_names(dm, set, names, sizeof names);
	int rc = allow ? 0 : nodes_set(dm, v, set, false, err);
	if (rc == 0 && n && dm->ops.dev_apply) {
		rc = dm->ops.dev_apply(dm->ops.ctx, v->name, rules, n, err);
		cells_err_t e2;
		if (rc < 0 && !allow && nodes_set(dm, v, set, true, &e2) < 0)
			log_error("device modes: VP %s: cannot put nodes back: %s", v->name,
				  e2.msg);
	}
	if (rc == 0 && allow && nodes_set(dm, v, set, true, err) < 0) {
		rc = -1;
		for (size_t i = 0; i < n; i++)
			rules[i].allow = false;
		cells_err_t e2;
		if (dm->ops.dev_apply && dm->ops.dev_apply(dm->ops.ctx, v->name, rules, n, &e2) < 0)
			log_error("device modes: VP %s: cannot deny again: %s", v->name, e2.msg);
	}
	if (rc < 0)
		return cells_err_prefix(err, "VP %s: %s device class %s", v->name,
					allow ? "allow" : "deny", names);
	for (size_t ci = 0; ci < dm->prof->nclasses; ci++)
		if (set[ci])
			v->access[ci] = allow;
	dm->changes += n;
	return 0;
}

/* Bring every running VP's access to target: every denial first (an exclusive grant
 * must not overlap with the previous holder), then every grant; one device-cgroup change
 * per VP and phase. */
static int converge(struct devmode *dm, bool (*target)[DEVPROFILE_MAX_CLASSES], cells_err_t *err)
{
	for (int allow = 0; allow < 2; allow++)
		for (size_t i = 0; i < dm->nvps; i++) {
			struct devmode_vp *v = &dm->vps[i];
			bool set[DEVPROFILE_MAX_CLASSES] = {false}, any = false;
			for (size_t ci = 0; v->running && ci < dm->prof->nclasses; ci++) {
				set[ci] =
				    v->access[ci] != target[i][ci] && target[i][ci] == (allow == 1);
				any |= set[ci];
			}
			if (any && step(dm, v, set, allow == 1, err) < 0)
				return -1;
		}
	return 0;
}

/* Bring the kernel's state to want_access() for every running VP; all or nothing. */
static int reconcile(struct devmode *dm, cells_err_t *err)
{
	const struct devprofile *p = dm->prof;
	bool old[DEVMODE_MAX_VPS][DEVPROFILE_MAX_CLASSES];
	bool want[DEVMODE_MAX_VPS][DEVPROFILE_MAX_CLASSES];
	for (size_t i = 0; i < dm->nvps; i++) {
		memcpy(old[i], dm->vps[i].access, sizeof old[i]);
		for (size_t ci = 0; ci < p->nclasses; ci++)
			want[i][ci] = want_access(dm, &dm->vps[i], ci);
	}
	if (converge(dm, want, err) < 0) {
		cells_err_t e2;
		if (converge(dm, old, &e2) < 0)
			log_error("device modes: cannot undo: %s", e2.msg);
		return -1;
	}
	for (size_t i = 0; i < dm->nvps; i++) {
		struct devmode_vp *v = &dm->vps[i];
		if (!v->running || !memcmp(old[i], v->access, sizeof old[i]))
			continue;
		json_object *det = json_object_new_object(), *al = json_object_new_array(),
			    *de = json_object_new_array();
		for (size_t ci = 0; ci < p->nclasses; ci++)
			if (old[i][ci] != v->access[ci])
				json_object_array_add(v->access[ci] ? al : de,
						      json_object_new_string(p->classes[ci].name));
		json_object_object_add(det, "allowed", al);
		json_object_object_add(det, "denied", de);
		json_object_object_add(det, "policy_version",
				       json_object_new_uint64(dm->policy_version));
		if (dm->ops.audit)
			dm->ops.audit(dm->ops.ctx, v->name, "device.access", "ok", det);
		json_object_put(det);
	}
	return 0;
}

int devmode_set_policy(struct devmode *dm, const struct pol_model *pol, cells_err_t *err)
{
	if (devmode_validate(dm->prof, pol, err) < 0)
		return -1;
	struct devmode saved;
	memcpy(&saved, dm, sizeof saved);
	for (size_t i = 0; i < dm->nvps; i++) {
		dm->vps[i].in_policy = false;
		memset(dm->vps[i].mode, 0, sizeof dm->vps[i].mode);
	}
	dm->nunknown = 0;
	for (size_t v = 0; pol && v < pol->nvps; v++) {
		const struct pol_vp_rule *r = &pol->vps[v];
		struct devmode_vp *vp = add_vp(dm, r->vp, err);
		if (!vp) {
			memcpy(dm, &saved, sizeof saved);
			return -1;
		}
		vp->in_policy = true;
		for (size_t k = 0; k < r->ndevices; k++) {
			int ci = class_index(dm->prof, r->devices[k].cls);
			if (ci >= 0) {
				vp->mode[ci] = rule_mode(r->devices[k].mode);
				continue;
			}
			bool seen = false;
			for (size_t u = 0; u < dm->nunknown; u++)
				seen |= !strcmp(dm->unknown[u], r->devices[k].cls);
			if (!seen && dm->nunknown < CELLS_ARRAY_SIZE(dm->unknown))
				snprintf(dm->unknown[dm->nunknown++], sizeof dm->unknown[0],
					 "%.32s", r->devices[k].cls);
		}
	}
	dm->policy_version = pol ? pol->version : 0;
	dm->bvp_wifi_status_allowed = pol ? pol->bvp_wifi_status_allowed : false;
	if (reconcile(dm, err) < 0) {
		uint64_t changes = dm->changes;
		memcpy(dm, &saved, sizeof saved);
		dm->changes = changes;
		return -1;
	}
	return 0;
}

int devmode_vp_started(struct devmode *dm, const char *vp, cells_err_t *err)
{
	struct devmode_vp *v = add_vp(dm, vp, err);
	if (!v)
		return -1;
	v->running = true;
	memset(v->access, 0, sizeof v->access); /* a fresh VP's /dev is minimal */
	if (reconcile(dm, err) < 0) {
		v->running = false;
		return -1;
	}
	return 0;
}

void devmode_vp_stopped(struct devmode *dm, const char *vp)
{
	struct devmode_vp *v = find_vp(dm, vp);
	if (!v || !v->running)
		return;
	/* its cgroup and /dev are gone with it; nothing to undo in the kernel */
	v->running = false;
	memset(v->access, 0, sizeof v->access);
	cells_err_t err;
	if (reconcile(dm, &err) < 0)
		log_error("device modes after VP %s stopped: %s", vp, err.msg);
}

int devmode_set_foreground(struct devmode *dm, const char *vp, cells_err_t *err)
{
	char old[sizeof dm->fg];
	memcpy(old, dm->fg, sizeof old);
	snprintf(dm->fg, sizeof dm->fg, "%s", vp ? vp : "");
	if (reconcile(dm, err) < 0) {
		memcpy(dm->fg, old, sizeof old);
		return -1;
	}
	return 0;
}

enum devmode_kind devmode_mode(const struct devmode *dm, const char *vp, const char *cls)
{
	const struct devmode_vp *v = find_vp(dm, vp);
	int ci = class_index(dm->prof, cls);
	return v && ci >= 0 ? v->mode[ci] : DEVMODE_NONE;
}

bool devmode_access(const struct devmode *dm, const char *vp, const char *cls)
{
	const struct devmode_vp *v = find_vp(dm, vp);
	int ci = class_index(dm->prof, cls);
	return v && ci >= 0 && v->access[ci];
}

json_object *devmode_describe(const struct devmode *dm)
{
	const struct devprofile *p = dm->prof;
	json_object *o = json_object_new_object(), *classes = json_object_new_array();
	json_object_object_add(o, "profile", json_object_new_string(p->name));
	json_object_object_add(o, "policy_version", json_object_new_uint64(dm->policy_version));
	json_object_object_add(o, "foreground", dm->fg[0] ? json_object_new_string(dm->fg) : NULL);
	for (size_t ci = 0; ci < p->nclasses; ci++) {
		const struct devprofile_class *c = &p->classes[ci];
		json_object *co = json_object_new_object(), *nodes = json_object_new_array(),
			    *modes = json_object_new_array(), *vps = json_object_new_object(),
			    *acc = json_object_new_array();
		json_object_object_add(co, "class", json_object_new_string(c->name));
		for (size_t j = 0; j < c->nnodes; j++)
			json_object_array_add(nodes, devprofile_node_json(&c->nodes[j]));
		for (int m = DEVMODE_NONE; m <= DEVMODE_EXCLUSIVE; m++)
			if (c->modes & DEVMODE_BIT(m))
				json_object_array_add(modes,
						      json_object_new_string(devmode_name(m)));
		const char *holder = NULL;
		for (size_t i = 0; i < dm->nvps; i++) {
			const struct devmode_vp *v = &dm->vps[i];
			if (!v->in_policy && !v->running)
				continue;
			json_object_object_add(vps, v->name,
					       json_object_new_string(devmode_name(v->mode[ci])));
			if (v->access[ci])
				json_object_array_add(acc, json_object_new_string(v->name));
			if (v->running && v->mode[ci] == DEVMODE_EXCLUSIVE)
				holder = v->name;
		}
		json_object_object_add(co, "description", json_object_new_string(c->description));
		json_object_object_add(co, "nodes", nodes);
		json_object_object_add(co, "modes", modes);
		json_object_object_add(co, "foreground_bound",
				       json_object_new_boolean(c->foreground_bound));
		json_object_object_add(co, "vps", vps);
		json_object_object_add(co, "access", acc);
		json_object_object_add(co, "holder",
				       holder ? json_object_new_string(holder) : NULL);
		json_object_array_add(classes, co);
	}
	json_object_object_add(o, "classes", classes);
	json_object *unk = json_object_new_array();
	for (size_t u = 0; u < dm->nunknown; u++)
		json_object_array_add(unk, json_object_new_string(dm->unknown[u]));
	json_object_object_add(o, "unknown_classes", unk);
	return o;
}
