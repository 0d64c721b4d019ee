/* compliance.h - the device's compliance, computed from its real state with
 * machine-readable reasons (DeviceHello.compliance_reasons, docs/PROTOCOL.md):
 *
 *   no-policy               no MDM policy is in force
 *   policy-expired          the policy in force is past its expires_at
 *   policy-refused          the last policy the MDM sent was refused (mgmt.c)
 *   apply-failed            the last apply failed (the previous policy stays in force)
 *   enforcer-failed:CLASS   ... and it was enforcer CLASS that failed
 *   password-not-set:VP     the policy requires VP's password and none is set
 *   audit-full              the audit log cannot be written (the daemon fails closed)
 *
 * The device is compliant iff there is no reason. Other modules contribute reasons with
 * a source (compliance_source_add) whose function calls compliance_reason_add; the
 * reasons planned for them (the lead wires these):
 *   "vp-locked:VP"        a VP is locked (locks)
 *   "wipe-pending:VP"     a wipe was ordered and is not finished (wipe)
 *   "offline-too-long"    the device did not reach its MDM for the policy's limit
 * Reasons are sorted and de-duplicated, so two computations compare with
 * compliance_equal(). */
#ifndef CELLS_COMPLIANCE_H
#define CELLS_COMPLIANCE_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "cellsd.h"

#define COMPLIANCE_MAX_REASONS 32
#define COMPLIANCE_REASON_LEN 96
#define COMPLIANCE_MAX_SOURCES 16

struct compliance {
	size_t n;
	char reasons[COMPLIANCE_MAX_REASONS][COMPLIANCE_REASON_LEN];
};

/* Add a reason (printf format). Past COMPLIANCE_MAX_REASONS the last slot says "more". */
void compliance_reason_add(struct compliance *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A module's contribution: called at each computation, adds its reasons. */
typedef void (*compliance_source_fn)(struct cellsd *d, struct compliance *c);
/* Register a source (process-wide table; the same fn twice is registered once).
 * -1 when the table is full. */
int compliance_source_add(const char *name, compliance_source_fn fn);

/* Compute the reasons now: the built-in ones (policy, password, audit) and every
 * registered source's. */
void compliance_compute(struct cellsd *d, struct compliance *c);
/* Cells__V1__Compliance of a computation: COMPLIANT iff no reason; else the specific
 * code of the first known reason, NONCOMPLIANT_OTHER for the rest. */
int compliance_code(const struct compliance *c);
bool compliance_equal(const struct compliance *a, const struct compliance *b);
/* {"compliant": bool, "reasons": [..]} added to o as "compliance". */
void compliance_json(const struct compliance *c, json_object *o);

#endif
