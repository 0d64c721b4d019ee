/* policy_forge - test helper: make policy bundles that an honest `cells-mdm policy sign`
 * never makes, to show the device refuses them.
 *   policy_forge MDM_DIR MODE POLICY.json OUT
 * MODE: unknown-key (signed by a key nobody delegated), expired-delegation (a fresh key
 * whose root delegation expired an hour ago), wrong-role (a fresh key delegated for
 * commands only), conflict (every camera rule set EXCLUSIVE, signed by the real key;
 * conflict:CLASS: every rule of CLASS). */
#include "../fuzz/fuzz_policy_keys.h"
#include "cleanup.h"
#include "cleanup_ssl.h"
#include "pol_json.h"
#include "pol_sig.h"
#include "pol_trust.h"
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

static void put(const char *dir, const char *name, const void *p, size_t n)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	if (cells_write_file_atomic(path, p, n, 0644, NULL) < 0)
		exit(1);
}

static size_t pack_bundle(Cells__V1__Signed *pol, Cells__V1__Signed **dels, size_t nd,
			  Cells__V1__Signed **rots, size_t nr, uint8_t *out)
{
	Cells__V1__PolicyBundle b = CELLS__V1__POLICY_BUNDLE__INIT;
	b.policy = pol;
	b.delegations = dels;
	b.n_delegations = nd;
	b.root_rotations = rots;
	b.n_root_rotations = nr;
	return cells__v1__policy_bundle__pack(&b, out);
}

