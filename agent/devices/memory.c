/* memory.c - KSM and OOM policies of VPs (see memory.h). */
#include "memory.h"
#include "ksm.h"
#include "log.h"
#include "oom.h"

#include <stdio.h>
#include <string.h>

void memory_cfg_defaults(struct memory_cfg *c)
{
	memset(c, 0, sizeof *c);
	snprintf(c->ksm_dir, sizeof c->ksm_dir, "%s", KSM_SYSFS);
	c->ksm_threshold = 64;
	c->ksm_interval_ms = 2000;
	c->ksm_min_run_ms = 10000;
	c->fvp_adj = 0;
	c->bvp_adj = 500;
}

void memory_init(struct memory *m, const struct memory_cfg *cfg)
{
	memset(m, 0, sizeof *m);
	m->cfg = *cfg;
}

int memory_ksm_boot(struct memory *m, int64_t now_ms, cells_err_t *err)
{
	if (!m->cfg.ksm)
		return 0;
	if (!m->ksmd_on) {
		if (ksm_set_run(m->cfg.ksm_dir, 1, err) < 0)
			return -1;
		if (ksm_get(m->cfg.ksm_dir, "pages_sharing", &m->last_sharing, err) < 0)
			return -1;
		m->ksmd_on = true;
		log_info("ksm: ksmd started (a VP boots)");
	}
	m->ksmd_since_ms = now_ms; /* a new boot restarts the minimum run time */
	m->last_ms = now_ms;
	return 0;
}

int memory_ksm_sample(struct memory *m, int64_t now_ms, cells_err_t *err)
{
	if (!m->cfg.ksm || !m->ksmd_on)
		return 0;
	uint64_t sharing;
	if (ksm_get(m->cfg.ksm_dir, "pages_sharing", &sharing, err) < 0)
		return -1;
	int64_t dt = now_ms - m->last_ms;
	if (dt <= 0)
		return 1;
	uint64_t gained = sharing > m->last_sharing ? sharing - m->last_sharing : 0;
	m->rate = gained * 1000 / (uint64_t)dt;
	m->last_sharing = sharing;
	m->last_ms = now_ms;
	if (now_ms - m->ksmd_since_ms < (int64_t)m->cfg.ksm_min_run_ms ||
	    m->rate >= m->cfg.ksm_threshold)
		return 1;
	if (ksm_set_run(m->cfg.ksm_dir, 0, err) < 0)
		return -1;
	m->ksmd_on = false;
	m->stops++;
	log_info("ksm: merge rate %llu pages/s < %u: ksmd stopped (%llu pages sharing)",
		 (unsigned long long)m->rate, m->cfg.ksm_threshold, (unsigned long long)sharing);
	return 0;
}

int memory_oom_apply(const struct memory *m, const char *fg, const char *const *vps,
		     const pid_t *inits, size_t n, cells_err_t *err)
{
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		if (inits[i] <= 0)
			continue;
		bool front = fg && !strcmp(fg, vps[i]);
		cells_err_t e2;
		if (oom_set_vp(inits[i], front ? m->cfg.fvp_adj : m->cfg.bvp_adj, OOM_ADJ_PROTECTED,
			       &e2) < 0) {
			/* keep going for the other VPs; report the first failure */
			if (rc == 0 && err)
				cells_err_set(err, e2.code, "VP %s: %s", vps[i], e2.msg);
			rc = -1;
		}
	}
	return rc;
}

json_object *memory_describe(const struct memory *m)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "ksm", json_object_new_boolean(m->cfg.ksm));
	json_object_object_add(o, "ksmd_running", json_object_new_boolean(m->ksmd_on));
	json_object_object_add(o, "merge_rate", json_object_new_uint64(m->rate));
	json_object_object_add(o, "threshold", json_object_new_uint64(m->cfg.ksm_threshold));
	uint64_t v;
	if (ksm_get(m->cfg.ksm_dir, "pages_sharing", &v, NULL) == 0)
		json_object_object_add(o, "pages_sharing", json_object_new_uint64(v));
	if (ksm_get(m->cfg.ksm_dir, "pages_shared", &v, NULL) == 0)
		json_object_object_add(o, "pages_shared", json_object_new_uint64(v));
	json_object_object_add(o, "fvp_oom_score_adj", json_object_new_int(m->cfg.fvp_adj));
	json_object_object_add(o, "bvp_oom_score_adj", json_object_new_int(m->cfg.bvp_adj));
	return o;
}
