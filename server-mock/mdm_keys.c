/* mdm_keys.c - the server's signing keys: root, the delegated policy/command signing
 * key and its delegation record (docs/PROTOCOL.md "Key hierarchy"). */
#include "cleanup.h"
#include "cleanup_ssl.h"
#include "mdm.h"
#include "mdm_store.h"
#include "pol_sig.h"
#include "pol_trust.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#define DELEGATION_LIFETIME_S (365LL * 24 * 3600)

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

	/* the delegation: root signs the signing key for the policy, command and images
	 * roles */
	uint8_t pub[POL_PUBKEY_LEN], rootpub[POL_PUBKEY_LEN];
	if (pol_key_raw_public(signing, pub, &err) < 0 ||
	    pol_key_raw_public(root, rootpub, &err) < 0)
		goto fail;
	Cells__V1__KeyDelegation del = CELLS__V1__KEY_DELEGATION__INIT;
	Cells__V1__KeyRole roles[] = {CELLS__V1__KEY_ROLE__KEY_ROLE_POLICY,
				      CELLS__V1__KEY_ROLE__KEY_ROLE_COMMAND,
				      CELLS__V1__KEY_ROLE__KEY_ROLE_IMAGES};
	del.public_key.data = pub;
	del.public_key.len = sizeof pub;
	del.roles = roles;
	del.n_roles = CELLS_ARRAY_SIZE(roles);
	del.not_before = time(NULL) - 60;
	del.expires_at = time(NULL) + DELEGATION_LIFETIME_S;
	del.serial = 1;
	del.revoke_below = 1;
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
	if (mdm_write_key(m, "signing.key", signing, &err) < 0 ||
	    mdm_write_key(m, "root.key", root, &err) < 0)
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

/* ---- cells-mdm keys ... (the lifecycle itself is in mdm_keyring.c) ---- */

/* The role names of a delegation, comma-joined ("policy,command,images"). */
static const struct {
	Cells__V1__KeyRole role;
	const char *name;
} role_names[] = {
    {CELLS__V1__KEY_ROLE__KEY_ROLE_POLICY, "policy"},
    {CELLS__V1__KEY_ROLE__KEY_ROLE_COMMAND, "command"},
    {CELLS__V1__KEY_ROLE__KEY_ROLE_IMAGES, "images"},
};

static const char *roles_text(uint32_t roles, char buf[32])
{
	size_t l = 0;
	buf[0] = 0;
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(role_names); i++)
		if (roles & (1u << role_names[i].role))
			l += (size_t)snprintf(buf + l, 32 - l, "%s%s", l ? "," : "",
					      role_names[i].name);
	return buf;
}

static void print_keys(const struct mdm *m, const char *action, const struct pol_root *r,
		       const struct pol_delegation *d, json_object *extra)
{
	char rk[2 * POL_KEYID_LEN + 1], dk[2 * POL_KEYID_LEN + 1], roles[32];
	uint8_t id[POL_KEYID_LEN];
	pol_key_id(r->keys[0], id);
	cells_hex(id, sizeof id, rk);
	cells_hex(d->kid, sizeof d->kid, dk);
	roles_text(d->roles, roles);
	int64_t now = time(NULL);
	if (m->json) {
		json_object *o = extra ? extra : json_object_new_object();
		json_object_object_add(o, "action", json_object_new_string(action));
		json_object_object_add(o, "root_version",
				       json_object_new_int64((int64_t)r->version));
		json_object_object_add(o, "root_key_id", json_object_new_string(rk));
		json_object_object_add(o, "root_threshold", json_object_new_int64(r->threshold));
		json_object_object_add(o, "serial", json_object_new_int64((int64_t)d->serial));
		json_object_object_add(o, "signing_key_id", json_object_new_string(dk));
		json_object_object_add(o, "roles", json_object_new_string(roles));
		json_object_object_add(o, "not_before", json_object_new_int64(d->not_before));
		json_object_object_add(o, "expires_at", json_object_new_int64(d->expires_at));
		json_object_object_add(o, "expires_in", json_object_new_int64(d->expires_at - now));
		json_object_object_add(o, "revoke_below",
				       json_object_new_int64((int64_t)d->revoke_below));
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		json_object_put(o);
		return;
	}
	if (extra)
		json_object_put(extra);
	printf("%s\nroot: version %llu, key %s, threshold %u\n"
	       "signing key: %s, serial %llu, roles %s, expires in %.1f days, serials below %llu "
	       "revoked\n",
	       action, (unsigned long long)r->version, rk, r->threshold, dk,
	       (unsigned long long)d->serial, roles, (double)(d->expires_at - now) / 86400.0,
	       (unsigned long long)d->revoke_below);
}

