/* policy_forge - test helper: make policy bundles that an honest `cells-mdm policy sign`
 * never makes, to show the device refuses them.
 *   policy_forge MDM_DIR MODE POLICY.json OUT
 * MODE: unknown-key (signed by a key nobody delegated), expired-delegation (a fresh key
 * whose root delegation expired an hour ago), wrong-role (a fresh key delegated for
 * commands only), conflict (every camera rule set EXCLUSIVE, signed by the real key). */
#include "cleanup.h"
#include "cleanup_ssl.h"
#include "pol_json.h"
#include "pol_sig.h"
#include "util.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static EVP_PKEY *load(const char *dir, const char *name)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	uint8_t *pem;
	size_t n;
	if (cells_read_file(p, 16384, &pem, &n, NULL) < 0)
		return NULL;
	EVP_PKEY *k = pol_key_from_pem(pem, n, true, NULL);
	free(pem);
	return k;
}

static Cells__V1__Signed *delegation(EVP_PKEY *root, EVP_PKEY *k, Cells__V1__KeyRole role,
				     int64_t nb, int64_t exp)
{
	uint8_t pub[32], buf[1024];
	pol_key_raw_public(k, pub, NULL);
	Cells__V1__KeyDelegation d = CELLS__V1__KEY_DELEGATION__INIT;
	d.public_key.data = pub;
	d.public_key.len = 32;
	d.roles = &role;
	d.n_roles = 1;
	d.not_before = nb;
	d.expires_at = exp;
	d.serial = 1;
	size_t n = cells__v1__key_delegation__pack(&d, buf);
	Cells__V1__Signed *s = calloc(1, sizeof *s);
	cells__v1__signed__init(s);
	if (pol_sign(s, CELLS__V1__SIGNED_KIND__SIGNED_KEY_DELEGATION, buf, n, root, NULL) < 0)
		return NULL;
	return s;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: policy_forge MDM_DIR MODE POLICY.json OUT\n");
		return 2;
	}
	const char *dir = argv[1], *mode = argv[2];
	cells_err_t err = {0};
	uint8_t *text, *payload;
	size_t tn, pn;
	if (cells_read_file(argv[3], POL_MAX_JSON, &text, &tn, &err) < 0 ||
	    pol_json_to_policy((char *)text, tn, &payload, &pn, &err) < 0) {
		fprintf(stderr, "policy_forge: %s\n", err.msg);
		return 1;
	}
	EVP_PKEY *root = load(dir, "root.key"), *signing = load(dir, "signing.key");
	EVP_PKEY *fresh = pol_key_generate(NULL);
	if (!root || !signing || !fresh) {
		fprintf(stderr, "policy_forge: keys missing in %s\n", dir);
		return 1;
	}
	char p[4096];
	snprintf(p, sizeof p, "%s/delegation.bin", dir);
	uint8_t *db;
	size_t dn;
	Cells__V1__Signed *del = NULL;
	if (cells_read_file(p, 65536, &db, &dn, &err) < 0 ||
	    cells_signed_decode(db, dn, &del, &err) < 0) {
		fprintf(stderr, "policy_forge: %s\n", err.msg);
		return 1;
	}
	int64_t now = time(NULL);
	EVP_PKEY *signer = signing;
	if (!strcmp(mode, "unknown-key")) {
		signer = fresh;
	} else if (!strcmp(mode, "expired-delegation")) {
		signer = fresh;
		del = delegation(root, fresh, CELLS__V1__KEY_ROLE__KEY_ROLE_POLICY, now - 7200,
				 now - 3600);
	} else if (!strcmp(mode, "wrong-role")) {
		signer = fresh;
		del = delegation(root, fresh, CELLS__V1__KEY_ROLE__KEY_ROLE_COMMAND, now - 60,
				 now + 3600);
	} else if (!strcmp(mode, "conflict")) {
		Cells__V1__Policy *pol = cells__v1__policy__unpack(NULL, pn, payload);
		for (size_t i = 0; pol && i < pol->n_vps; i++)
			for (size_t j = 0; j < pol->vps[i]->n_devices; j++)
				if (!strcmp(pol->vps[i]->devices[j]->device_class, "camera"))
					pol->vps[i]->devices[j]->mode =
					    CELLS__V1__ACCESS_MODE__ACCESS_EXCLUSIVE;
		pn = cells__v1__policy__pack(pol, payload);
		cells__v1__policy__free_unpacked(pol, NULL);
	} else {
		fprintf(stderr, "policy_forge: unknown mode %s\n", mode);
		return 2;
	}
	Cells__V1__Signed s = CELLS__V1__SIGNED__INIT;
	if (pol_sign(&s, CELLS__V1__SIGNED_KIND__SIGNED_POLICY, payload, pn, signer, &err) < 0) {
		fprintf(stderr, "policy_forge: %s\n", err.msg);
		return 1;
	}
	Cells__V1__PolicyBundle b = CELLS__V1__POLICY_BUNDLE__INIT;
	b.policy = &s;
	b.delegations = &del;
	b.n_delegations = 1;
	size_t bn = cells__v1__policy_bundle__get_packed_size(&b);
	uint8_t *out = malloc(bn);
	cells__v1__policy_bundle__pack(&b, out);
	if (cells_write_file_atomic(argv[4], out, bn, 0644, &err) < 0) {
		fprintf(stderr, "policy_forge: %s\n", err.msg);
		return 1;
	}
	return 0;
}
