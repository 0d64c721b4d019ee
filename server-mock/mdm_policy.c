/* mdm_policy.c - `cells-mdm policy sign` and `cells-mdm policy example`.
 *
 * sign: the admin's policy JSON (policy/pol_json.h, strict) becomes the protobuf
 * Policy, signed as SIGNED_POLICY with STATE_DIR/signing.key, and written as a
 * PolicyBundle together with STATE_DIR/delegation.bin (the root's delegation of the
 * signing key) and the root rotations of the trust update (mdm_keys_update_blob), so
 * that `cellctl policy apply` works offline. `cells-mdm image sign` makes its
 * ImageBundle with the same helper (mdm_sign_bundle). Nothing else is added:
 * the signed bytes are exactly the JSON's content. */
#include "cleanup.h"
#include "cleanup_ssl.h"
#include "mdm.h"
#include "pol_json.h"
#include "pol_policy.h"
#include "pol_sig.h"
#include "pol_trust.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int mdm_sign_bundle(const struct mdm *m, Cells__V1__SignedKind kind, const uint8_t *payload,
		    size_t n, uint8_t **out, size_t *len, cells_err_t *err)
{
	Cells__V1__KeyRole role;
	const char *rname;
	if (kind == CELLS__V1__SIGNED_KIND__SIGNED_POLICY)
		role = CELLS__V1__KEY_ROLE__KEY_ROLE_POLICY, rname = "policy";
	else if (kind == CELLS__V1__SIGNED_KIND__SIGNED_IMAGE_MANIFEST)
		role = CELLS__V1__KEY_ROLE__KEY_ROLE_IMAGES, rname = "images";
	else
		return cells_err_set(err, EINVAL, "no bundle for signed kind %d", (int)kind);
	/* the delegation and rotations a device needs: those of the trust update */
	cleanup_free uint8_t *tb = NULL;
	size_t tn;
	struct pol_delegation del;
	if (mdm_keys_update_blob(m, &tb, &tn, NULL, &del, err) < 0)
		return -1;
	if (!(del.roles & (1u << role)))
		return cells_err_set(err, EKEYREJECTED,
				     "the signing key (delegation serial %llu) does not hold the "
				     "%s role (cells-mdm keys delegate --roles ...,%s)",
				     (unsigned long long)del.serial, rname, rname);
	cleanup_pkey EVP_PKEY *key = mdm_load_key(m, "signing.key", err);
	if (!key)
		return -1;
	Cells__V1__TrustUpdate *tu = cells__v1__trust_update__unpack(NULL, tn, tb);
	if (!tu)
		return cells_err_set(err, EBADMSG, "trust update: malformed");
	Cells__V1__Signed s = CELLS__V1__SIGNED__INIT;
	int rc = -1;
	if (pol_sign(&s, kind, payload, n, key, err) < 0)
		goto out;
	Cells__V1__PolicyBundle pb = CELLS__V1__POLICY_BUNDLE__INIT;
	Cells__V1__ImageBundle ib = CELLS__V1__IMAGE_BUNDLE__INIT;
	size_t bn;
	if (role == CELLS__V1__KEY_ROLE__KEY_ROLE_POLICY) {
		pb.policy = &s;
		pb.delegations = tu->delegations;
		pb.n_delegations = tu->n_delegations;
		pb.root_rotations = tu->root_rotations;
		pb.n_root_rotations = tu->n_root_rotations;
		bn = cells__v1__policy_bundle__get_packed_size(&pb);
	} else {
		ib.manifest = &s;
		ib.delegations = tu->delegations;
		ib.n_delegations = tu->n_delegations;
		ib.root_rotations = tu->root_rotations;
		ib.n_root_rotations = tu->n_root_rotations;
		bn = cells__v1__image_bundle__get_packed_size(&ib);
	}
	uint8_t *buf = malloc(bn ? bn : 1);
	if (!buf) {
		cells_err_sys(err, ENOMEM, "%s bundle", rname);
		goto out;
	}
	if (role == CELLS__V1__KEY_ROLE__KEY_ROLE_POLICY)
		cells__v1__policy_bundle__pack(&pb, buf);
	else
		cells__v1__image_bundle__pack(&ib, buf);
	*out = buf;
	*len = bn;
	rc = 0;
out:
	pol_signed_clear(&s);
	cells__v1__trust_update__free_unpacked(tu, NULL);
	return rc;
}

int mdm_policy_bundle(const struct mdm *m, const uint8_t *payload, size_t n, uint8_t **out,
		      size_t *len, cells_err_t *err)
{
	return mdm_sign_bundle(m, CELLS__V1__SIGNED_KIND__SIGNED_POLICY, payload, n, out, len, err);
}

