/* fuzz_image_bundle.c - the device's acceptance path for untrusted image bundle bytes
 * (`cellctl image import`, Envelope.image): decode, the trust walk from a pinned root
 * (key 0x11), the manifest's signature for the images role, then every field rule,
 * expiry, the size limit and anti-rollback. Invariants: nothing is accepted unless its
 * fields are valid, and an accepted manifest is never below the version held. */
#include "fuzz_policy_keys.h"
#include "pol_image.h"
#include "pol_trust.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void highest(void *ctx, const char *name, uint64_t *v, uint64_t *size, uint8_t sha[32])
{
	(void)ctx;
	if (!strcmp(name, "work-base")) {
		*v = 2;
		*size = 4096;
		memset(sha, 0x5a, 32);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct pol_trust cur;
	static int init;
	if (!init) {
		EVP_PKEY *k = fuzz_key(0x11);
		uint8_t pub[32];
		pol_key_raw_public(k, pub, NULL);
		pol_root_from_key(pub, &cur.root);
		EVP_PKEY_free(k);
		init = 1;
	}
	cells_err_t err;
	struct pol_image_bundle b;
	if (pol_image_bundle_decode(data, size, &b, &err) < 0)
		return 0;
	struct pol_image_limits lim = {.max_size = 1ull << 32, .highest = highest};
	struct pol_image_manifest m;
	struct pol_trust t;
	int r = pol_image_bundle_verify(&cur, &b, FUZZ_NOW, &lim, &m, &t, &err);
	if (r >= 0) {
		if (pol_image_name_valid(m.name, NULL) < 0 || !pol_image_fs_valid(m.fs_type) ||
		    m.size < 1 || m.size > lim.max_size || m.version < 1 ||
		    m.expires_at <= FUZZ_NOW)
			abort();
		if (!strcmp(m.name, "work-base") && m.version < 2)
			abort();
		/* the bare manifest under the advanced trust decides the same */
		struct pol_image_manifest m2;
		if (pol_image_manifest_verify(b.manifest, t.dels, t.ndels, FUZZ_NOW, &lim, &m2,
					      &err) != r ||
		    memcmp(&m, &m2, sizeof m))
			abort();
	}
	pol_image_bundle_free(&b);
	return 0;
}
