/* policy_engine.c - trust root, delegations, install/apply of signed policies. */
#include "policy_engine.h"
#include "audit.h"
#include "cleanup.h"
#include "cleanup_sqlite.h"
#include "device_key.h"
#include "enforce.h"
#include "log.h"
#include "pol_json.h"
#include "pol_model.h"
#include "pol_policy.h"
#include "pol_trust.h"
#include "sqldb.h"
#include "testhook.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct policy_engine {
	char device_id[DEVICE_ID_LEN + 1];
	bool have_root;
	struct pol_root root;
	struct pol_delegation dels[POL_MAX_DELEGATIONS];
	size_t ndels;
	/* the accepted (newest) policy */
	bool have_accepted;
	uint64_t acc_version;
	uint8_t acc_hash[32];
	bool acc_applied;
	/* in force: the MDM policy (its message, for the store, and its model: the bounds
	 * of local settings) and the effective model (local tightening merged), which the
	 * enforcers get */
	Cells__V1__Policy *policy;
	struct pol_model *model;
	struct pol_model *effective;
	bool apply_failed;
	char apply_error[CELLS_ERR_MSG_MAX];
	struct enforcer enf[ENFORCE_MAX];
	size_t nenf;
};

static const struct pol_model empty_model;

static const char *const policy_schema[] = {
    "CREATE TABLE policy_root(id INTEGER PRIMARY KEY CHECK (id = 1), root BLOB NOT NULL,"
    " pinned_at INTEGER NOT NULL);"
    "CREATE TABLE policy_delegation(kid BLOB PRIMARY KEY, serial INTEGER NOT NULL,"
    " signed BLOB NOT NULL);"
    "CREATE TABLE policy_state(id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL,"
    " hash BLOB NOT NULL, payload BLOB NOT NULL, prev_payload BLOB, applied INTEGER NOT NULL,"
    " accepted_at INTEGER NOT NULL, source TEXT NOT NULL);"
    "CREATE TABLE vp_config(vp TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
    " PRIMARY KEY (vp, key));",
};

int enforce_register(struct cellsd *d, const struct enforcer *e, cells_err_t *err)
{
	struct policy_engine *pe = d->pe;
	if (!pe)
		return cells_err_set(err, EINVAL,
				     "enforcer %s: the policy engine is not initialised", e->name);
	if (pe->nenf >= ENFORCE_MAX)
		return cells_err_set(err, ENOSPC, "enforcer %s: too many enforcers", e->name);
	pe->enf[pe->nenf++] = *e;
	return 0;
}

/* ---- helpers ---- */
static Cells__V1__Policy *policy_copy(const uint8_t *payload, size_t n)
{
	return cells__v1__policy__unpack(NULL, n, payload);
}

static void policy_freep(Cells__V1__Policy **p)
{
	if (*p)
		cells__v1__policy__free_unpacked(*p, NULL);
	*p = NULL;
}

static int pack_policy(const Cells__V1__Policy *p, uint8_t **out, size_t *n, cells_err_t *err)
{
	size_t len = cells__v1__policy__get_packed_size(p);
	uint8_t *b = malloc(len ? len : 1);
	if (!b)
		return cells_err_sys(err, ENOMEM, "policy");
	cells__v1__policy__pack(p, b);
	*out = b;
	*n = len;
	return 0;
}

/* The MDM policy's model with the local configuration of each VP merged in (owned; the
 * merge is policy/'s pol_model_tighten, this reads its input from the vp_config table). */
#define LOCAL_MAX 1024
static struct pol_model *make_effective(struct cellsd *d, const struct pol_model *m,
					cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *q = NULL;
	if (sqldb_prepare(d->db, "SELECT vp, key, value FROM vp_config ORDER BY rowid", &q, err) <
	    0)
		return NULL;
	struct pol_model *e = malloc(sizeof *e);
	if (!e) {
		cells_err_sys(err, ENOMEM, "effective policy");
		return NULL;
	}
	*e = *m;
	int rc;
	size_t n = 0;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW && n++ < LOCAL_MAX) {
		const struct pol_local l = {(const char *)sqlite3_column_text(q, 0),
					    (const char *)sqlite3_column_text(q, 1),
					    (const char *)sqlite3_column_text(q, 2)};
		pol_model_tighten(e, &l, 1);
	}
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		sqldb_err(d->db, "vp_config", err);
		free(e);
		return NULL;
	}
	return e;
}

/* Apply nw over old through every enforcer; on failure undo those already applied. */
static int apply_all(struct cellsd *d, const struct pol_model *nw, const struct pol_model *old,
		     cells_err_t *err)
{
	struct policy_engine *pe = d->pe;
	for (size_t i = 0; i < pe->nenf; i++) {
		if (pe->enf[i].apply(d, nw, old, err) == 0)
			continue;
		cells_err_prefix(err, "enforcer %s", pe->enf[i].name);
		for (size_t j = i; j-- > 0;) {
			cells_err_t e2;
			if (pe->enf[j].apply(d, old, nw, &e2) < 0)
				log_error("policy rollback: enforcer %s: %s", pe->enf[j].name,
					  e2.msg);
		}
		return -1;
	}
	return 0;
}

