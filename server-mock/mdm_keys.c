/* mdm_keys.c - the server's signing keys: root, the delegated policy/command signing
 * key and its delegation record (docs/PROTOCOL.md "Key hierarchy"). */
#include "cleanup.h"
#include "cleanup_ssl.h"
#include "mdm.h"
#include "pol_sig.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define DELEGATION_LIFETIME_S (365LL * 24 * 3600)

static int write_key(const struct mdm *m, const char *name, EVP_PKEY *k, cells_err_t *err)
{
	char p[PATH_MAX];
	cleanup_free char *pem = NULL;
	mdm_path(m, name, p);
	if (pol_key_to_pem(k, true, &pem, err) < 0)
		return -1;
	return cells_write_file_atomic(p, pem, strlen(pem), 0600, err);
}

static int write_signed(const struct mdm *m, const char *name, Cells__V1__Signed *s,
			cells_err_t *err)
{
	char p[PATH_MAX];
	cleanup_free uint8_t *b = NULL;
	size_t n;
	mdm_path(m, name, p);
	if (pol_signed_pack(s, &b, &n, err) < 0)
		return -1;
	return cells_write_file_atomic(p, b, n, 0644, err);
}

int mdm_cmd_init(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	cells_err_t err = {0};
	char p[PATH_MAX];
	cleanup_pkey EVP_PKEY *root = NULL;
	cleanup_pkey EVP_PKEY *signing = NULL;
	if (argc)
		return mdm_usage(cmd);
	mdm_path(m, "root.key", p);
	struct stat st;
	if (stat(p, &st) == 0) {
		fprintf(stderr, "cells-mdm: init: %s is already initialised\n", m->state_dir);
		return 1;
	}
	if (cells_mkdir_p(m->state_dir, 0700, &err) < 0)
		goto fail;
	root = pol_key_generate(&err);
	signing = root ? pol_key_generate(&err) : NULL;
	if (!signing)
		goto fail;

	/* the delegation: root signs the signing key for the policy and command roles */
	uint8_t pub[POL_PUBKEY_LEN], rootpub[POL_PUBKEY_LEN];
	if (pol_key_raw_public(signing, pub, &err) < 0 ||
	    pol_key_raw_public(root, rootpub, &err) < 0)
		goto fail;
	Cells__V1__KeyDelegation del = CELLS__V1__KEY_DELEGATION__INIT;
	Cells__V1__KeyRole roles[] = {CELLS__V1__KEY_ROLE__KEY_ROLE_POLICY,
				      CELLS__V1__KEY_ROLE__KEY_ROLE_COMMAND};
	del.public_key.data = pub;
	del.public_key.len = sizeof pub;
	del.roles = roles;
	del.n_roles = 2;
	del.not_before = time(NULL) - 60;
	del.expires_at = time(NULL) + DELEGATION_LIFETIME_S;
	del.serial = 1;
	del.comment = "cells-mdm signing key";
	uint8_t dbuf[CELLS_MAX_DELEGATION];
	size_t dn = cells__v1__key_delegation__get_packed_size(&del);
	cells__v1__key_delegation__pack(&del, dbuf);
	Cells__V1__Signed sd = CELLS__V1__SIGNED__INIT;
	int r = pol_sign(&sd, CELLS__V1__SIGNED_KIND__SIGNED_KEY_DELEGATION, dbuf, dn, root, &err);
	if (r == 0)
		r = write_signed(m, "delegation.bin", &sd, &err);
	pol_signed_clear(&sd);
	if (r < 0)
		goto fail;

	/* the trust root devices pin (version 1, one key, threshold 1) */
	Cells__V1__TrustRoot tr = CELLS__V1__TRUST_ROOT__INIT;
	ProtobufCBinaryData rk = {sizeof rootpub, rootpub};
	tr.version = 1;
	tr.root_keys = &rk;
	tr.n_root_keys = 1;
	tr.threshold = 1;
	tr.issued_at = time(NULL);
	uint8_t tbuf[CELLS_MAX_TRUST_ROOT];
	size_t tn = cells__v1__trust_root__get_packed_size(&tr);
	cells__v1__trust_root__pack(&tr, tbuf);
	mdm_path(m, "trust_root.bin", p);
	if (cells_write_file_atomic(p, tbuf, tn, 0644, &err) < 0)
		goto fail;
	if (write_key(m, "signing.key", signing, &err) < 0 ||
	    write_key(m, "root.key", root, &err) < 0)
		goto fail;
	if (mdm_ca_init(m, &err) < 0)
		goto fail;
	char kid[2 * POL_KEYID_LEN + 1];
	uint8_t id[POL_KEYID_LEN];
	pol_key_id(rootpub, id);
	cells_hex(id, sizeof id, kid);
	if (m->json)
		printf("{\"state_dir\":\"%s\",\"root_key_id\":\"%s\"}\n", m->state_dir, kid);
	else
		printf("initialised %s\nroot key id: %s\n", m->state_dir, kid);
	return 0;
fail:
	fprintf(stderr, "cells-mdm: init: %s\n", err.msg);
	return 1;
}

int mdm_cmd_export_root(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	cells_err_t err = {0};
	if (argc)
		return mdm_usage(cmd);
	cleanup_pkey EVP_PKEY *root = mdm_load_key(m, "root.key", &err);
	cleanup_free char *pem = NULL;
	if (!root || pol_key_to_pem(root, false, &pem, &err) < 0) {
		fprintf(stderr, "cells-mdm: export-root: %s\n", err.msg);
		return 1;
	}
	fputs(pem, stdout);
	return 0;
}
