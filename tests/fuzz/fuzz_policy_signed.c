/* fuzz_policy_signed.c - the device's whole acceptance path for untrusted policy
 * bytes: bundle decode, root rotations, delegations, policy signature and every
 * acceptance rule; the same bytes as a signed command. */
#include "fuzz_policy_keys.h"
#include "pol_policy.h"
#include "pol_trust.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct pol_root root0;
	static int init;
	if (!init) {
		EVP_PKEY *k = fuzz_key(0x11);
		uint8_t pub[32];
		pol_key_raw_public(k, pub, NULL);
		pol_root_from_key(pub, &root0);
		EVP_PKEY_free(k);
		init = 1;
	}
	cells_err_t err;
	struct pol_bundle b;
	if (pol_bundle_decode(data, size, &b, &err) == 0) {
		struct pol_root root = root0, nr;
		struct pol_delegation dels[POL_MAX_BUNDLE_DELEGATIONS];
		size_t nd = 0;
		for (size_t i = 0; i < b.nrotations; i++)
			if (pol_root_rotate(&root, b.rotations[i], &nr, &err) == 0)
				root = nr;
		for (size_t i = 0; i < b.ndelegations; i++)
			if (pol_delegation_verify(&root, b.delegations[i], &dels[nd], &err) == 0)
				nd++;
		struct pol_installed inst = {.have = true, .version = 2};
		Cells__V1__Policy *p = NULL;
		if (pol_policy_verify(b.policy, dels, nd, FUZZ_DEVICE_ID, FUZZ_NOW, &inst, &p,
				      &err) >= 0)
			cells__v1__policy__free_unpacked(p, NULL);
		Cells__V1__Command *c = NULL;
		if (pol_command_verify(b.policy, dels, nd, FUZZ_DEVICE_ID, FUZZ_NOW, &c, &err) == 0)
			cells__v1__command__free_unpacked(c, NULL);
		pol_bundle_free(&b);
	}
	struct pol_root r;
	pol_root_parse_any(data, size, &r, &err);
	return 0;
}