static int load_delegations(struct cellsd *d, cells_err_t *err)
{
	struct policy_engine *pe = d->pe;
	cleanup_stmt sqlite3_stmt *q = NULL;
	pe->ndels = 0;
	if (sqldb_prepare(d->db, "SELECT signed FROM policy_delegation ORDER BY kid", &q, err) < 0)
		return -1;
	while (sqlite3_step(q) == SQLITE_ROW && pe->ndels < POL_MAX_DELEGATIONS) {
		const uint8_t *b = sqlite3_column_blob(q, 0);
		size_t n = (size_t)sqlite3_column_bytes(q, 0);
		cleanup_signed Cells__V1__Signed *s = NULL;
		cells_err_t e2;
		if (cells_signed_decode(b, n, &s, &e2) < 0 ||
		    pol_delegation_verify(&pe->root, s, &pe->dels[pe->ndels], &e2) < 0) {
			log_warn("policy: stored delegation dropped: %s", e2.msg);
			continue;
		}
		pe->ndels++;
	}
	return 0;
}

int policy_engine_init(struct cellsd *d, cells_err_t *err)
{
	if (sqldb_migrate(d->db, "policy", policy_schema, CELLS_ARRAY_SIZE(policy_schema), err) < 0)
		return cells_err_prefix(err, "policy engine");
	struct policy_engine *pe = calloc(1, sizeof *pe);
	if (!pe)
		return cells_err_sys(err, ENOMEM, "policy engine");
	d->pe = pe;
	if (device_key_load(d->state_dir, NULL, pe->device_id, err) < 0)
		return cells_err_prefix(err, "policy engine");
	cleanup_stmt sqlite3_stmt *q = NULL;
	if (sqldb_prepare(d->db, "SELECT root FROM policy_root WHERE id=1", &q, err) < 0)
		return -1;
	if (sqlite3_step(q) == SQLITE_ROW) {
		if (pol_root_decode(sqlite3_column_blob(q, 0), (size_t)sqlite3_column_bytes(q, 0),
				    &pe->root, err) < 0)
			return cells_err_prefix(err, "pinned trust root");
		pe->have_root = true;
		if (load_delegations(d, err) < 0)
			return -1;
	}
	return 0;
}

/* Make p (MDM policy, owned on success) the policy in force: compute the effective
 * policy and apply it over the one in force. */
static int make_in_force(struct cellsd *d, Cells__V1__Policy **p, cells_err_t *err)
{
	struct policy_engine *pe = d->pe;
	cleanup_free struct pol_model *m = malloc(sizeof *m);
	if (!m)
		return cells_err_sys(err, ENOMEM, "policy model");
	if (pol_model_from(*p, m, err) < 0)
		return -1;
	cleanup_free struct pol_model *eff = make_effective(d, m, err);
	if (!eff)
		return -1;
	if (apply_all(d, eff, pe->effective ? pe->effective : &empty_model, err) < 0)
		return -1;
	policy_freep(&pe->policy);
	free(pe->model);
	free(pe->effective);
	pe->policy = steal_pointer(p);
	pe->model = steal_pointer(&m);
	pe->effective = steal_pointer(&eff);
	return 0;
}

static int mark_applied(struct cellsd *d, cells_err_t *err)
{
	if (sqldb_exec(d->db, "UPDATE policy_state SET applied=1 WHERE id=1", err) < 0)
		return -1;
	d->pe->acc_applied = true;
	return 0;
}

int policy_engine_start(struct cellsd *d, cells_err_t *err)
{
	struct policy_engine *pe = d->pe;
	cleanup_stmt sqlite3_stmt *q = NULL;
	if (sqldb_prepare(d->db,
			  "SELECT version, hash, payload, prev_payload, applied FROM policy_state "
			  "WHERE id=1",
			  &q, err) < 0)
		return -1;
	if (sqlite3_step(q) != SQLITE_ROW)
		return 0;
	pe->have_accepted = true;
	pe->acc_version = (uint64_t)sqlite3_column_int64(q, 0);
	if (sqlite3_column_bytes(q, 1) == 32)
		memcpy(pe->acc_hash, sqlite3_column_blob(q, 1), 32);
	pe->acc_applied = sqlite3_column_int(q, 4) != 0;
	Cells__V1__Policy *p =
	    policy_copy(sqlite3_column_blob(q, 2), (size_t)sqlite3_column_bytes(q, 2));
	if (!p)
		return cells_err_set(err, EBADMSG, "stored policy does not decode");
	cells_err_t e1 = {0};
	if (make_in_force(d, &p, &e1) == 0) {
		policy_freep(&p);
		if (!pe->acc_applied)
			log_info("policy version %llu (accepted before a restart) applied",
				 (unsigned long long)pe->acc_version);
		return mark_applied(d, err);
	}
	policy_freep(&p);
	/* fall back to the previous policy in force */
	pe->apply_failed = true;
	snprintf(pe->apply_error, sizeof pe->apply_error, "%s", e1.msg);
	log_error("policy version %llu cannot be applied: %s", (unsigned long long)pe->acc_version,
		  e1.msg);
	if (sqlite3_column_type(q, 3) == SQLITE_BLOB) {
		Cells__V1__Policy *prev =
		    policy_copy(sqlite3_column_blob(q, 3), (size_t)sqlite3_column_bytes(q, 3));
		cells_err_t e2;
		if (prev && make_in_force(d, &prev, &e2) < 0)
			log_error("previous policy cannot be applied either: %s", e2.msg);
		policy_freep(&prev);
	}
	cellsd_audit(d, "", "cellsd", "policy.apply_failed", "failed", NULL, NULL);
	return 0;
}

