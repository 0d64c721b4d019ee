/* memory.h - memory sharing and low-memory order of VPs (the paper's policies).
 *
 * KSM: when enabled, cellsd marks itself PR_SET_MEMORY_MERGE at start-up so that every
 * VP init it forks (and everything in the VP) inherits it. ksmd runs while a VP boots:
 * memory_ksm_boot() starts it, memory_ksm_sample() (every interval) stops it once the
 * merge rate (pages_sharing gained per second) falls below the threshold and it has run
 * at least min_run_ms. The sysfs directory is configurable (tests use a copy).
 *
 * OOM: memory_oom_apply() gives the foreground VP's processes fvp_adj, the background
 * VPs' bvp_adj (higher: killed first) and every VP init OOM_ADJ_PROTECTED; the agent
 * protects itself at start-up. It runs on every switch, VP start and periodically
 * (children inherit their parent's adj, the sweep corrects them). */
#ifndef CELLS_MEMORY_H
#define CELLS_MEMORY_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "err.h"

struct memory_cfg {
	bool ksm;
	char ksm_dir[PATH_MAX];	  /* default KSM_SYSFS */
	unsigned ksm_threshold;	  /* pages/s; default 64 */
	unsigned ksm_interval_ms; /* default 2000 */
	unsigned ksm_min_run_ms;  /* default 10000 */
	int fvp_adj;		  /* default 0 */
	int bvp_adj;		  /* default 500 */
};

struct memory {
	struct memory_cfg cfg;
	bool ksmd_on;
	int64_t ksmd_since_ms, last_ms;
	uint64_t last_sharing;
	uint64_t rate; /* last measured pages/s */
	unsigned stops;
};

void memory_cfg_defaults(struct memory_cfg *c);
void memory_init(struct memory *m, const struct memory_cfg *cfg);
/* A VP boots: start ksmd (no-op when KSM is off). */
int memory_ksm_boot(struct memory *m, int64_t now_ms, cells_err_t *err);
/* Sample the merge rate; stop ksmd below the threshold. Returns 1 while ksmd runs
 * (sample again after the interval), 0 once stopped, -1 on error. */
int memory_ksm_sample(struct memory *m, int64_t now_ms, cells_err_t *err);
/* OOM order: inits[i] is the host pid of VP vps[i]'s init (0: not running). */
int memory_oom_apply(const struct memory *m, const char *fg, const char *const *vps,
		     const pid_t *inits, size_t n, cells_err_t *err);
json_object *memory_describe(const struct memory *m);

#endif
