/* mdm_policy.c - `cells-mdm policy sign` and `cells-mdm policy example`.
 *
 * sign: the admin's policy JSON (policy/pol_json.h, strict) becomes the protobuf
 * Policy, signed as SIGNED_POLICY with STATE_DIR/signing.key, and written as a
 * PolicyBundle together with STATE_DIR/delegation.bin (the root's delegation of the
 * signing key), so that `cellctl policy apply` works offline. Nothing else is added:
 * the signed bytes are exactly the JSON's content. */
#include "cleanup.h"
#include "cleanup_ssl.h"
#include "mdm.h"
#include "pol_json.h"
#include "pol_policy.h"
#include "pol_sig.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int mdm_policy_bundle(const struct mdm *m, const uint8_t *payload, size_t n, uint8_t **out,
		      size_t *len, cells_err_t *err)
{
	cleanup_pkey EVP_PKEY *key = mdm_load_key(m, "signing.key", err);
	if (!key)
		return -1;
	char p[PATH_MAX];
	mdm_path(m, "delegation.bin", p);
	cleanup_free uint8_t *db = NULL;
	size_t dn;
	if (cells_read_file(p, CELLS_MAX_SIGNED_BLOB, &db, &dn, err) < 0)
		return -1;
	cleanup_signed Cells__V1__Signed *del = NULL;
	if (cells_signed_decode(db, dn, &del, err) < 0)
		return cells_err_prefix(err, "%s", p);
	Cells__V1__Signed s = CELLS__V1__SIGNED__INIT;
	if (pol_sign(&s, CELLS__V1__SIGNED_KIND__SIGNED_POLICY, payload, n, key, err) < 0) {
		pol_signed_clear(&s);
		return -1;
	}
	Cells__V1__PolicyBundle b = CELLS__V1__POLICY_BUNDLE__INIT;
	Cells__V1__Signed *dels[1] = {del};
	b.policy = &s;
	b.delegations = dels;
	b.n_delegations = 1;
	size_t bn = cells__v1__policy_bundle__get_packed_size(&b);
	uint8_t *buf = malloc(bn ? bn : 1);
	if (!buf) {
		pol_signed_clear(&s);
		return cells_err_sys(err, ENOMEM, "policy bundle");
	}
	cells__v1__policy_bundle__pack(&b, buf);
	pol_signed_clear(&s);
	*out = buf;
	*len = bn;
	return 0;
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