void policy_engine_free(struct cellsd *d)
{
	struct policy_engine *pe = d->pe;
	if (!pe)
		return;
	policy_freep(&pe->policy);
	free(pe->model);
	free(pe->effective);
	free(pe);
	d->pe = NULL;
}

static void kid_hex(const uint8_t pub[32], char out[65])
{
	uint8_t kid[32];
	pol_key_id(pub, kid);
	cells_hex(kid, 32, out);
}

static bool same_root(const struct pol_root *a, const struct pol_root *b)
{
	return a->nkeys == b->nkeys && a->threshold == b->threshold &&
	       !memcmp(a->keys, b->keys, a->nkeys * POL_PUBKEY_LEN);
}

int policy_trust_pin(struct cellsd *d, const uint8_t *p, size_t n, const char *actor,
		     cells_err_t *err)
{
	struct policy_engine *pe = d->pe;
	struct pol_root r;
	char kid[65];
	json_object *det = json_object_new_object();
	int rc = -1;
	if (pe->have_root && pol_root_parse_any(p, n, &r, NULL) == 0 && same_root(&r, &pe->root)) {
		/* pinning the root in force again (enrollment after a manual pin): a no-op */
		kid_hex(r.keys[0], kid);
		json_object_object_add(det, "root_key_id", json_object_new_string(kid));
		json_object_object_add(det, "already_pinned", json_object_new_boolean(true));
		rc = cellsd_audit(d, "", actor, "trust.pin", "ok", det, err);
		json_object_put(det);
		return rc;
	}
	if (pe->have_root) {
		kid_hex(pe->root.keys[0], kid);
		cells_err_set(err, EEXIST,
			      "a trust root is already pinned (key %.16s); only a signed root "
			      "rotation can replace it",
			      kid);
	} else if (pol_root_parse_any(p, n, &r, err) == 0) {
		rc = 0;
	}
	if (rc < 0) {
		json_object_object_add(det, "reason", json_object_new_string(err->msg));
		cellsd_audit(d, "", actor, "trust.pin", "refused", det, NULL);
		json_object_put(det);
		return -1;
	}
	kid_hex(r.keys[0], kid);
	json_object_object_add(det, "root_key_id", json_object_new_string(kid));
	json_object_object_add(det, "threshold", json_object_new_int64(r.threshold));
	if (cellsd_audit(d, "", actor, "trust.pin", "ok", det, err) < 0) {
		json_object_put(det);
		return cells_err_prefix(err, "trust pin refused: audit log");
	}
	json_object_put(det);
	cleanup_free uint8_t *b = NULL;
	size_t bn;
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (pol_root_encode(&r, &b, &bn, err) < 0 ||
	    sqldb_prepare(d->db, "INSERT INTO policy_root(id, root, pinned_at) VALUES(1, ?, ?)",
			  &st, err) < 0)
		return -1;
	sqlite3_bind_blob(st, 1, b, (int)bn, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)time(NULL));
	if (sqlite3_step(st) != SQLITE_DONE)
		return sqldb_err(d->db, "pin trust root", err);
	pe->root = r;
	pe->have_root = true;
	pe->ndels = 0;
	return 0;
}

/* Everything verified about an incoming bundle. */
struct verified {
	struct pol_bundle b;
	Cells__V1__Signed *const *rots, *const *ins; /* rotations and delegations offered */
	size_t nrots, nins;
	struct pol_root root;
	bool rotated, dropped;
	uint64_t floor; /* delegation serials below it are revoked */
	struct pol_delegation dels[POL_MAX_DELEGATIONS];
	size_t ndels;
	bool taken[POL_MAX_DELEGATIONS]; /* offered delegations to store */
	Cells__V1__Policy *pol;
	int same;
};

static void verified_free(struct verified *v)
{
	pol_bundle_free(&v->b);
	policy_freep(&v->pol);
}

/* Verify offered rotations (oldest first) and delegations against the pinned root
 * (pol_trust_advance: the TUF walk, revocation floor; strict for a TrustUpdate). */
