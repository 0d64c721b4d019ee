/* password.h - per-VP configuration passwords with persistent throttling.
 *
 * The hash (Argon2id, policy/pol_password.h) and the failure state live in the state DB
 * (module "password"). A check first commits failures+1 and the time, then compares
 * (constant time), then resets the counter on success: killing cellsd during the check
 * cannot earn a free attempt. Attempts inside the delay of pol_throttle.h are refused
 * without checking. Reaching the policy's max_failed_attempts locks the VP's
 * configuration (audited) and calls password_limit_reached(). */
#ifndef CELLS_PASSWORD_H
#define CELLS_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cellsd.h"

int password_init(struct cellsd *d, cells_err_t *err);

/* Authorise a protected change of vp's configuration with pw. 0 when allowed; -1 with
 * the reason (EACCES wrong, EAGAIN throttled, EPERM locked / no password set yet). */
int password_authorize(struct cellsd *d, const char *vp, const uint8_t *pw, size_t len,
		       const char *actor, cells_err_t *err);

/* Set or change vp's password (the old one is checked, throttled, when one is set). */
int password_set(struct cellsd *d, const char *vp, const uint8_t *new_pw, size_t new_len,
		 const uint8_t *old_pw, size_t old_len, const char *actor, cells_err_t *err);

/* Clear the lock and the failure count (an MDM LockVp{unlock} command). Audited. */
int password_unlock(struct cellsd *d, const char *vp, const char *actor, cells_err_t *err);

/* The VP's password state for display: set, failures, locked, seconds until retry. */
int password_state(struct cellsd *d, const char *vp, bool *set, uint32_t *failures, bool *locked,
		   uint32_t *retry_in_s);

/* Called once when vp reaches the policy's limit of failed attempts, after the VP was
 * locked and the event audited. `wipe` is the policy's wipe_on_limit. The wipe module
 * wires the wipe here; until then this only logs. */
void password_limit_reached(struct cellsd *d, const char *vp, bool wipe);

#endif