int mdm_cmd_policy_sign(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	cells_err_t err = {0};
	const char *in = NULL, *out = NULL;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "-o") && i + 1 < argc)
			out = argv[++i];
		else if (!in)
			in = argv[i];
		else
			return mdm_usage(cmd);
	}
	if (!in || !out)
		return mdm_usage(cmd);
	cleanup_free uint8_t *text = NULL;
	cleanup_free uint8_t *payload = NULL;
	cleanup_free uint8_t *bundle = NULL;
	size_t tn, pn, bn;
	if (cells_read_file(in, POL_MAX_JSON, &text, &tn, &err) < 0 ||
	    pol_json_to_policy((const char *)text, tn, &payload, &pn, &err) < 0) {
		fprintf(stderr, "cells-mdm: policy sign: %s: %s\n", in, err.msg);
		return 1;
	}
	cleanup_policy_pb Cells__V1__Policy *chk = cells__v1__policy__unpack(NULL, pn, payload);
	if (!chk || !chk->device_id || !*chk->device_id) {
		fprintf(stderr,
			"cells-mdm: policy sign: %s: device: missing (the id of the device this "
			"policy is for: cellctl device id)\n",
			in);
		return 1;
	}
	if (mdm_policy_bundle(m, payload, pn, &bundle, &bn, &err) < 0 ||
	    cells_write_file_atomic(out, bundle, bn, 0644, &err) < 0) {
		fprintf(stderr, "cells-mdm: policy sign: %s\n", err.msg);
		return 1;
	}
	cleanup_policy_pb Cells__V1__Policy *pol = cells__v1__policy__unpack(NULL, pn, payload);
	if (m->json)
		printf("{\"output\":\"%s\",\"version\":%llu,\"device\":\"%s\",\"bytes\":%zu}\n",
		       out, pol ? (unsigned long long)pol->version : 0ULL,
		       pol ? pol->device_id : "", bn);
	else
		printf("signed policy version %llu for device %s -> %s (%zu bytes)\n",
		       pol ? (unsigned long long)pol->version : 0ULL, pol ? pol->device_id : "",
		       out, bn);
	return 0;
}

static const char example_json[] =
    "{\n"
    "  \"version\": %llu,\n"
    "  \"device\": \"%s\",\n"
    "  \"issued_at\": 0,\n"
    "  \"expires_at\": 0,\n"
    "  \"on_expiry\": \"keep-noncompliant\",\n"
    "  \"audit_upload_interval_s\": 300,\n"
    "  \"bvp_wifi_status_allowed\": false,\n"
    "  \"vps\": [\n"
    "    {\n"
    "      \"name\": \"work\",\n"
    "      \"devices\": {\n"
    "        \"display\": \"exclusive\",\n"
    "        \"input\": \"exclusive\",\n"
    "        \"audio\": \"shared\",\n"
    "        \"camera\": \"exclusive\",\n"
    "        \"gps\": \"shared\",\n"
    "        \"gpu-render\": \"shared\",\n"
    "        \"modem\": \"shared\"\n"
    "      },\n"
    "      \"net\": \"nat\",\n"
    "      \"foreground\": { \"may_be_foreground\": true, \"incoming_call_switches\": true },\n"
    "      \"calls\": { \"allow_incoming\": true, \"allow_outgoing\": true },\n"
    "      \"password\": { \"required\": true, \"min_length\": 8, \"max_failed_attempts\": "
    "10, \"wipe_on_limit\": true },\n"
    "      \"audit_upload\": \"full\",\n"
    "      \"encrypted\": true,\n"
    "      \"lock_on_expiry\": true,\n"
    "      \"wifi_status_allowed\": []\n"
    "    },\n"
    "    {\n"
    "      \"name\": \"personal\",\n"
    "      \"devices\": {\n"
    "        \"display\": \"exclusive\",\n"
    "        \"input\": \"exclusive\",\n"
    "        \"audio\": \"shared\",\n"
    "        \"camera\": \"no-access\",\n"
    "        \"gps\": \"shared\",\n"
    "        \"gpu-render\": \"shared\",\n"
    "        \"modem\": \"shared\"\n"
    "      },\n"
    "      \"net\": \"nat\",\n"
    "      \"foreground\": { \"may_be_foreground\": true, \"incoming_call_switches\": true },\n"
    "      \"calls\": { \"allow_incoming\": true, \"allow_outgoing\": true },\n"
    "      \"password\": { \"required\": false, \"min_length\": 0, \"max_failed_attempts\": "
    "0, \"wipe_on_limit\": false },\n"
    "      \"audit_upload\": \"metadata\",\n"
    "      \"encrypted\": false,\n"
    "      \"lock_on_expiry\": false,\n"
    "      \"wifi_status_allowed\": []\n"
    "    }\n"
    "  ]\n"
    "}\n";

int mdm_cmd_policy_example(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	const char *dev = "00000000000000000000000000000000";
	unsigned long long ver = 1;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--device") && i + 1 < argc)
			dev = argv[++i];
		else if (!strcmp(argv[i], "--version") && i + 1 < argc)
			ver = strtoull(argv[++i], NULL, 10);
		else
			return mdm_usage(cmd);
	}
	if (strlen(dev) != 32 || strspn(dev, "0123456789abcdef") != 32) {
		fprintf(stderr, "cells-mdm: policy example: device id must be 32 lowercase hex\n");
		return 2;
	}
	printf(example_json, ver ? ver : 1, dev);
	return 0;
}
