/* policy_engine.h - the device side of signed policies: trust root, delegations,
 * install (verify + persist + apply, all or nothing), the policy in force, local
 * tightening by `cellctl vp config`, and verification of signed commands.
 *
 * State (state DB, module "policy"): the pinned root, the verified delegations (signed
 * bytes, re-verified against the root at start-up), the accepted policy (version,
 * SHA-256, payload, whether applied) and the previous policy in force, and the local VP
 * configuration. A new version is committed (sqlite synchronous=FULL, one transaction)
 * before it is applied; the version never goes down, also after a crash.
 *
 * Effective policy: the MDM policy with each VP's local configuration merged in, each
 * setting the stricter of the two (device modes no-access < shared < exclusive; net
 * none < nat; policy/pol_model_tighten). Enforcers and policy_vp_rule() see the
 * effective policy's model.
 *
 * Test hook (test builds only, testhook.h): `cellsd --test-crash-at policy-before-persist`
 * or `policy-after-persist` makes cellsd kill itself with SIGKILL at that point of an
 * install (docs/PROTOCOL.md "Policies"). */
#ifndef CELLS_POLICY_ENGINE_H
#define CELLS_POLICY_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "cellsd.h"
#include "pol_model.h"
#include "pol_trust.h"
#include "wire.h"

/* Load the state (d->pe, owned). Run after the state DB and audit log are open. */
int policy_engine_init(struct cellsd *d, cells_err_t *err);
/* Apply the accepted policy at start-up (after every enforcer registered). A failure
 * leaves the previous policy in force and the device non-compliant; it is not fatal. */
int policy_engine_start(struct cellsd *d, cells_err_t *err);
void policy_engine_free(struct cellsd *d);

/* Pin the trust root (PEM / raw key / TrustRoot bytes); refused once one is pinned.
 * Audited. */
int policy_trust_pin(struct cellsd *d, const uint8_t *p, size_t n, const char *actor,
		     cells_err_t *err);

/* Take root rotations (oldest first) and KeyDelegations offered by the MDM (a
 * TrustUpdate, or the delegations of an EnrollResponse after policy_trust_pin of its
 * TrustRoot): verified against the pinned root (pol_trust_advance; strict for a
 * TrustUpdate: stale, revoked, expired or replayed is refused), persisted in one
 * transaction, audited (trust.update ok / refused with the reason). A rotation revokes
 * the old root's delegations; a delegation's revoke_below those of lower serials. */
int policy_trust_update(struct cellsd *d, Cells__V1__Signed *const *rotations, size_t nrot,
			Cells__V1__Signed *const *delegations, size_t ndel, bool strict,
			const char *source, cells_err_t *err);

/* Enrollment: pin the EnrollResponse's TrustRoot (unless the same root is pinned
 * already) and take its delegations (policy_trust_update). */
int policy_trust_pin_enrolled(struct cellsd *d, const Cells__V1__TrustRoot *root,
			      Cells__V1__Signed *const *dels, size_t ndels, cells_err_t *err);
/* The trust the device holds now (its pinned root and verified delegations), for
 * verifiers of other signed objects (images). -1 (EKEYREJECTED) when no root is pinned. */
int policy_trust_get(struct cellsd *d, struct pol_trust *out, cells_err_t *err);
/* The version of the policy in force, for DeviceHello (0: none). */
uint64_t policy_installed_version(struct cellsd *d);

/* Verify + persist + apply a PolicyBundle or a Signed policy, all or nothing; audited
 * (policy.accepted / policy.installed / policy.apply_failed / policy.rejected). Returns 0 when
 * installed, 1 when this very policy (same version and bytes) is already in force (a replay). */
int policy_install(struct cellsd *d, const uint8_t *signed_blob, size_t n, const char *source,
		   cells_err_t *err);
/* Check only: 0 when policy_install would accept it (*version set), else -1 with the
 * reason. Changes nothing. */
int policy_check(struct cellsd *d, const uint8_t *blob, size_t n, uint64_t *version,
		 cells_err_t *err);

/* Signature by a key delegated for the command role, device id, expiry. *out owned
 * (cells__v1__command__free_unpacked). The caller handles replay by command_id. */
int policy_verify_command(struct cellsd *d, const Cells__V1__Signed *s, Cells__V1__Command **out,
			  cells_err_t *err);

/* The effective rule of a VP (borrowed, valid until the next install or config change);
 * NULL when no policy names the VP. */
const struct pol_vp_rule *policy_vp_rule(struct cellsd *d, const char *vp);
/* The MDM's rule of a VP (the bounds of local configuration); NULL when none. */
const struct pol_vp_rule *policy_vp_bounds(struct cellsd *d, const char *vp);

/* True when the policy in force expired, says on_expiry: lock-vp, and vp's rule says
 * lock_on_expiry (the documented fail state: the VP runtime keeps such a VP locked). */
bool policy_vp_expiry_locked(struct cellsd *d, const char *vp);

/* Version of the policy in force (0: none) and compliance (Cells__V1__Compliance). */
uint64_t policy_version(struct cellsd *d);
int policy_compliance(struct cellsd *d);

/* Local tightening: validate KEY=VALUE settings against the MDM bounds, store them and
 * apply the new effective policy (all or nothing). The caller checked the password. */
int policy_set_local(struct cellsd *d, const char *vp, char *const *settings, size_t n,
		     const char *actor, cells_err_t *err);

/* A JSON description (owned) for `cellctl policy show`. */
json_object *policy_describe(struct cellsd *d);

/* A SIGNED_AUDIT_ACK of the MDM: kind, signature by a key the pinned root delegated for
 * the command role, device id. *out owned (cells__v1__audit_ack__free_unpacked). The
 * caller matches it with the batch in flight. */
int policy_verify_audit_ack(struct cellsd *d, const Cells__V1__Signed *s, Cells__V1__AuditAck **out,
			    cells_err_t *err);

/* The MDM policy in force, its model (borrowed, valid until the next install); NULL
 * when none. */
const struct pol_model *policy_in_force(struct cellsd *d);
/* The reason the last apply failed ("enforcer NAME: ..."), NULL when it did not. */
const char *policy_apply_error(struct cellsd *d);

#endif