static int verify_trust(struct policy_engine *pe, struct verified *v, bool strict, cells_err_t *err)
{
	if (v->nins > POL_MAX_DELEGATIONS || v->nrots > POL_TRUST_MAX_ROTATIONS)
		return cells_err_set(err, EINVAL, "too many delegations or rotations offered");
	struct pol_trust cur, out;
	struct pol_trust_result res;
	cur.root = pe->root;
	memcpy(cur.dels, pe->dels, pe->ndels * sizeof *pe->dels);
	cur.ndels = pe->ndels;
	if (pol_trust_advance(&cur, v->rots, v->nrots, v->ins, v->nins, time(NULL),
			      strict ? POL_TRUST_STRICT : 0, &out, &res, err) < 0)
		return -1;
	v->root = out.root;
	v->rotated = res.rotated;
	v->dropped = res.dropped;
	v->floor = res.floor;
	memcpy(v->dels, out.dels, out.ndels * sizeof *out.dels);
	v->ndels = out.ndels;
	for (size_t i = 0; i < v->nins; i++)
		v->taken[i] = res.taken[i];
	return 0;
}

static int verify_bundle(struct cellsd *d, const uint8_t *blob, size_t n, struct verified *v,
			 cells_err_t *err)
{
	struct policy_engine *pe = d->pe;
	memset(v, 0, sizeof *v);
	if (!pe->have_root)
		return cells_err_set(err, EKEYREJECTED,
				     "no trust root is pinned (cellctl trust pin ROOT.pub)");
	if (pol_bundle_decode(blob, n, &v->b, err) < 0)
		return -1;
	v->rots = v->b.rotations;
	v->nrots = v->b.nrotations;
	v->ins = v->b.delegations;
	v->nins = v->b.ndelegations;
	if (verify_trust(pe, v, false, err) < 0)
		return -1;
	struct pol_installed inst = {.have = pe->have_accepted, .version = pe->acc_version};
	memcpy(inst.hash, pe->acc_hash, 32);
	int r = pol_policy_verify(v->b.policy, v->dels, v->ndels, pe->device_id, time(NULL), &inst,
				  &v->pol, err);
	if (r < 0)
		return -1;
	v->same = r;
	return 0;
}

static int persist(struct cellsd *d, struct verified *v, const uint8_t *blob, size_t n,
		   const char *source, cells_err_t *err)
{
	struct policy_engine *pe = d->pe;
	if (sqldb_begin(d->db, err) < 0)
		return -1;
	int rc = -1;
	cleanup_free uint8_t *rb = NULL;
	cleanup_free uint8_t *prev = NULL;
	size_t rn, pn = 0;
	if (v->rotated) {
		cleanup_stmt sqlite3_stmt *st = NULL;
		if (pol_root_encode(&v->root, &rb, &rn, err) < 0 ||
		    sqldb_exec(d->db, "DELETE FROM policy_delegation", err) < 0 ||
		    sqldb_prepare(d->db, "UPDATE policy_root SET root=? WHERE id=1", &st, err) < 0)
			goto out;
		sqlite3_bind_blob(st, 1, rb, (int)rn, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE) {
			sqldb_err(d->db, "store root", err);
			goto out;
		}
	} else if (v->dropped) {
		cleanup_stmt sqlite3_stmt *st = NULL;
		if (sqldb_prepare(d->db, "DELETE FROM policy_delegation WHERE serial < ?", &st,
				  err) < 0)
			goto out;
		sqlite3_bind_int64(st, 1, (sqlite3_int64)v->floor);
		if (sqlite3_step(st) != SQLITE_DONE) {
			sqldb_err(d->db, "revoke delegations", err);
			goto out;
		}
	}
	for (size_t i = 0; i < v->nins; i++) {
		if (!v->taken[i])
			continue;
		cleanup_free uint8_t *sb = NULL;
		size_t sn;
		cleanup_stmt sqlite3_stmt *st = NULL;
		uint8_t kid[32];
		struct pol_delegation dl;
		if (pol_delegation_verify(&v->root, v->ins[i], &dl, err) < 0 ||
		    pol_signed_pack(v->ins[i], &sb, &sn, err) < 0 ||
		    sqldb_prepare(d->db,
				  "INSERT OR REPLACE INTO policy_delegation(kid, serial, signed) "
				  "VALUES(?, ?, ?)",
				  &st, err) < 0)
			goto out;
		memcpy(kid, dl.kid, 32);
		sqlite3_bind_blob(st, 1, kid, 32, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 2, (sqlite3_int64)dl.serial);
		sqlite3_bind_blob(st, 3, sb, (int)sn, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE) {
			sqldb_err(d->db, "store delegation", err);
			goto out;
		}
	}
	if (!v->same && v->b.policy) {
		cleanup_stmt sqlite3_stmt *st = NULL;
		uint8_t h[32];
		const Cells__V1__Signed *s = v->b.policy;
		SHA256(s->payload.data, s->payload.len, h);
		if (pe->policy && pack_policy(pe->policy, &prev, &pn, err) < 0)
			goto out;
		if (sqldb_prepare(d->db,
				  "INSERT OR REPLACE INTO policy_state(id, version, hash, payload,"
				  " prev_payload, applied, accepted_at, source)"
				  " VALUES(1, ?, ?, ?, ?, 0, ?, ?)",
				  &st, err) < 0)
			goto out;
		sqlite3_bind_int64(st, 1, (sqlite3_int64)v->pol->version);
		sqlite3_bind_blob(st, 2, h, 32, SQLITE_TRANSIENT);
		sqlite3_bind_blob(st, 3, s->payload.data, (int)s->payload.len, SQLITE_STATIC);
		if (prev)
			sqlite3_bind_blob(st, 4, prev, (int)pn, SQLITE_STATIC);
		else
			sqlite3_bind_null(st, 4);
		sqlite3_bind_int64(st, 5, (sqlite3_int64)time(NULL));
		sqlite3_bind_text(st, 6, source, -1, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE) {
			sqldb_err(d->db, "store policy", err);
			goto out;
		}
		memcpy(pe->acc_hash, h, 32);
	}
	if (sqldb_commit(d->db, err) < 0)
		goto out;
	rc = 0;
out:
	if (rc < 0)
		sqldb_rollback(d->db);
	(void)blob;
	(void)n;
	return rc;
}

