/* mgmt_policy_tmp.h - TEMPORARY ADAPTER (mgmt branch only; the lead drops it when the
 * policy engine lands in agent/policy_engine.h). It provides the policy engine contract
 * of BRIEF.md with real signature checks so the management channel can be built and
 * tested before the merge:
 *   policy_install()         verify (trust root -> delegation -> policy), device,
 *                            expiry, version; persist; audited. 1: same version and
 *                            bytes as installed (a replay), 0: installed.
 *   policy_verify_command()  command-role delegation, device, expiry.
 * and two things the management channel needs from the engine:
 *   policy_trust_pin_enrolled()  pin the TrustRoot + delegations from enrollment;
 *   policy_installed_version()   for DeviceHello. */
#ifndef CELLS_MGMT_POLICY_TMP_H
#define CELLS_MGMT_POLICY_TMP_H

#include <stddef.h>
#include <stdint.h>

#include "cellsd.h"
#include "wire.h"

#if __has_include("policy_engine.h")
#include "policy_engine.h"
#else
int policy_install(struct cellsd *d, const uint8_t *signed_blob, size_t n, const char *source,
		   cells_err_t *err);
int policy_verify_command(struct cellsd *d, const Cells__V1__Signed *s, Cells__V1__Command **out,
			  cells_err_t *err);
#endif

int policy_trust_pin_enrolled(struct cellsd *d, const Cells__V1__TrustRoot *root,
			      Cells__V1__Signed *const *dels, size_t ndels, cells_err_t *err);
uint64_t policy_installed_version(struct cellsd *d);

#endif
