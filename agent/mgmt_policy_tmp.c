/* mgmt_policy_tmp.c - TEMPORARY ADAPTER, see mgmt_policy_tmp.h. Dropped at merge. */
#include "mgmt_policy_tmp.h"
#include "cleanup.h"
#include "cleanup_sqlite.h"
#include "device_key.h"
#include "pol_sig.h"
#include "statedb.h"
#include "util.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <openssl/sha.h>

static const char *const steps[] = {
    "CREATE TABLE mgmt_tmp_trust(id INTEGER PRIMARY KEY CHECK(id=1), root BLOB NOT NULL,"
    " dels BLOB NOT NULL);"
    "CREATE TABLE mgmt_tmp_policy(id INTEGER PRIMARY KEY CHECK(id=1), version INTEGER NOT NULL,"
    " hash BLOB NOT NULL, blob BLOB NOT NULL);",
};

static int migrate(struct cellsd *d, cells_err_t *err)
{
	return statedb_migrate(d->db, "mgmt_policy_tmp", steps, CELLS_ARRAY_SIZE(steps), err);
}

int policy_trust_pin_enrolled(struct cellsd *d, const Cells__V1__TrustRoot *root,
			      Cells__V1__Signed *const *dels, size_t ndels, cells_err_t *err)
{
	if (migrate(d, err) < 0)
		return -1;
	Cells__V1__TrustUpdate tu = CELLS__V1__TRUST_UPDATE__INIT;
	tu.delegations = (Cells__V1__Signed **)dels;
	tu.n_delegations = ndels;
	size_t rn = cells__v1__trust_root__get_packed_size(root);
	size_t dn = cells__v1__trust_update__get_packed_size(&tu);
	cleanup_free uint8_t *rb = malloc(rn + 1);
	cleanup_free uint8_t *db = malloc(dn + 1);
	if (!rb || !db)
		return cells_err_sys(err, ENOMEM, "trust");
	cells__v1__trust_root__pack(root, rb);
	cells__v1__trust_update__pack(&tu, db);
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (statedb_prepare(d->db, "INSERT OR REPLACE INTO mgmt_tmp_trust VALUES(1,?,?)", &st,
			    err) < 0)
		return -1;
	sqlite3_bind_blob(st, 1, rb, (int)rn, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, db, (int)dn, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		return statedb_err(d->db, "pin trust", err);
	return 0;
}

uint64_t policy_installed_version(struct cellsd *d)
{
	if (migrate(d, NULL) < 0)
		return 0;
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (statedb_prepare(d->db, "SELECT version FROM mgmt_tmp_policy WHERE id=1", &st, NULL) < 0)
		return 0;
	return sqlite3_step(st) == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
}

#if !__has_include("policy_engine.h")

/* Verify s by a key that the pinned root delegated for role, valid now. */
static int verify_by_role(struct cellsd *d, const Cells__V1__Signed *s, Cells__V1__KeyRole role,
			  cells_err_t *err)
{
	if (migrate(d, err) < 0)
		return -1;
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (statedb_prepare(d->db, "SELECT root, dels FROM mgmt_tmp_trust WHERE id=1", &st, err) <
	    0)
		return -1;
	if (sqlite3_step(st) != SQLITE_ROW)
		return cells_err_set(err, EKEYREJECTED, "no trust root pinned (not enrolled)");
	Cells__V1__TrustRoot *root = cells__v1__trust_root__unpack(
	    NULL, (size_t)sqlite3_column_bytes(st, 0), sqlite3_column_blob(st, 0));
	Cells__V1__TrustUpdate *tu = cells__v1__trust_update__unpack(
	    NULL, (size_t)sqlite3_column_bytes(st, 1), sqlite3_column_blob(st, 1));
	int rc = cells_err_set(err, EKEYREJECTED, "not signed by a delegated key for this role");
	int64_t now = time(NULL);
	for (size_t i = 0; root && tu && i < tu->n_delegations; i++) {
		Cells__V1__Signed *ds = tu->delegations[i];
		bool root_ok = false;
		for (size_t k = 0; k < root->n_root_keys && !root_ok; k++)
			for (size_t j = 0; j < ds->n_signatures && !root_ok; j++)
				root_ok =
				    root->root_keys[k].len == POL_PUBKEY_LEN &&
				    ds->signatures[j]->signature.len == POL_SIG_LEN &&
				    pol_verify_raw(root->root_keys[k].data, ds->kind,
						   ds->payload.data, ds->payload.len,
						   ds->signatures[j]->signature.data, NULL) == 0;
		if (!root_ok || ds->kind != CELLS__V1__SIGNED_KIND__SIGNED_KEY_DELEGATION)
			continue;
		Cells__V1__KeyDelegation *kd =
		    cells__v1__key_delegation__unpack(NULL, ds->payload.len, ds->payload.data);
		if (!kd)
			continue;
		bool role_ok = false;
		for (size_t r = 0; r < kd->n_roles; r++)
			role_ok |= kd->roles[r] == role;
		if (role_ok && kd->public_key.len == POL_PUBKEY_LEN && kd->expires_at > now &&
		    kd->not_before <= now) {
			for (size_t j = 0; j < s->n_signatures; j++)
				if (s->signatures[j]->signature.len == POL_SIG_LEN &&
				    pol_verify_raw(kd->public_key.data, s->kind, s->payload.data,
						   s->payload.len, s->signatures[j]->signature.data,
						   NULL) == 0)
					rc = 0;
		}
		cells__v1__key_delegation__free_unpacked(kd, NULL);
		if (rc == 0)
			break;
	}
	if (root)
		cells__v1__trust_root__free_unpacked(root, NULL);
	if (tu)
		cells__v1__trust_update__free_unpacked(tu, NULL);
	if (rc == 0)
		cells_err_clear(err);
	return rc;
}

int policy_install(struct cellsd *d, const uint8_t *blob, size_t n, const char *source,
		   cells_err_t *err)
{
	cleanup_signed Cells__V1__Signed *s = NULL;
	cleanup_policy_pb Cells__V1__Policy *p = NULL;
	cleanup_stmt sqlite3_stmt *q = NULL;
	cleanup_stmt sqlite3_stmt *st = NULL;
	uint8_t h[SHA256_DIGEST_LENGTH];
	char id[DEVICE_ID_LEN + 1];
	if (cells_signed_decode(blob, n, &s, err) < 0 ||
	    cells_signed_check(s, CELLS__V1__SIGNED_KIND__SIGNED_POLICY, err) < 0 ||
	    verify_by_role(d, s, CELLS__V1__KEY_ROLE__KEY_ROLE_POLICY, err) < 0 ||
	    device_key_load(d->state_dir, NULL, id, err) < 0)
		goto refused;
	p = cells__v1__policy__unpack(NULL, s->payload.len, s->payload.data);
	if (!p) {
		cells_err_set(err, EBADMSG, "malformed policy");
		goto refused;
	}
	if (strcmp(p->device_id, id)) {
		cells_err_set(err, ENODEV, "policy is for device %s", p->device_id);
		goto refused;
	}
	if (p->expires_at && p->expires_at <= time(NULL)) {
		cells_err_set(err, ETIME, "policy expired");
		goto refused;
	}
	SHA256(s->payload.data, s->payload.len, h);
	if (statedb_prepare(d->db, "SELECT version, hash FROM mgmt_tmp_policy WHERE id=1", &q,
			    err) < 0)
		return -1;
	if (sqlite3_step(q) == SQLITE_ROW) {
		uint64_t v = (uint64_t)sqlite3_column_int64(q, 0);
		if (v == p->version && sqlite3_column_bytes(q, 1) == (int)sizeof h &&
		    !memcmp(sqlite3_column_blob(q, 1), h, sizeof h))
			return 1;
		if (p->version <= v) {
			cells_err_set(err, ESTALE, "policy version %llu is not newer than %llu",
				      (unsigned long long)p->version, (unsigned long long)v);
			goto refused;
		}
	}
	json_object *det = json_object_new_object();
	json_object_object_add(det, "version", json_object_new_int64((int64_t)p->version));
	json_object_object_add(det, "source", json_object_new_string(source));
	int a = cellsd_audit(d, "", source, "policy.installed", "ok", det, err);
	json_object_put(det);
	if (a < 0)
		return -1;
	if (statedb_prepare(d->db, "INSERT OR REPLACE INTO mgmt_tmp_policy VALUES(1,?,?,?)", &st,
			    err) < 0)
		return -1;
	sqlite3_bind_int64(st, 1, (int64_t)p->version);
	sqlite3_bind_blob(st, 2, h, sizeof h, SQLITE_STATIC);
	sqlite3_bind_blob(st, 3, blob, (int)n, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		return statedb_err(d->db, "install policy", err);
	return 0;
refused:;
	json_object *rd = json_object_new_object();
	json_object_object_add(rd, "reason", json_object_new_string(err->msg));
	json_object_object_add(rd, "source", json_object_new_string(source));
	cellsd_audit(d, "", source, "policy.rejected", "refused", rd, NULL);
	json_object_put(rd);
	return -1;
}

int policy_verify_command(struct cellsd *d, const Cells__V1__Signed *s, Cells__V1__Command **out,
			  cells_err_t *err)
{
	char id[DEVICE_ID_LEN + 1];
	if (cells_signed_check(s, CELLS__V1__SIGNED_KIND__SIGNED_COMMAND, err) < 0 ||
	    verify_by_role(d, s, CELLS__V1__KEY_ROLE__KEY_ROLE_COMMAND, err) < 0 ||
	    device_key_load(d->state_dir, NULL, id, err) < 0)
		return -1;
	Cells__V1__Command *c = cells__v1__command__unpack(NULL, s->payload.len, s->payload.data);
	if (!c)
		return cells_err_set(err, EBADMSG, "malformed command");
	if (strcmp(c->device_id, id)) {
		cells__v1__command__free_unpacked(c, NULL);
		return cells_err_set(err, ENODEV, "command is for another device");
	}
	if (!c->command_id[0] || strlen(c->command_id) > CELLS_MAX_ID_LEN ||
	    (c->expires_at && c->expires_at <= time(NULL))) {
		cells__v1__command__free_unpacked(c, NULL);
		return cells_err_set(err, ETIME, "command expired or without id");
	}
	*out = c;
	return 0;
}

#endif