static int reject(struct cellsd *d, const char *source, cells_err_t *err)
{
	json_object *det = json_object_new_object();
	json_object_object_add(det, "reason", json_object_new_string(err->msg));
	json_object_object_add(det, "errno", json_object_new_int(err->code));
	cellsd_audit(d, "", source, "policy.rejected", "refused", det, NULL);
	json_object_put(det);
	log_warn("policy from %s rejected: %s", source, err->msg);
	return -1;
}

int policy_check(struct cellsd *d, const uint8_t *blob, size_t n, uint64_t *version,
		 cells_err_t *err)
{
	struct verified v;
	int r = verify_bundle(d, blob, n, &v, err);
	if (r == 0 && version)
		*version = v.pol->version;
	verified_free(&v);
	return r;
}

int policy_install(struct cellsd *d, const uint8_t *signed_blob, size_t n, const char *source,
		   cells_err_t *err)
{
	struct policy_engine *pe = d->pe;
	struct verified v;
	if (verify_bundle(d, signed_blob, n, &v, err) < 0) {
		verified_free(&v);
		return reject(d, source, err);
	}
	uint64_t ver = v.pol->version;
	if (v.same && pe->acc_applied && !pe->apply_failed) {
		bool trust_changed = v.rotated || v.dropped;
		for (size_t i = 0; i < v.nins; i++)
			trust_changed |= v.taken[i];
		if (trust_changed && persist(d, &v, signed_blob, n, source, err) == 0) {
			if (v.rotated)
				pe->root = v.root;
			memcpy(pe->dels, v.dels, v.ndels * sizeof *v.dels);
			pe->ndels = v.ndels;
		}
		verified_free(&v);
		log_info("policy version %llu from %s is already in force (a replay)",
			 (unsigned long long)ver, source);
		return 1;
	}
	json_object *det = json_object_new_object();
	json_object_object_add(det, "version", json_object_new_int64((int64_t)ver));
	json_object_object_add(det, "source", json_object_new_string(source));
	if (cellsd_audit(d, "", source, "policy.accepted", "ok", det, err) < 0) {
		json_object_put(det);
		verified_free(&v);
		return cells_err_prefix(err, "policy refused: audit log");
	}
	testhook_point("policy-before-persist");
	if (persist(d, &v, signed_blob, n, source, err) < 0) {
		json_object_put(det);
		verified_free(&v);
		cells_err_prefix(err, "persist");
		return reject(d, source, err);
	}
	/* committed: the version is accepted now, also across a crash */
	pe->have_accepted = true;
	pe->acc_version = ver;
	pe->acc_applied = false;
	if (v.rotated)
		pe->root = v.root;
	memcpy(pe->dels, v.dels, v.ndels * sizeof *v.dels);
	pe->ndels = v.ndels;
	testhook_point("policy-after-persist");
	int rc = make_in_force(d, &v.pol, err);
	verified_free(&v);
	if (rc < 0) {
		pe->apply_failed = true;
		snprintf(pe->apply_error, sizeof pe->apply_error, "%s", err->msg);
		json_object_object_add(det, "reason", json_object_new_string(err->msg));
		cellsd_audit(d, "", source, "policy.apply_failed", "failed", det, NULL);
		json_object_put(det);
		return cells_err_prefix(err,
					"policy version %llu accepted but not applied (the "
					"previous policy stays in force)",
					(unsigned long long)ver);
	}
	pe->apply_failed = false;
	pe->apply_error[0] = 0;
	cells_err_t e2;
	if (mark_applied(d, &e2) < 0)
		log_error("policy: %s", e2.msg);
	cellsd_audit(d, "", source, "policy.installed", "ok", det, NULL);
	json_object_put(det);
	log_info("policy version %llu from %s in force", (unsigned long long)ver, source);
	return 0;
}

