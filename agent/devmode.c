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

int devmode_validate(const struct devprofile *prof, const Cells__V1__Policy *pol, cells_err_t *err)
{
	const char *holder[DEVPROFILE_MAX_CLASSES] = {0};
	if (!pol)
		return 0;
	for (size_t v = 0; v < pol->n_vps; v++) {
		const Cells__V1__VpRule *r = pol->vps[v];
		for (size_t k = 0; k < r->n_devices; k++) {
			const Cells__V1__DeviceRule *dr = r->devices[k];
			int ci = class_index(prof, dr->device_class);
			for (size_t k2 = 0; k2 < k; k2++)
				if (!strcmp(r->devices[k2]->device_class, dr->device_class))
					return cells_err_set(err, EINVAL,
							     "VP %s: device class %s named twice",
							     r->vp, dr->device_class);
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

/* Give or take one class's nodes in one VP. On failure, undo this class's steps. */
static int set_class(struct devmode *dm, const struct devmode_vp *v, size_t ci, bool allow,
		     cells_err_t *err)
{
	const struct devprofile_class *c = &dm->prof->classes[ci];
	size_t done = 0;
	int rc = 0;
	for (; done < c->nnodes; done++) {
		const struct devprofile_node *n = &c->nodes[done];
		if (n->is_virtual || !n->has_dev)
			continue;
		/* allow: cgroup first, then the node; deny: the node first, then the cgroup,
		 * so that a half-done step never leaves an openable node behind. */
		if (allow) {
			rc = dm->ops.dev_set ? dm->ops.dev_set(dm->ops.ctx, v->name, n->type,
							       n->major, n->minor, true, err)
					     : 0;
			if (rc == 0 && n->path[0] && dm->ops.node_set)
				rc = dm->ops.node_set(dm->ops.ctx, v->name, n, true, err);
		} else {
			if (n->path[0] && dm->ops.node_set)
				rc = dm->ops.node_set(dm->ops.ctx, v->name, n, false, err);
			if (rc == 0 && dm->ops.dev_set)
				rc = dm->ops.dev_set(dm->ops.ctx, v->name, n->type, n->major,
						     n->minor, false, err);
		}
		if (rc < 0)
			break;
		dm->changes++;
	}
	if (rc == 0)
		return 0;
	cells_err_prefix(err, "VP %s: %s device class %s", v->name, allow ? "allow" : "deny",
			 c->name);
	for (size_t j = 0; j < done; j++) {
		const struct devprofile_node *n = &c->nodes[j];
		if (n->is_virtual || !n->has_dev)
			continue;
		cells_err_t e2;
		if (n->path[0] && dm->ops.node_set)
			dm->ops.node_set(dm->ops.ctx, v->name, n, !allow, &e2);
		if (dm->ops.dev_set)
			dm->ops.dev_set(dm->ops.ctx, v->name, n->type, n->major, n->minor, !allow,
					&e2);
	}
	return -1;
}

/* Bring the kernel's state to want_access() for every running VP; all or nothing. */
static int reconcile(struct devmode *dm, cells_err_t *err)
{
	const struct devprofile *p = dm->prof;
	bool old[DEVMODE_MAX_VPS][DEVPROFILE_MAX_CLASSES];
	for (size_t i = 0; i < dm->nvps; i++)
		memcpy(old[i], dm->vps[i].access, sizeof old[i]);
	/* denials first: an exclusive grant must not overlap with the previous holder */
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < dm->nvps; i++) {
			struct devmode_vp *v = &dm->vps[i];
			if (!v->running)
				continue;
			for (size_t ci = 0; ci < p->nclasses; ci++) {
				bool want = want_access(dm, v, ci);
				if (want == v->access[ci] || want != (pass == 1))
					continue;
				if (set_class(dm, v, ci, want, err) < 0)
					goto undo;
				v->access[ci] = want;
			}
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
undo:
	for (size_t i = 0; i < dm->nvps; i++) {
		struct devmode_vp *v = &dm->vps[i];
		for (size_t ci = 0; ci < p->nclasses; ci++) {
			if (v->access[ci] == old[i][ci])
				continue;
			cells_err_t e2;
			if (set_class(dm, v, ci, old[i][ci], &e2) < 0)
				log_error("device modes: cannot undo: %s", e2.msg);
			else
				v->access[ci] = old[i][ci];
		}
	}
	return -1;
}

int devmode_set_policy(struct devmode *dm, const Cells__V1__Policy *pol, cells_err_t *err)
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
	for (size_t v = 0; pol && v < pol->n_vps; v++) {
		const Cells__V1__VpRule *r = pol->vps[v];
		struct devmode_vp *vp = add_vp(dm, r->vp, err);
		if (!vp) {
			memcpy(dm, &saved, sizeof saved);
			return -1;
		}
		vp->in_policy = true;
		for (size_t k = 0; k < r->n_devices; k++) {
			int ci = class_index(dm->prof, r->devices[k]->device_class);
			if (ci >= 0) {
				vp->mode[ci] = rule_mode(r->devices[k]->mode);
				continue;
			}
			bool seen = false;
			for (size_t u = 0; u < dm->nunknown; u++)
				seen |= !strcmp(dm->unknown[u], r->devices[k]->device_class);
			if (!seen && dm->nunknown < CELLS_ARRAY_SIZE(dm->unknown))
				snprintf(dm->unknown[dm->nunknown++], sizeof dm->unknown[0],
					 "%.32s", r->devices[k]->device_class);
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
