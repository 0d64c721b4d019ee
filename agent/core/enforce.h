/* enforce.h - the enforcer registry: how a policy reaches the system.
 *
 * Modules that enforce part of a policy (the VP runtime: device cgroup and /dev, network
 * mode, ...) register an enforcer with the policy engine at start-up, after
 * policy_engine_init() and before policy_engine_start(). When a policy (or a local
 * tightening of it, `cellctl vp config`) is to take effect, the engine calls every
 * enforcer's apply(d, new, old) in registration order with the *effective* policies,
 * as models (policy/pol_model.h: made once from the verified policy, the local
 * tightening merged in; see policy_engine.h). When no policy was in force, `old` is the
 * empty model (version 0, no VPs): it is never NULL.
 *
 * All or nothing: if apply() of enforcer i fails, the engine calls apply(d, old, new)
 * on enforcers i-1 .. 0 (those already applied) and reports the failure; the old policy
 * stays in force. apply() must therefore make its part of `new` true as a whole or
 * leave its part of `old` in place, and must be idempotent. It runs on the event loop:
 * it may not block for long.
 *
 * Tests make a real enforcer fail through its OS ops (testhook.h: cellsd --test-fail,
 * only in a CELLS_TEST_HOOKS build), never with an enforcer of their own. */
#ifndef CELLS_ENFORCE_H
#define CELLS_ENFORCE_H

#include "cellsd.h"
#include "pol_model.h"

#define ENFORCE_MAX 16

struct enforcer {
	const char *name; /* static string */
	int (*apply)(struct cellsd *d, const struct pol_model *new_policy,
		     const struct pol_model *old_policy, cells_err_t *err);
};

/* Register an enforcer (the struct is copied). Needs policy_engine_init() first. */
int enforce_register(struct cellsd *d, const struct enforcer *e, cells_err_t *err);

#endif
