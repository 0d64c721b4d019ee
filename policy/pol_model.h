/* pol_model.h - a policy as the agent's enforcers take it: one plain, bounded struct
 * made once from a decoded policy (pol_model_from; the agent makes it from a verified
 * one), with no pointers, so it is copied by assignment, and the local tightening merged
 * in by a pure function (pol_model_tighten). Rendered as JSON by pol_json.h's
 * pol_model_to_json (`cellctl policy show`). */
#ifndef CELLS_POL_MODEL_H
#define CELLS_POL_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "pol_image.h"
#include "pol_policy.h"
#include "wire.h"

#define POL_MODEL_NAME 33     /* a VP or device class name and its NUL */
#define POL_MODEL_WIFI 16     /* wifi_status_allowed entries per VP */
#define POL_MODEL_WIFI_LEN 65 /* one entry and its NUL */

struct pol_dev_rule {
	char cls[POL_MODEL_NAME];
	Cells__V1__AccessMode mode;
};

/* A VP's rule. A part the policy leaves out reads as proto3's defaults (false, 0). */
struct pol_vp_rule {
	char vp[POL_MODEL_NAME];
	Cells__V1__NetMode net;
	bool may_be_foreground, incoming_call_switches;
	bool allow_incoming, allow_outgoing;
	bool password_required;
	uint32_t password_min_length, max_failed_attempts;
	bool wipe_on_limit;
	Cells__V1__AuditUpload audit_upload; /* UNSPECIFIED when the rule has no audit part */
	bool encrypted, lock_on_expiry;
	uint32_t lock_after_offline_s, wipe_after_offline_s;
	char image[POL_IMAGE_REF_MAX + 1]; /* "NAME@VERSION"; empty: the VP's local image */
	size_t ndevices;
	struct pol_dev_rule devices[POL_MAX_DEVICE_RULES];
	size_t nwifi;
	char wifi[POL_MODEL_WIFI][POL_MODEL_WIFI_LEN];
};

struct pol_model {
	uint64_t version;
	int64_t issued_at, expires_at; /* unix seconds; expires_at 0: never */
	char device_id[CELLS_MAX_ID_LEN + 1];
	uint32_t audit_upload_interval_s;
	Cells__V1__ExpiryMode on_expiry;
	bool bvp_wifi_status_allowed;
	size_t nvps;
	struct pol_vp_rule vps[POL_MAX_VPS];
};

/* The model of p. Refuses (EINVAL, one line) what does not fit its bounds; the agent
 * gives it only policies pol_policy_verify accepted, whose bounds are these. */
int pol_model_from(const Cells__V1__Policy *p, struct pol_model *m, cells_err_t *err);

/* A local setting of a VP (`cellctl vp config VP KEY=VALUE`): "net" = none|nat,
 * "device.CLASS" = no-access|shared|exclusive. Strings borrowed. */
struct pol_local {
	const char *vp, *key, *value;
};
/* Merge the local settings into m (the effective policy). A setting only tightens: it
 * replaces the VP rule's value when it permits less, never when it permits more; a
 * setting of a VP or device class the rule does not name, an unknown key or an
 * unparsable value changes nothing. Pure. */
void pol_model_tighten(struct pol_model *m, const struct pol_local *l, size_t n);

/* The rule of vp in m (NULL: m does not name it; m may be NULL). */
const struct pol_vp_rule *pol_model_vp(const struct pol_model *m, const char *vp);
/* The mode a rule gives a device class (NO_ACCESS when not named; r may be NULL). */
Cells__V1__AccessMode pol_model_device_mode(const struct pol_vp_rule *r, const char *cls);

#endif
