/* mdm_wipe.c - the server side of a wipe: verify a device's signed WipeReceipt
 * (docs/PROTOCOL.md "Wipe receipt") and the `cells-mdm receipt verify` command. */
#include "cleanup.h"
#include "cleanup_ssl.h"
#include "mdm.h"
#include "pol_sig.h"
#include "util.h"
#include "wire.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int mdm_wipe_receipt_verify(const uint8_t *blob, size_t n, const uint8_t devpub[POL_PUBKEY_LEN],
			    Cells__V1__WipeReceipt **out, cells_err_t *err)
{
	cleanup_signed Cells__V1__Signed *s = NULL;
	if (cells_signed_decode(blob, n, &s, err) < 0)
		return cells_err_prefix(err, "receipt");
	if (s->kind != CELLS__V1__SIGNED_KIND__SIGNED_WIPE_RECEIPT)
		return cells_err_set(err, EBADMSG, "receipt: not a wipe receipt (kind %d)",
				     (int)s->kind);
	uint8_t kid[POL_KEYID_LEN];
	pol_key_id(devpub, kid);
	const Cells__V1__Signature *sig = NULL;
	for (size_t i = 0; i < s->n_signatures; i++)
		if (!memcmp(s->signatures[i]->key_id.data, kid, POL_KEYID_LEN))
			sig = s->signatures[i];
	if (!sig)
		return cells_err_set(err, EPERM, "receipt: not signed by this device's key");
	if (pol_verify_raw(devpub, s->kind, s->payload.data, s->payload.len, sig->signature.data,
			   err) < 0)
		return cells_err_prefix(err, "receipt");
	/* only verified bytes are parsed */
	Cells__V1__WipeReceipt *r =
	    cells__v1__wipe_receipt__unpack(NULL, s->payload.len, s->payload.data);
	if (!r)
		return cells_err_set(err, EBADMSG, "receipt: malformed WipeReceipt");
	char id[2 * 16 + 1];
	cells_hex(kid, 16, id); /* device id = first 16 bytes of SHA-256(public key) */
	if (!r->device_id || strcmp(r->device_id, id) || !r->vp || !*r->vp || !r->command_id ||
	    !*r->command_id) {
		cells__v1__wipe_receipt__free_unpacked(r, NULL);
		return cells_err_set(err, EBADMSG, "receipt: wrong device id or missing fields");
	}
	*out = r;
	return 0;
}

/* (mdm_usage lives with main, outside the library the fuzz target links) */
static int usage(const struct mdm_cmd *cmd)
{
	fprintf(stderr, "cells-mdm: %s: usage: cells-mdm %s %s\n", cmd->words, cmd->words,
		cmd->args);
	return 2;
}

int mdm_cmd_receipt_verify(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	(void)m;
	const char *file = NULL, *keyfile = NULL;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--device-key") && i + 1 < argc)
			keyfile = argv[++i];
		else if (!file && argv[i][0] != '-')
			file = argv[i];
		else
			return usage(cmd);
	}
	if (!file || !keyfile)
		return usage(cmd);
	cells_err_t err = {0};
	cleanup_free uint8_t *blob = NULL, *pem = NULL;
	size_t n, pn;
	uint8_t pub[POL_PUBKEY_LEN];
	if (cells_read_file(file, CELLS_MAX_SIGNED_BLOB, &blob, &n, &err) < 0 ||
	    cells_read_file(keyfile, 16384, &pem, &pn, &err) < 0) {
		fprintf(stderr, "cells-mdm: receipt verify: %s\n", err.msg);
		return 1;
	}
	cleanup_pkey EVP_PKEY *k = pol_key_from_pem(pem, pn, false, &err);
	Cells__V1__WipeReceipt *r = NULL;
	if (!k || pol_key_raw_public(k, pub, &err) < 0 ||
	    mdm_wipe_receipt_verify(blob, n, pub, &r, &err) < 0) {
		fprintf(stderr, "cells-mdm: receipt verify: %s\n", err.msg);
		return 1;
	}
	static const char *const ks[] = {"unspecified", "absent", "present", "not-encrypted"};
	printf("receipt: valid\ndevice: %s\nvp: %s\ncommand: %s\nwiped_at: %lld\nkey_status: "
	       "%s\nwrapped_key_destroyed: %s\nrecreated: %s\nsteps:",
	       r->device_id, r->vp, r->command_id, (long long)r->wiped_at,
	       (unsigned)r->key_status < 4 ? ks[r->key_status] : "unknown",
	       r->wrapped_key_destroyed ? "yes" : "no", r->recreated ? "yes" : "no");
	for (size_t i = 0; i < r->n_steps; i++)
		printf(" %s", r->steps[i]);
	printf("\n");
	cells__v1__wipe_receipt__free_unpacked(r, NULL);
	return 0;
}