int policy_trust_update(struct cellsd *d, Cells__V1__Signed *const *rotations, size_t nrot,
			Cells__V1__Signed *const *delegations, size_t ndel, bool strict,
			const char *source, cells_err_t *err)
{
	struct policy_engine *pe = d->pe;
	struct verified v;
	memset(&v, 0, sizeof v);
	v.rots = rotations;
	v.nrots = nrot;
	v.ins = delegations;
	v.nins = ndel;
	v.same = 1;
	json_object *det = json_object_new_object();
	json_object_object_add(det, "rotations", json_object_new_int64((int64_t)nrot));
	json_object_object_add(det, "delegations", json_object_new_int64((int64_t)ndel));
	int rc = -1;
	if (!pe->have_root) {
		cells_err_set(err, EKEYREJECTED, "no trust root is pinned");
	} else {
		for (size_t i = 0; i < nrot; i++)
			if (cells_signed_check(rotations[i],
					       CELLS__V1__SIGNED_KIND__SIGNED_ROOT_ROTATION,
					       err) < 0)
				goto out;
		for (size_t i = 0; i < ndel; i++)
			if (cells_signed_check(delegations[i],
					       CELLS__V1__SIGNED_KIND__SIGNED_KEY_DELEGATION,
					       err) < 0)
				goto out;
		rc = verify_trust(pe, &v, strict, err);
	}
out:
	if (rc == 0) {
		json_object_object_add(det, "root_version",
				       json_object_new_int64((int64_t)v.root.version));
		json_object_object_add(det, "revoked_below",
				       json_object_new_int64((int64_t)v.floor));
	}
	if (rc < 0) {
		json_object_object_add(det, "reason", json_object_new_string(err->msg));
		cellsd_audit(d, "", source, "trust.update", "refused", det, NULL);
		json_object_put(det);
		return -1;
	}
	if (cellsd_audit(d, "", source, "trust.update", "ok", det, err) < 0) {
		json_object_put(det);
		return cells_err_prefix(err, "trust update refused: audit log");
	}
	json_object_put(det);
	if (persist(d, &v, NULL, 0, source, err) < 0)
		return -1;
	if (v.rotated)
		pe->root = v.root;
	memcpy(pe->dels, v.dels, v.ndels * sizeof *v.dels);
	pe->ndels = v.ndels;
	return 0;
}

int policy_trust_pin_enrolled(struct cellsd *d, const Cells__V1__TrustRoot *root,
			      Cells__V1__Signed *const *dels, size_t ndels, cells_err_t *err)
{
	if (!root)
		return cells_err_set(err, EBADMSG, "enrollment carries no trust root");
	size_t n = cells__v1__trust_root__get_packed_size(root);
	if (n > CELLS_MAX_TRUST_ROOT)
		return cells_err_set(err, EMSGSIZE, "trust root of %zu bytes is over the limit", n);
	uint8_t b[CELLS_MAX_TRUST_ROOT];
	cells__v1__trust_root__pack(root, b);
	/* re-enrollment with the root already pinned is a no-op; another root is refused */
	if (policy_trust_pin(d, b, n, "mgmt:enrollment", err) < 0)
		return cells_err_prefix(err, "enrollment");
	if (ndels &&
	    policy_trust_update(d, NULL, 0, dels, ndels, false, "mgmt:enrollment", err) < 0)
		return -1;
	return 0;
}

int policy_trust_get(struct cellsd *d, struct pol_trust *out, cells_err_t *err)
{
	struct policy_engine *pe = d->pe;
	memset(out, 0, sizeof *out);
	if (!pe || !pe->have_root)
		return cells_err_set(err, EKEYREJECTED,
				     "no trust root is pinned (cellctl trust pin ROOT.pub)");
	out->root = pe->root;
	memcpy(out->dels, pe->dels, pe->ndels * sizeof *pe->dels);
	out->ndels = pe->ndels;
	return 0;
}

uint64_t policy_installed_version(struct cellsd *d)
{
	return policy_version(d);
}

int policy_verify_command(struct cellsd *d, const Cells__V1__Signed *s, Cells__V1__Command **out,
			  cells_err_t *err)
{
	struct policy_engine *pe = d->pe;
	if (!pe->have_root)
		return cells_err_set(err, EKEYREJECTED, "no trust root is pinned");
	return pol_command_verify(s, pe->dels, pe->ndels, pe->device_id, time(NULL), out, err);
}

const struct pol_vp_rule *policy_vp_rule(struct cellsd *d, const char *vp)
{
	return d->pe ? pol_model_vp(d->pe->effective, vp) : NULL;
}

const struct pol_vp_rule *policy_vp_bounds(struct cellsd *d, const char *vp)
{
	return d->pe ? pol_model_vp(d->pe->model, vp) : NULL;
}

bool policy_vp_expiry_locked(struct cellsd *d, const char *vp)
{
	const struct pol_vp_rule *r = policy_vp_bounds(d, vp);
	return r && r->lock_on_expiry &&
	       d->pe->model->on_expiry == CELLS__V1__EXPIRY_MODE__EXPIRY_LOCK_VP &&
	       policy_compliance(d) == CELLS__V1__COMPLIANCE__NONCOMPLIANT_POLICY_EXPIRED;
}

uint64_t policy_version(struct cellsd *d)
{
	return d->pe && d->pe->policy ? d->pe->policy->version : 0;
}