static int keys_fail(const struct mdm_cmd *cmd, const cells_err_t *err)
{
	fprintf(stderr, "cells-mdm: %s: %s\n", cmd->words, err->msg);
	return 1;
}

/* A positive number of seconds (optionally with a d/h/m suffix). */
static int parse_seconds(const char *s, int64_t *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	int64_t mul = 1;
	if (*end == 'd')
		mul = 86400, end++;
	else if (*end == 'h')
		mul = 3600, end++;
	else if (*end == 'm')
		mul = 60, end++;
	if (errno || end == s || *end || v <= 0 || v > 20LL * 365 * 86400 / mul)
		return -1;
	*out = v * mul;
	return 0;
}

int mdm_cmd_keys_status(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	cells_err_t err = {0};
	(void)argv;
	if (argc)
		return mdm_usage(cmd);
	struct pol_root r;
	struct pol_delegation d;
	if (mdm_keys_current(m, &r, &d, &err) < 0)
		return keys_fail(cmd, &err);
	print_keys(m, "status", &r, &d, NULL);
	return 0;
}

int mdm_cmd_keys_rotate_root(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	cells_err_t err = {0};
	(void)argv;
	if (argc)
		return mdm_usage(cmd);
	struct pol_root r;
	struct pol_delegation d;
	cleanup_close int lk = mdm_keys_lock(m, &err);
	if (lk < 0 || mdm_keys_rotate_root(m, &r, &d, &err) < 0)
		return keys_fail(cmd, &err);
	print_keys(m, "root rotated (push it: cells-mdm keys push --all)", &r, &d, NULL);
	return 0;
}

static int roles_parse(const char *s, uint32_t *out)
{
	char buf[64];
	snprintf(buf, sizeof buf, "%s", s);
	*out = 0;
	char *save = NULL;
	for (char *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
		size_t i = 0;
		while (i < CELLS_ARRAY_SIZE(role_names) && strcmp(w, role_names[i].name))
			i++;
		if (i == CELLS_ARRAY_SIZE(role_names))
			return -1;
		*out |= 1u << role_names[i].role;
	}
	return *out ? 0 : -1;
}

/* delegate and renew: [--lifetime S] (delegate also [--roles R] [--keep-key]) */
static int delegate_cmd(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv, bool renew)
{
	cells_err_t err = {0};
	struct mdm_delegate_opts o = {.new_key = !renew, .why = renew ? "renew" : "delegate"};
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--lifetime") && i + 1 < argc) {
			if (parse_seconds(argv[++i], &o.lifetime) < 0) {
				fprintf(stderr,
					"cells-mdm: %s: --lifetime takes seconds (or Nd, "
					"Nh, Nm)\n",
					cmd->words);
				return 2;
			}
		} else if (!renew && !strcmp(argv[i], "--roles") && i + 1 < argc) {
			if (roles_parse(argv[++i], &o.roles) < 0) {
				fprintf(stderr,
					"cells-mdm: %s: --roles takes policy,command,images\n",
					cmd->words);
				return 2;
			}
		} else if (!renew && !strcmp(argv[i], "--keep-key")) {
			o.new_key = false;
		} else {
			return mdm_usage(cmd);
		}
	}
	struct pol_root r;
	struct pol_delegation d;
	cleanup_close int lk = mdm_keys_lock(m, &err);
	if (lk < 0 || mdm_keys_delegate(m, &o, &d, &err) < 0 ||
	    mdm_keys_current(m, &r, &d, &err) < 0)
		return keys_fail(cmd, &err);
	print_keys(m,
		   renew ? "signing key renewed (push it: cells-mdm keys push --all)"
			 : "signing key delegated (push it: cells-mdm keys push --all)",
		   &r, &d, NULL);
	return 0;
}

int mdm_cmd_keys_delegate(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	return delegate_cmd(m, cmd, argc, argv, false);
}

int mdm_cmd_keys_renew(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	return delegate_cmd(m, cmd, argc, argv, true);
}

