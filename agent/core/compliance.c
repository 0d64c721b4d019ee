/* compliance.c - compliance computed from the device's state (see compliance.h). */
#include "compliance.h"
#include "cleanup.h"
#include "policy_engine.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct {
	const char *name;
	compliance_source_fn fn;
} sources[COMPLIANCE_MAX_SOURCES];
static size_t nsources;

void compliance_reason_add(struct compliance *c, const char *fmt, ...)
{
	char r[COMPLIANCE_REASON_LEN];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r, sizeof r, fmt, ap);
	va_end(ap);
	for (size_t i = 0; i < c->n; i++)
		if (!strcmp(c->reasons[i], r))
			return;
	if (c->n == COMPLIANCE_MAX_REASONS) {
		snprintf(c->reasons[c->n - 1], COMPLIANCE_REASON_LEN, "more");
		return;
	}
	snprintf(c->reasons[c->n++], COMPLIANCE_REASON_LEN, "%s", r);
}

int compliance_source_add(const char *name, compliance_source_fn fn)
{
	for (size_t i = 0; i < nsources; i++)
		if (sources[i].fn == fn)
			return 0;
	if (nsources == COMPLIANCE_MAX_SOURCES)
		return -1;
	sources[nsources].name = name;
	sources[nsources++].fn = fn;
	return 0;
}

/* The policy engine's state: in force, expired, apply failed (and which enforcer). */
static void from_policy(struct cellsd *d, struct compliance *c)
{
	const struct pol_model *p = policy_in_force(d);
	const char *ae = policy_apply_error(d);
	if (!p)
		compliance_reason_add(c, "no-policy");
	else if (p->expires_at && time(NULL) >= p->expires_at)
		compliance_reason_add(c, "policy-expired");
	if (ae) {
		compliance_reason_add(c, "apply-failed");
		/* "enforcer NAME: why" (policy_engine.c's prefix) */
		const char *pfx = "enforcer ";
		if (!strncmp(ae, pfx, strlen(pfx))) {
			const char *n = ae + strlen(pfx);
			size_t len = strcspn(n, ": ");
			if (len && len < 48)
				compliance_reason_add(c, "enforcer-failed:%.*s", (int)len, n);
		}
	}
}

static int cmp_reason(const void *a, const void *b)
{
	return strcmp((const char *)a, (const char *)b);
}

void compliance_compute(struct cellsd *d, struct compliance *c)
{
	c->n = 0;
	from_policy(d, c);
	if (d->state & CELLSD_ST_AUDIT_CLOSED)
		compliance_reason_add(c, "audit-full");
	for (size_t i = 0; i < nsources; i++)
		sources[i].fn(d, c);
	qsort(c->reasons, c->n, sizeof c->reasons[0], cmp_reason);
}

int compliance_code(const struct compliance *c)
{
	static const struct {
		const char *reason;
		int code;
	} codes[] = {
	    {"apply-failed", CELLS__V1__COMPLIANCE__NONCOMPLIANT_APPLY_FAILED},
	    {"no-policy", CELLS__V1__COMPLIANCE__NONCOMPLIANT_NO_POLICY},
	    {"policy-expired", CELLS__V1__COMPLIANCE__NONCOMPLIANT_POLICY_EXPIRED},
	    {"audit-full", CELLS__V1__COMPLIANCE__NONCOMPLIANT_AUDIT_FULL},
	};
	if (!c->n)
		return CELLS__V1__COMPLIANCE__COMPLIANT;
	for (size_t k = 0; k < CELLS_ARRAY_SIZE(codes); k++)
		for (size_t i = 0; i < c->n; i++)
			if (!strcmp(c->reasons[i], codes[k].reason))
				return codes[k].code;
	return CELLS__V1__COMPLIANCE__NONCOMPLIANT_OTHER;
}

bool compliance_equal(const struct compliance *a, const struct compliance *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->reasons[i], b->reasons[i]))
			return false;
	return true;
}

void compliance_json(const struct compliance *c, json_object *o)
{
	json_object *j = json_object_new_object();
	json_object *arr = json_object_new_array();
	for (size_t i = 0; i < c->n; i++)
		json_object_array_add(arr, json_object_new_string(c->reasons[i]));
	json_object_object_add(j, "compliant", json_object_new_boolean(c->n == 0));
	json_object_object_add(j, "reasons", arr);
	json_object_object_add(o, "compliance", j);
}