int policy_compliance(struct cellsd *d)
{
	struct policy_engine *pe = d->pe;
	if (!pe || !pe->policy)
		return pe && pe->apply_failed ? CELLS__V1__COMPLIANCE__NONCOMPLIANT_APPLY_FAILED
					      : CELLS__V1__COMPLIANCE__NONCOMPLIANT_NO_POLICY;
	if (pe->apply_failed)
		return CELLS__V1__COMPLIANCE__NONCOMPLIANT_APPLY_FAILED;
	if (pe->policy->expires_at && time(NULL) >= pe->policy->expires_at)
		return CELLS__V1__COMPLIANCE__NONCOMPLIANT_POLICY_EXPIRED;
	return CELLS__V1__COMPLIANCE__COMPLIANT;
}

static int parse_setting(const struct pol_vp_rule *bounds, const char *s, char *key, size_t keylen,
			 const char **value, cells_err_t *err)
{
	const char *eq = strchr(s, '=');
	if (!eq || eq == s || (size_t)(eq - s) >= keylen)
		return cells_err_set(err, EINVAL, "setting '%s' is not KEY=VALUE", s);
	memcpy(key, s, (size_t)(eq - s));
	key[eq - s] = 0;
	*value = eq + 1;
	if (!strcmp(key, "net")) {
		Cells__V1__NetMode m;
		if (pol_net_parse(*value, &m) < 0)
			return cells_err_set(err, EINVAL, "net=%s: must be none or nat", *value);
		if (pol_net_rank(m) > pol_net_rank(bounds->net))
			return cells_err_set(err, EPERM,
					     "net=%s is looser than the policy's net=%s (local "
					     "configuration may only tighten)",
					     *value, pol_net_name(bounds->net));
		return 0;
	}
	if (!strncmp(key, "device.", 7)) {
		Cells__V1__AccessMode m;
		if (!pol_device_class_valid(key + 7))
			return cells_err_set(err, EINVAL, "%s: unknown device class", key);
		if (pol_access_parse(*value, &m) < 0)
			return cells_err_set(err, EINVAL,
					     "%s=%s: mode must be no-access, shared or exclusive",
					     key, *value);
		Cells__V1__AccessMode pm = pol_model_device_mode(bounds, key + 7);
		if (pol_access_rank(m) > pol_access_rank(pm))
			return cells_err_set(err, EPERM,
					     "%s=%s is looser than the policy's %s (local "
					     "configuration may only tighten)",
					     key, *value, pol_access_name(pm));
		return 0;
	}
	return cells_err_set(err, EINVAL, "unknown setting '%s' (net, device.CLASS)", key);
}

int policy_set_local(struct cellsd *d, const char *vp, char *const *settings, size_t n,
		     const char *actor, cells_err_t *err)
{
	struct policy_engine *pe = d->pe;
	const struct pol_vp_rule *bounds = policy_vp_bounds(d, vp);
	if (!bounds)
		return cells_err_set(err, ENOENT, "no policy in force names VP %s", vp);
	if (n == 0)
		return cells_err_set(err, EINVAL, "no settings given");
	char key[64];
	const char *val;
	for (size_t i = 0; i < n; i++)
		if (parse_setting(bounds, settings[i], key, sizeof key, &val, err) < 0)
			return -1;
	json_object *det = json_object_new_object();
	json_object *arr = json_object_new_array();
	for (size_t i = 0; i < n; i++)
		json_object_array_add(arr, json_object_new_string(settings[i]));
	json_object_object_add(det, "settings", arr);
	if (cellsd_audit(d, vp, actor, "vp.config", "ok", det, err) < 0) {
		json_object_put(det);
		return cells_err_prefix(err, "vp config refused: audit log");
	}
	json_object_put(det);
	if (sqldb_begin(d->db, err) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		cleanup_stmt sqlite3_stmt *st = NULL;
		parse_setting(bounds, settings[i], key, sizeof key, &val, NULL);
		if (sqldb_prepare(d->db,
				  "INSERT OR REPLACE INTO vp_config(vp, key, value) VALUES(?,?,?)",
				  &st, err) < 0) {
			sqldb_rollback(d->db);
			return -1;
		}
		sqlite3_bind_text(st, 1, vp, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, key, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 3, val, -1, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE) {
			sqldb_err(d->db, "store vp config", err);
			sqldb_rollback(d->db);
			return -1;
		}
	}
	/* apply inside the transaction: a failure rolls back both */
	cleanup_free struct pol_model *eff = make_effective(d, pe->model, err);
	if (!eff || apply_all(d, eff, pe->effective, err) < 0) {
		sqldb_rollback(d->db);
		return cells_err_prefix(err, "vp config %s", vp);
	}
	if (sqldb_commit(d->db, err) < 0) {
		cells_err_t e2;
		if (apply_all(d, pe->effective, eff, &e2) < 0)
			log_error("vp config rollback: %s", e2.msg);
		return -1;
	}
	free(pe->effective);
	pe->effective = steal_pointer(&eff);
	return 0;
}