int mdm_cmd_keys_revoke(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	cells_err_t err = {0};
	if (argc != 1)
		return mdm_usage(cmd);
	char *end;
	errno = 0;
	unsigned long long serial = strtoull(argv[0], &end, 10);
	if (errno || end == argv[0] || *end || argv[0][0] == '-')
		return mdm_usage(cmd);
	struct pol_root r;
	struct pol_delegation d;
	bool already;
	cleanup_close int lk = mdm_keys_lock(m, &err);
	if (lk < 0 || mdm_keys_revoke(m, serial, &d, &already, &err) < 0 ||
	    mdm_keys_current(m, &r, &d, &err) < 0)
		return keys_fail(cmd, &err);
	json_object *x = json_object_new_object();
	json_object_object_add(x, "revoked", json_object_new_int64((int64_t)serial));
	json_object_object_add(x, "already", json_object_new_boolean(already));
	print_keys(m,
		   already ? "already revoked (superseded by a later serial)"
			   : "revoked (push it: cells-mdm keys push --all)",
		   &r, &d, x);
	return 0;
}

int mdm_cmd_keys_push(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	cells_err_t err = {0};
	const char *target = NULL, *from = NULL, *save = NULL;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--from") && i + 1 < argc)
			from = argv[++i];
		else if (!strcmp(argv[i], "-o") && i + 1 < argc)
			save = argv[++i];
		else if (!target)
			target = argv[i];
		else
			return mdm_usage(cmd);
	}
	if (!target)
		return mdm_usage(cmd);
	cleanup_free uint8_t *b = NULL;
	size_t n;
	char what[128];
	if (from) {
		/* a saved update as it is (checked for shape; the device verifies it) */
		Cells__V1__TrustUpdate *u = NULL;
		if (cells_read_file(from, POL_MAX_TRUST_UPDATE, &b, &n, &err) < 0 ||
		    pol_trust_update_decode(b, n, &u, &err) < 0)
			return keys_fail(cmd, &err);
		cells__v1__trust_update__free_unpacked(u, NULL);
		snprintf(what, sizeof what, "trust update from %.100s", from);
	} else {
		struct pol_root r;
		struct pol_delegation d;
		if (mdm_keys_update_blob(m, &b, &n, &r, &d, &err) < 0)
			return keys_fail(cmd, &err);
		snprintf(what, sizeof what, "trust root v%llu serial %llu",
			 (unsigned long long)r.version, (unsigned long long)d.serial);
	}
	if (save && cells_write_file_atomic(save, b, n, 0644, &err) < 0)
		return keys_fail(cmd, &err);
	char p[PATH_MAX];
	mdm_path(m, "mdm.db", p);
	struct mdm_store *s = NULL;
	if (!m->db[0] && access(p, F_OK) != 0)
		return cells_err_set(&err, ENOENT, "%s is missing (run 'cells-mdm init' first)", p),
		       keys_fail(cmd, &err);
	if (mdm_store_open(mdm_db_where(m), &s, &err) < 0)
		return keys_fail(cmd, &err);
	char **list = NULL;
	size_t cnt = 0;
	int rc = mdm_targets(s, target, &list, &cnt, &err) < 0 ? -1 : 0;
	json_object *out = json_object_new_array();
	if (rc == 0 && mdm_store_begin(s, &err) < 0)
		rc = -1;
	for (size_t i = 0; rc == 0 && i < cnt; i++) {
		struct mdm_qentry e;
		int q = mdm_keys_queue(s, list[i], b, n, what, &e, &err);
		if (q < 0) {
			rc = -1;
		} else {
			json_object *o = json_object_new_object();
			json_object_object_add(o, "id", json_object_new_string(e.id));
			json_object_object_add(o, "device_id", json_object_new_string(e.device));
			json_object_object_add(o, "what", json_object_new_string(e.what));
			json_object_array_add(out, o);
			if (!m->json)
				printf("queued %s for %s: %s\n", e.what, e.device, e.id);
		}
		mdm_qentry_clear(&e);
	}
	if (rc == 0 && cnt && mdm_store_commit(s, &err) < 0)
		rc = -1;
	mdm_store_free_ids(list, cnt);
	mdm_store_close(s);
	if (rc == 0) {
		mdm_keys_log(m, "push %s to %zu device(s)", what, cnt);
		if (m->json)
			printf("%s\n", json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN));
	}
	json_object_put(out);
	return rc == 0 ? 0 : keys_fail(cmd, &err);
}