/* --fuzz-seeds: seed corpora of the three policy fuzz targets, with the fixed keys. */
static int fuzz_seeds(const char *base)
{
	static const char json[] =
	    "{\"version\": 3, \"device\": \"" FUZZ_DEVICE_ID "\", \"issued_at\": 1, "
	    "\"expires_at\": 1900000000, \"on_expiry\": \"lock-vp\", \"vps\": [{\"name\": "
	    "\"work\", \"devices\": {\"camera\": \"exclusive\", \"display\": \"shared\"}, "
	    "\"net\": \"nat\", \"password\": {\"required\": true, \"min_length\": 8, "
	    "\"max_failed_attempts\": 10, \"wipe_on_limit\": true}, \"audit_upload\": "
	    "\"full\", \"foreground\": {\"may_be_foreground\": true}, \"calls\": "
	    "{\"allow_incoming\": true}, \"wifi_status_allowed\": [\"ssid\"]}, {\"name\": "
	    "\"personal\", \"devices\": {\"camera\": \"no-access\"}, \"net\": \"none\"}]}";
	char dir[4096];
	uint8_t *payload;
	size_t pn;
	if (pol_json_to_policy(json, strlen(json), &payload, &pn, NULL) < 0)
		return 1;
	snprintf(dir, sizeof dir, "%s/fuzz_policy_json", base);
	put(dir, "example.json", json, strlen(json));
	put(dir, "minimal.json", "{\"version\":1,\"device\":\"" FUZZ_DEVICE_ID "\",\"vps\":[]}",
	    strlen("{\"version\":1,\"device\":\"" FUZZ_DEVICE_ID "\",\"vps\":[]}"));
	put(dir, "unknown-key.json", "{\"version\":1,\"colour\":2}", 25);
	snprintf(dir, sizeof dir, "%s/fuzz_policy_decode", base);
	put(dir, "policy.pb", payload, pn);
	put(dir, "empty.pb", "", 0);
	EVP_PKEY *root = fuzz_key(0x11), *sk = fuzz_key(0x22), *nroot = fuzz_key(0x33);
	Cells__V1__Signed *del =
	    fuzz_delegation(root, sk, CELLS__V1__KEY_ROLE__KEY_ROLE_POLICY, 0, FUZZ_NOW + 3600);
	Cells__V1__Signed *cdel =
	    fuzz_delegation(root, sk, CELLS__V1__KEY_ROLE__KEY_ROLE_COMMAND, 0, FUZZ_NOW + 3600);
	Cells__V1__Signed s = CELLS__V1__SIGNED__INIT;
	pol_sign(&s, CELLS__V1__SIGNED_KIND__SIGNED_POLICY, payload, pn, sk, NULL);
	static uint8_t out[200000];
	snprintf(dir, sizeof dir, "%s/fuzz_policy_signed", base);
	put(dir, "bundle.bin", out, pack_bundle(&s, &del, 1, NULL, 0, out));
	/* a bare Signed policy */
	size_t n = cells__v1__signed__pack(&s, out);
	put(dir, "signed.bin", out, n);
	/* with a root rotation to nroot, which then delegates */
	uint8_t npub[32], tb[256];
	pol_key_raw_public(nroot, npub, NULL);
	struct pol_root nr;
	pol_root_from_key(npub, &nr);
	nr.version = 2;
	uint8_t *tp;
	size_t tn;
	pol_root_encode(&nr, &tp, &tn, NULL);
	memcpy(tb, tp, tn);
	Cells__V1__Signed rot = CELLS__V1__SIGNED__INIT;
	pol_sign(&rot, CELLS__V1__SIGNED_KIND__SIGNED_ROOT_ROTATION, tb, tn, root, NULL);
	pol_sign(&rot, rot.kind, tb, tn, nroot, NULL);
	Cells__V1__Signed *rp = &rot;
	Cells__V1__Signed *ndel =
	    fuzz_delegation(nroot, sk, CELLS__V1__KEY_ROLE__KEY_ROLE_POLICY, 0, FUZZ_NOW + 3600);
	put(dir, "rotation.bin", out, pack_bundle(&s, &ndel, 1, &rp, 1, out));
	/* a signed command with its delegation */
	Cells__V1__Command c = CELLS__V1__COMMAND__INIT;
	Cells__V1__LockVp lk = CELLS__V1__LOCK_VP__INIT;
	lk.vp = "work";
	c.command_id = "c-1";
	c.device_id = FUZZ_DEVICE_ID;
	c.expires_at = FUZZ_NOW + 60;
	c.action_case = CELLS__V1__COMMAND__ACTION_LOCK;
	c.lock = &lk;
	uint8_t cb[512];
	size_t cn = cells__v1__command__pack(&c, cb);
	Cells__V1__Signed cs = CELLS__V1__SIGNED__INIT;
	pol_sign(&cs, CELLS__V1__SIGNED_KIND__SIGNED_COMMAND, cb, cn, sk, NULL);
	put(dir, "command.bin", out, pack_bundle(&cs, &cdel, 1, NULL, 0, out));
	/* trust updates (`cells-mdm keys push`): the chain to nroot with its delegation, and
	 * a delegation alone (the directory must exist) */
	snprintf(dir, sizeof dir, "%s/fuzz_trust_update", base);
	Cells__V1__TrustUpdate tu = CELLS__V1__TRUST_UPDATE__INIT;
	tu.root_rotations = &rp;
	tu.n_root_rotations = 1;
	tu.delegations = &ndel;
	tu.n_delegations = 1;
	put(dir, "chain.bin", out, cells__v1__trust_update__pack(&tu, out));
	Cells__V1__TrustUpdate td = CELLS__V1__TRUST_UPDATE__INIT;
	td.delegations = &del;
	td.n_delegations = 1;
	put(dir, "delegation.bin", out, cells__v1__trust_update__pack(&td, out));
	printf("seeds written under %s\n", base);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--fuzz-seeds"))
		return fuzz_seeds(argv[2]);
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
		del = fuzz_delegation(root, fresh, CELLS__V1__KEY_ROLE__KEY_ROLE_POLICY, now - 7200,
				      now - 3600);
	} else if (!strcmp(mode, "wrong-role")) {
		signer = fresh;
		del = fuzz_delegation(root, fresh, CELLS__V1__KEY_ROLE__KEY_ROLE_COMMAND, now - 60,
				      now + 3600);
	} else if (!strncmp(mode, "conflict", 8) && (!mode[8] || mode[8] == ':')) {
		const char *cls = mode[8] ? mode + 9 : "camera";
		Cells__V1__Policy *pol = cells__v1__policy__unpack(NULL, pn, payload);
		for (size_t i = 0; pol && i < pol->n_vps; i++)
			for (size_t j = 0; j < pol->vps[i]->n_devices; j++)
				if (!strcmp(pol->vps[i]->devices[j]->device_class, cls))
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
