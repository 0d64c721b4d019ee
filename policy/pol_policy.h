/* pol_policy.h - decode, verify and validate signed policies (pure code on buffers).
 *
 * pol_bundle_decode() takes what `cellctl policy apply` or the network delivers: a
 * PolicyBundle (the Signed policy plus the delegations and root rotations needed to
 * verify it) or a bare Signed policy. pol_policy_verify() runs every acceptance rule in
 * a fixed order and stops at the first failure with one reason (errno in err->code):
 *   EMSGSIZE over the size limit (checked before any parsing)   EBADMSG malformed
 *   EKEYREJECTED / EKEYEXPIRED signature and delegation rules (pol_trust.h)
 *   ESTALE   version not newer than the installed one (rollback, or same version with
 *            other bytes)
 *   ETIME    the policy expired                     ENODEV   for another device
 *   EINVAL   internally inconsistent (pol_policy_validate)
 * Same version with the same bytes is not an error: pol_policy_verify returns 1. */
#ifndef CELLS_POL_POLICY_H
#define CELLS_POL_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "pol_trust.h"
#include "wire.h"

#define POL_MAX_BUNDLE (CELLS_MAX_SIGNED_BLOB + 24 * 1024)
#define POL_MAX_BUNDLE_DELEGATIONS 4
#define POL_MAX_BUNDLE_ROTATIONS 4
#define POL_MAX_VPS 16
#define POL_MAX_DEVICE_RULES 32
#define POL_MAX_PASSWORD_LEN 1024
#define POL_MAX_FAILED_ATTEMPTS 1000

/* Device classes a DeviceRule may name (NULL-terminated). */
extern const char *const pol_device_classes[];
bool pol_device_class_valid(const char *name);
/* display and input: held by the foreground VP only, whatever the mode says. */
bool pol_device_class_foreground_bound(const char *name);
/* "no-access" / "shared" / "exclusive" <-> AccessMode (UNSPECIFIED reads as no-access). */
const char *pol_access_name(Cells__V1__AccessMode m);
int pol_access_parse(const char *s, Cells__V1__AccessMode *out);
const char *pol_net_name(Cells__V1__NetMode m);
int pol_net_parse(const char *s, Cells__V1__NetMode *out);
/* How much a mode permits: no-access 0 < shared 1 < exclusive 2; net none 0 < nat 1. */
int pol_access_rank(Cells__V1__AccessMode m);
int pol_net_rank(Cells__V1__NetMode m);
/* The mode a VP rule gives a device class (NO_ACCESS when not named). */
Cells__V1__AccessMode pol_rule_device_mode(const Cells__V1__VpRule *r, const char *cls);

/* A decoded bundle: every part owned (free with pol_bundle_free). */
struct pol_bundle {
	Cells__V1__Signed *policy;
	Cells__V1__Signed *delegations[POL_MAX_BUNDLE_DELEGATIONS];
	size_t ndelegations;
	Cells__V1__Signed *rotations[POL_MAX_BUNDLE_ROTATIONS];
	size_t nrotations;
	void *pb; /* the unpacked PolicyBundle or Signed */
};
int pol_bundle_decode(const uint8_t *p, size_t n, struct pol_bundle *out, cells_err_t *err);
/* The part every bundle (PolicyBundle, ImageBundle) shares: at most
 * POL_MAX_BUNDLE_DELEGATIONS delegations and POL_MAX_BUNDLE_ROTATIONS rotations (EBADMSG),
 * copied (borrowed pointers) into out_*, and main of kind, each delegation and rotation
 * of theirs, well formed (cells_signed_check). Nothing is verified. */
int pol_bundle_parts(const Cells__V1__Signed *main, Cells__V1__SignedKind kind,
		     Cells__V1__Signed *const *dels, size_t ndels, Cells__V1__Signed *const *rots,
		     size_t nrots, Cells__V1__Signed *out_dels[POL_MAX_BUNDLE_DELEGATIONS],
		     size_t *out_ndels, Cells__V1__Signed *out_rots[POL_MAX_BUNDLE_ROTATIONS],
		     size_t *out_nrots, cells_err_t *err);
void pol_bundle_free(struct pol_bundle *b);

/* Unpack a policy payload (size first) and validate it. *out is owned. */
int pol_policy_decode(const uint8_t *p, size_t n, Cells__V1__Policy **out, cells_err_t *err);
/* Internal consistency: version >= 1, a 32-hex device id, valid VP names (unique), known
 * device classes (each at most once per VP) and enum values, no two VPs EXCLUSIVE on
 * one class, expiry after issue, bounded password rules. */
int pol_policy_validate(const Cells__V1__Policy *p, cells_err_t *err);

/* The same without requiring a device id when none is set: a policy template that an
 * MDM completes per device (`cells-mdm policy push`). */
int pol_policy_validate_template(const Cells__V1__Policy *p, cells_err_t *err);

struct pol_installed {
	bool have;
	uint64_t version;
	uint8_t hash[32]; /* SHA-256 of the installed payload */
};

/* Verify a Signed policy against the delegations and the installed state, at `now`, for
 * device_id. On success (0, or 1 for the same version with the same bytes) *out is the
 * decoded policy (owned). */
int pol_policy_verify(const Cells__V1__Signed *s, const struct pol_delegation *dels, size_t ndels,
		      const char *device_id, int64_t now, const struct pol_installed *inst,
		      Cells__V1__Policy **out, cells_err_t *err);

/* Verify a Signed command (KEY_ROLE_COMMAND, device, expiry, id). *out owned. */
int pol_command_verify(const Cells__V1__Signed *s, const struct pol_delegation *dels, size_t ndels,
		       const char *device_id, int64_t now, Cells__V1__Command **out,
		       cells_err_t *err);

#endif