static const char *compliance_name(int c)
{
	switch (c) {
	case CELLS__V1__COMPLIANCE__COMPLIANT:
		return "compliant";
	case CELLS__V1__COMPLIANCE__NONCOMPLIANT_NO_POLICY:
		return "noncompliant: no policy";
	case CELLS__V1__COMPLIANCE__NONCOMPLIANT_POLICY_EXPIRED:
		return "noncompliant: policy expired";
	case CELLS__V1__COMPLIANCE__NONCOMPLIANT_APPLY_FAILED:
		return "noncompliant: apply failed";
	default:
		return "unknown";
	}
}

json_object *policy_describe(struct cellsd *d)
{
	struct policy_engine *pe = d->pe;
	json_object *o = json_object_new_object();
	json_object_object_add(o, "version", json_object_new_int64((int64_t)policy_version(d)));
	json_object_object_add(o, "accepted_version",
			       json_object_new_int64((int64_t)pe->acc_version));
	json_object_object_add(o, "compliance",
			       json_object_new_string(compliance_name(policy_compliance(d))));
	if (pe->apply_failed)
		json_object_object_add(o, "apply_error", json_object_new_string(pe->apply_error));
	json_object_object_add(o, "device", json_object_new_string(pe->device_id));
	if (pe->have_root) {
		json_object *r = json_object_new_object(), *keys = json_object_new_array();
		for (size_t i = 0; i < pe->root.nkeys; i++) {
			char kid[65];
			kid_hex(pe->root.keys[i], kid);
			json_object_array_add(keys, json_object_new_string(kid));
		}
		json_object_object_add(r, "version",
				       json_object_new_int64((int64_t)pe->root.version));
		json_object_object_add(r, "threshold", json_object_new_int64(pe->root.threshold));
		json_object_object_add(r, "key_ids", keys);
		json_object_object_add(o, "trust_root", r);
	}
	json_object *dl = json_object_new_array();
	for (size_t i = 0; i < pe->ndels; i++) {
		json_object *e = json_object_new_object(), *roles = json_object_new_array();
		char kid[65];
		cells_hex(pe->dels[i].kid, 32, kid);
		if (pe->dels[i].roles & (1u << CELLS__V1__KEY_ROLE__KEY_ROLE_POLICY))
			json_object_array_add(roles, json_object_new_string("policy"));
		if (pe->dels[i].roles & (1u << CELLS__V1__KEY_ROLE__KEY_ROLE_COMMAND))
			json_object_array_add(roles, json_object_new_string("command"));
		json_object_object_add(e, "key_id", json_object_new_string(kid));
		json_object_object_add(e, "roles", roles);
		json_object_object_add(e, "expires_at",
				       json_object_new_int64(pe->dels[i].expires_at));
		json_object_object_add(e, "serial",
				       json_object_new_int64((int64_t)pe->dels[i].serial));
		json_object_array_add(dl, e);
	}
	json_object_object_add(o, "delegations", dl);
	if (pe->policy) {
		json_object_object_add(o, "policy", pol_model_to_json(pe->model));
		json_object_object_add(o, "effective", pol_model_to_json(pe->effective));
		json_object *locked = json_object_new_array();
		for (size_t i = 0; i < pe->model->nvps; i++)
			if (policy_vp_expiry_locked(d, pe->model->vps[i].vp))
				json_object_array_add(locked,
						      json_object_new_string(pe->model->vps[i].vp));
		json_object_object_add(o, "locked_on_expiry", locked);
	}
	return o;
}

int policy_verify_audit_ack(struct cellsd *d, const Cells__V1__Signed *s, Cells__V1__AuditAck **out,
			    cells_err_t *err)
{
	struct policy_engine *pe = d->pe;
	if (!pe || !pe->have_root)
		return cells_err_set(err, EKEYREJECTED, "no trust root is pinned");
	if (!s)
		return cells_err_set(err, EKEYREJECTED, "the Ack carries no signed audit_ack");
	/* kind and size first, then the signature, and only then the payload is parsed */
	if (cells_signed_check(s, CELLS__V1__SIGNED_KIND__SIGNED_AUDIT_ACK, err) < 0 ||
	    pol_signed_by_role(pe->dels, pe->ndels, s, CELLS__V1__KEY_ROLE__KEY_ROLE_COMMAND,
			       time(NULL), err) < 0)
		return cells_err_prefix(err, "audit ack");
	Cells__V1__AuditAck *a =
	    cells__v1__audit_ack__unpack(NULL, s->payload.len, s->payload.data);
	if (!a)
		return cells_err_set(err, EBADMSG, "audit ack is not a valid protobuf message");
	if (!a->device_id || strcmp(a->device_id, pe->device_id)) {
		cells_err_set(err, ENODEV, "audit ack is for device %s, this is device %s",
			      a->device_id ? a->device_id : "", pe->device_id);
		cells__v1__audit_ack__free_unpacked(a, NULL);
		return -1;
	}
	*out = a;
	return 0;
}

const struct pol_model *policy_in_force(struct cellsd *d)
{
	return d->pe ? d->pe->model : NULL;
}

const char *policy_apply_error(struct cellsd *d)
{
	return d->pe && d->pe->apply_failed ? d->pe->apply_error : NULL;
}
