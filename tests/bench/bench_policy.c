/* bench_policy.c - decode+verify rate of signed policies (the device's acceptance path)
 * and a raw EVP Ed25519 verify loop over the same bytes, for bench_policy.sh to compare
 * with `openssl speed ed25519`.  Usage: bench_policy [SECONDS] */
#include "pol_json.h"
#include "pol_policy.h"
#include "pol_sig.h"
#include "pol_trust.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEV "0123456789abcdef0123456789abcdef"

static const char json[] =
    "{\"version\": 3, \"device\": \"" DEV "\", \"vps\": ["
    "{\"name\": \"work\", \"devices\": {\"display\": \"shared\", \"input\": \"shared\","
    " \"audio\": \"shared\", \"camera\": \"exclusive\", \"gps\": \"shared\", \"gpu-render\":"
    " \"shared\", \"modem\": \"shared\"}, \"net\": \"nat\", \"password\": {\"required\": true,"
    " \"min_length\": 8, \"max_failed_attempts\": 10}},"
    "{\"name\": \"personal\", \"devices\": {\"display\": \"shared\", \"input\": \"shared\","
    " \"audio\": \"shared\", \"camera\": \"no-access\", \"gps\": \"shared\", \"gpu-render\":"
    " \"shared\", \"modem\": \"shared\"}, \"net\": \"nat\"}]}";

/* CPU time of this process, like `openssl speed` (which divides by user CPU time
 * unless -elapsed is given): on a shared, loaded machine wall-clock rates say more
 * about the neighbours than about the code. */
static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 3;
	EVP_PKEY *root = pol_key_generate(NULL), *sk = pol_key_generate(NULL);
	uint8_t rpub[32], spub[32];
	pol_key_raw_public(root, rpub, NULL);
	pol_key_raw_public(sk, spub, NULL);
	struct pol_root r;
	pol_root_from_key(rpub, &r);
	/* delegation */
	Cells__V1__KeyDelegation d = CELLS__V1__KEY_DELEGATION__INIT;
	Cells__V1__KeyRole role = CELLS__V1__KEY_ROLE__KEY_ROLE_POLICY;
	d.public_key.data = spub;
	d.public_key.len = 32;
	d.roles = &role;
	d.n_roles = 1;
	d.expires_at = time(NULL) + 3600;
	uint8_t db[256];
	size_t dn = cells__v1__key_delegation__pack(&d, db);
	Cells__V1__Signed ds = CELLS__V1__SIGNED__INIT, ps = CELLS__V1__SIGNED__INIT;
	uint8_t *payload;
	size_t pn;
	cells_err_t err;
	if (pol_sign(&ds, CELLS__V1__SIGNED_KIND__SIGNED_KEY_DELEGATION, db, dn, root, &err) < 0 ||
	    pol_json_to_policy(json, strlen(json), &payload, &pn, &err) < 0 ||
	    pol_sign(&ps, CELLS__V1__SIGNED_KIND__SIGNED_POLICY, payload, pn, sk, &err) < 0) {
		fprintf(stderr, "bench_policy: %s\n", err.msg);
		return 1;
	}
	Cells__V1__Signed *dsp = &ds;
	Cells__V1__PolicyBundle b = CELLS__V1__POLICY_BUNDLE__INIT;
	b.policy = &ps;
	b.delegations = &dsp;
	b.n_delegations = 1;
	uint8_t bundle[4096];
	size_t bn = cells__v1__policy_bundle__pack(&b, bundle);
	struct pol_delegation del;
	if (pol_delegation_verify(&r, &ds, &del, &err) < 0)
		return 1;

	/* 1. raw EVP verify of the same signed message (in-process baseline) */
	uint8_t *msg;
	size_t mn;
	cells_signed_message(ps.kind, ps.payload.data, ps.payload.len, &msg, &mn, NULL);
	EVP_PKEY *pk = pol_key_from_raw_public(spub, 32, NULL);
	long n = 0;
	double t0 = now_s(), t;
	do {
		for (int i = 0; i < 64; i++, n++) {
			EVP_MD_CTX *c = EVP_MD_CTX_new();
			EVP_DigestVerifyInit(c, NULL, NULL, NULL, pk);
			if (EVP_DigestVerify(c, ps.signatures[0]->signature.data, 64, msg, mn) != 1)
				return 1;
			EVP_MD_CTX_free(c);
		}
	} while ((t = now_s() - t0) < secs);
	double raw = (double)n / t;

	/* 2. the device path: bundle decode + policy signature + every rule + policy decode */
	n = 0;
	t0 = now_s();
	int64_t now = time(NULL);
	do {
		for (int i = 0; i < 64; i++, n++) {
			struct pol_bundle pb;
			Cells__V1__Policy *p = NULL;
			if (pol_bundle_decode(bundle, bn, &pb, &err) < 0 ||
			    pol_policy_verify(pb.policy, &del, 1, DEV, now, NULL, &p, &err) < 0) {
				fprintf(stderr, "bench_policy: %s\n", err.msg);
				return 1;
			}
			cells__v1__policy__free_unpacked(p, NULL);
			pol_bundle_free(&pb);
		}
	} while ((t = now_s() - t0) < secs);
	double path = (double)n / t;

	/* 3. the same plus the delegation's root signature (two verifies per bundle) */
	n = 0;
	t0 = now_s();
	do {
		for (int i = 0; i < 16; i++, n++) {
			struct pol_bundle pb;
			struct pol_delegation dl;
			Cells__V1__Policy *p = NULL;
			if (pol_bundle_decode(bundle, bn, &pb, &err) < 0 ||
			    pol_delegation_verify(&r, pb.delegations[0], &dl, &err) < 0 ||
			    pol_policy_verify(pb.policy, &dl, 1, DEV, now, NULL, &p, &err) < 0)
				return 1;
			cells__v1__policy__free_unpacked(p, NULL);
			pol_bundle_free(&pb);
		}
	} while ((t = now_s() - t0) < secs);
	double full = (double)n / t;
	printf("policy_bytes %zu bundle_bytes %zu\n", pn, bn);
	printf("(rates per second of process CPU time)\n");
	printf("raw_evp_verify_per_s %.0f\n", raw);
	printf("policy_decode_verify_per_s %.0f\n", path);
	printf("bundle_with_delegation_per_s %.0f\n", full);
	return 0;
}
