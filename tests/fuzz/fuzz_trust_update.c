/* fuzz_trust_update.c - the device's path for a TrustUpdate (`cells-mdm keys push`):
 * decode, then the TUF walk from a pinned root of version 1 (key 0x11), strict and as a
 * bundle. Invariants checked: the root version never goes down, no held delegation is
 * below the floor, and an update taken once is refused when offered again (a replay). */
#include "fuzz_policy_keys.h"
#include "pol_trust.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct pol_trust cur;
	static int init;
	if (!init) {
		EVP_PKEY *k = fuzz_key(0x11);
		uint8_t pub[32];
		pol_key_raw_public(k, pub, NULL);
		pol_root_from_key(pub, &cur.root);
		cur.root.version = 1;
		EVP_PKEY_free(k);
		init = 1;
	}
	cells_err_t err;
	Cells__V1__TrustUpdate *u = NULL;
	if (pol_trust_update_decode(data, size, &u, &err) < 0)
		return 0;
	struct pol_trust out, again;
	struct pol_trust_result res;
	if (pol_trust_advance(&cur, u->root_rotations, u->n_root_rotations, u->delegations,
			      u->n_delegations, FUZZ_NOW, POL_TRUST_STRICT, &out, &res,
			      &err) == 0) {
		if (out.root.version < cur.root.version)
			abort();
		for (size_t i = 0; i < out.ndels; i++)
			if (out.dels[i].serial < res.floor)
				abort();
		if (pol_trust_advance(&out, u->root_rotations, u->n_root_rotations, u->delegations,
				      u->n_delegations, FUZZ_NOW, POL_TRUST_STRICT, &again, &res,
				      &err) == 0)
			abort(); /* a replay was taken */
	}
	if (pol_trust_advance(&cur, u->root_rotations, u->n_root_rotations, u->delegations,
			      u->n_delegations, FUZZ_NOW, 0, &out, &res, &err) == 0 &&
	    out.root.version < cur.root.version)
		abort();
	cells__v1__trust_update__free_unpacked(u, NULL);
	return 0;
}
