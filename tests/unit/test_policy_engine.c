/* test_policy_engine.c - the agent's policy engine on a real state DB and audit log:
 * trust pin once, TrustUpdate (delegations, root rotation revoking old delegations),
 * install through enforcers with rollback when one fails, the effective policy and
 * policy_vp_rule, signed commands. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "cellsd.h"
#include "cleanup.h"
#include "device_key.h"
#include "enforce.h"
#include "pol_json.h"
#include "pol_sig.h"
#include "policy_engine.h"
#include "sqldb.h"
#include "util.h"

static struct cellsd d;
static char dir[64];
static char dev[DEVICE_ID_LEN + 1];
static EVP_PKEY *root_key, *sign_key, *root2_key;
static char log_buf[1024];
static uint64_t fail_version;

static int enf_log(struct cellsd *dd, const struct pol_model *nw, const struct pol_model *old,
		   cells_err_t *err)
{
	size_t n = strlen(log_buf);
	snprintf(log_buf + n, sizeof log_buf - n, "A%llu<%llu ", (unsigned long long)nw->version,
		 (unsigned long long)old->version);
	return 0;
}

static int enf_fail(struct cellsd *dd, const struct pol_model *nw, const struct pol_model *old,
		    cells_err_t *err)
{
	if (nw->version == fail_version)
		return cells_err_set(err, EIO, "refuses %llu", (unsigned long long)nw->version);
	return 0;
}

static Cells__V1__Signed *delegation_rb(EVP_PKEY *by, EVP_PKEY *k, Cells__V1__KeyRole r0,
					Cells__V1__KeyRole r1, uint64_t serial,
					uint64_t revoke_below)
{
	uint8_t pub[32], buf[512];
	pol_key_raw_public(k, pub, NULL);
	Cells__V1__KeyDelegation del = CELLS__V1__KEY_DELEGATION__INIT;
	Cells__V1__KeyRole roles[2] = {r0, r1};
	del.public_key.data = pub;
	del.public_key.len = 32;
	del.roles = roles;
	del.n_roles = 2;
	del.expires_at = time(NULL) + 3600;
	del.serial = serial;
	del.revoke_below = revoke_below;
	size_t n = cells__v1__key_delegation__pack(&del, buf);
	Cells__V1__Signed *s = calloc(1, sizeof *s);
	cells__v1__signed__init(s);
	assert_int_equal(
	    pol_sign(s, CELLS__V1__SIGNED_KIND__SIGNED_KEY_DELEGATION, buf, n, by, NULL), 0);
	return s;
}

static Cells__V1__Signed *delegation(EVP_PKEY *by, EVP_PKEY *k, Cells__V1__KeyRole r0,
				     Cells__V1__KeyRole r1, uint64_t serial)
{
	return delegation_rb(by, k, r0, r1, serial, 0);
}

static void sfree(Cells__V1__Signed *s)
{
	pol_signed_clear(s);
	free(s);
}

/* A bare Signed policy (no delegations: the engine must already hold them). */
static uint8_t *policy_blob(uint64_t v, const char *camera, size_t *len)
{
	char json[512];
	snprintf(json, sizeof json,
		 "{\"version\": %llu, \"device\": \"%s\", \"vps\": [{\"name\": \"work\", "
		 "\"devices\": {\"camera\": \"%s\"}, \"net\": \"nat\"}]}",
		 (unsigned long long)v, dev, camera);
	uint8_t *p, *out;
	size_t n;
	cells_err_t err;
	if (pol_json_to_policy(json, strlen(json), &p, &n, &err) < 0)
		fail_msg("%s", err.msg);
	Cells__V1__Signed s = CELLS__V1__SIGNED__INIT;
	assert_int_equal(pol_sign(&s, CELLS__V1__SIGNED_KIND__SIGNED_POLICY, p, n, sign_key, NULL),
			 0);
	assert_int_equal(pol_signed_pack(&s, &out, len, NULL), 0);
	pol_signed_clear(&s);
	free(p);
	return out;
}

static int setup(void **state)
{
	snprintf(dir, sizeof dir, "/tmp/cells-pe.XXXXXX");
	assert_non_null(mkdtemp(dir));
	char p[256];
	snprintf(d.state_dir, sizeof d.state_dir, "%s", dir);
	d.state = CELLSD_ST_READY;
	snprintf(p, sizeof p, "%s/state.db", dir);
	assert_int_equal(sqldb_open(p, SQLDB_DURABLE, 5000, &d.db, NULL), 0);
	snprintf(p, sizeof p, "%s/audit.db", dir);
	assert_int_equal(audit_open(p, &d.audit, NULL), 0);
	cells_err_t err;
	assert_int_equal(device_key_load(dir, NULL, dev, &err), 0);
	if (policy_engine_init(&d, &err) < 0)
		fail_msg("%s", err.msg);
	static const struct enforcer e1 = {"log", enf_log}, e2 = {"fail", enf_fail};
	assert_int_equal(enforce_register(&d, &e1, NULL), 0);
	assert_int_equal(enforce_register(&d, &e2, NULL), 0);
	assert_int_equal(policy_engine_start(&d, &err), 0);
	root_key = pol_key_generate(NULL);
	sign_key = pol_key_generate(NULL);
	root2_key = pol_key_generate(NULL);
	return 0;
}

static int teardown(void **state)
{
	policy_engine_free(&d);
	audit_close(d.audit);
	sqlite3_close_v2(d.db);
	cells_rm_rf(dir, NULL);
	EVP_PKEY_free(root_key);
	EVP_PKEY_free(sign_key);
	EVP_PKEY_free(root2_key);
	return 0;
}

static void test_engine(void **state)
{
	cells_err_t err = {0};
	uint8_t rpub[32];
	pol_key_raw_public(root_key, rpub, NULL);
	assert_null(policy_vp_rule(&d, "work"));
	assert_int_equal(policy_compliance(&d), CELLS__V1__COMPLIANCE__NONCOMPLIANT_NO_POLICY);
	assert_int_equal(policy_trust_pin(&d, rpub, 32, "test", &err), 0);
	/* the same root again is a no-op; another root is refused */
	assert_int_equal(policy_trust_pin(&d, rpub, 32, "test", &err), 0);
	uint8_t other[32];
	pol_key_raw_public(root2_key, other, NULL);
	assert_int_equal(policy_trust_pin(&d, other, 32, "test", &err), -1);
	assert_int_equal(err.code, EEXIST);

	/* a bare Signed policy fails until the delegation arrives by TrustUpdate */
	size_t n;
	uint8_t *b1 = policy_blob(1, "exclusive", &n);
	assert_int_equal(policy_install(&d, b1, n, "test", &err), -1);
	assert_non_null(strstr(err.msg, "unknown key"));
	Cells__V1__Signed *del =
	    delegation(root_key, sign_key, CELLS__V1__KEY_ROLE__KEY_ROLE_POLICY,
		       CELLS__V1__KEY_ROLE__KEY_ROLE_COMMAND, 1);
	Cells__V1__Signed *bad =
	    delegation(sign_key, sign_key, CELLS__V1__KEY_ROLE__KEY_ROLE_POLICY,
		       CELLS__V1__KEY_ROLE__KEY_ROLE_POLICY, 1);
	assert_int_equal(policy_trust_update(&d, NULL, 0, &bad, 1, true, "test", &err), -1);
	assert_int_equal(policy_trust_update(&d, NULL, 0, &del, 1, true, "test", &err), 0);
	if (policy_install(&d, b1, n, "test", &err) < 0)
		fail_msg("%s", err.msg);
	assert_string_equal(log_buf, "A1<0 ");
	const struct pol_vp_rule *r = policy_vp_rule(&d, "work");
	assert_non_null(r);
	assert_int_equal(r->devices[0].mode, CELLS__V1__ACCESS_MODE__ACCESS_EXCLUSIVE);

	/* local tightening goes through the enforcers */
	log_buf[0] = 0;
	char *set[] = {"device.camera=shared"};
	assert_int_equal(policy_set_local(&d, "work", set, 1, "test", &err), 0);
	assert_string_equal(log_buf, "A1<1 ");
	assert_int_equal(policy_vp_rule(&d, "work")->devices[0].mode,
			 CELLS__V1__ACCESS_MODE__ACCESS_SHARED);
	assert_int_equal(policy_vp_bounds(&d, "work")->devices[0].mode,
			 CELLS__V1__ACCESS_MODE__ACCESS_EXCLUSIVE);
	char *loose[] = {"net=nat", "device.gps=shared"};
	assert_int_equal(policy_set_local(&d, "work", loose, 2, "test", &err), -1);
	assert_non_null(strstr(err.msg, "looser"));

	/* a failing enforcer: rolled back, version 1 stays in force */
	log_buf[0] = 0;
	fail_version = 2;
	uint8_t *b2 = policy_blob(2, "no-access", &n);
	assert_int_equal(policy_install(&d, b2, n, "test", &err), -1);
	assert_string_equal(log_buf, "A2<1 A1<2 ");
	assert_int_equal(policy_version(&d), 1);
	assert_int_equal(policy_compliance(&d), CELLS__V1__COMPLIANCE__NONCOMPLIANT_APPLY_FAILED);
	fail_version = 0;
	/* re-sending the accepted version retries the apply */
	assert_int_equal(policy_install(&d, b2, n, "test", &err), 0);
	assert_int_equal(policy_version(&d), 2);
	assert_int_equal(policy_compliance(&d), CELLS__V1__COMPLIANCE__COMPLIANT);

	/* commands: verified with the delegated key */
	Cells__V1__Command c = CELLS__V1__COMMAND__INIT;
	Cells__V1__LockVp lk = CELLS__V1__LOCK_VP__INIT;
	lk.vp = "work";
	c.command_id = "c1";
	c.device_id = dev;
	c.expires_at = time(NULL) + 60;
	c.action_case = CELLS__V1__COMMAND__ACTION_LOCK;
	c.lock = &lk;
	uint8_t cb[256];
	size_t cn = cells__v1__command__pack(&c, cb);
	Cells__V1__Signed cs = CELLS__V1__SIGNED__INIT;
	pol_sign(&cs, CELLS__V1__SIGNED_KIND__SIGNED_COMMAND, cb, cn, sign_key, NULL);
	Cells__V1__Command *out = NULL;
	assert_int_equal(policy_verify_command(&d, &cs, &out, &err), 0);
	cells__v1__command__free_unpacked(out, NULL);

	/* root rotation: old delegations are revoked */
	uint8_t r2pub[32], *tb;
	size_t tn;
	pol_key_raw_public(root2_key, r2pub, NULL);
	Cells__V1__TrustRoot tr = CELLS__V1__TRUST_ROOT__INIT;
	ProtobufCBinaryData k = {32, r2pub};
	tr.version = 1;
	tr.root_keys = &k;
	tr.n_root_keys = 1;
	tr.threshold = 1;
	tn = cells__v1__trust_root__get_packed_size(&tr);
	tb = malloc(tn);
	cells__v1__trust_root__pack(&tr, tb);
	Cells__V1__Signed *rot = calloc(1, sizeof *rot);
	cells__v1__signed__init(rot);
	pol_sign(rot, CELLS__V1__SIGNED_KIND__SIGNED_ROOT_ROTATION, tb, tn, root_key, NULL);
	pol_sign(rot, rot->kind, tb, tn, root2_key, NULL);
	assert_int_equal(policy_trust_update(&d, &rot, 1, NULL, 0, true, "test", &err), 0);
	assert_int_equal(policy_verify_command(&d, &cs, &out, &err), -1);
	assert_non_null(strstr(err.msg, "unknown key"));
	/* the new root delegates again */
	Cells__V1__Signed *del2 =
	    delegation(root2_key, sign_key, CELLS__V1__KEY_ROLE__KEY_ROLE_COMMAND,
		       CELLS__V1__KEY_ROLE__KEY_ROLE_COMMAND, 2);
	assert_int_equal(policy_trust_update(&d, NULL, 0, &del2, 1, true, "test", &err), 0);
	assert_int_equal(policy_verify_command(&d, &cs, &out, &err), 0);
	cells__v1__command__free_unpacked(out, NULL);

	/* everything survives a restart of the engine */
	policy_engine_free(&d);
	assert_int_equal(policy_engine_init(&d, &err), 0);
	assert_int_equal(policy_engine_start(&d, &err), 0);
	assert_int_equal(policy_version(&d), 2);
	assert_int_equal(policy_verify_command(&d, &cs, &out, &err), 0);
	cells__v1__command__free_unpacked(out, NULL);
	/* the new root delegated sign_key for commands only: signatures come first */
	assert_int_equal(policy_install(&d, b1, n, "test", &err), -1);
	assert_non_null(strstr(err.msg, "not delegated for the policy role"));

	/* revocation by serial (issue 19): serial 3 of another key with revoke_below 3
	 * drops serial 2, also across a restart; serial 2 offered again is refused, and so
	 * is the same update again (a replay) */
	EVP_PKEY *k3 = pol_key_generate(NULL);
	Cells__V1__Signed *del3 =
	    delegation_rb(root2_key, k3, CELLS__V1__KEY_ROLE__KEY_ROLE_COMMAND,
			  CELLS__V1__KEY_ROLE__KEY_ROLE_COMMAND, 3, 3);
	assert_int_equal(policy_trust_update(&d, NULL, 0, &del3, 1, true, "test", &err), 0);
	assert_int_equal(policy_verify_command(&d, &cs, &out, &err), -1);
	assert_non_null(strstr(err.msg, "unknown key"));
	policy_engine_free(&d);
	assert_int_equal(policy_engine_init(&d, &err), 0);
	assert_int_equal(policy_engine_start(&d, &err), 0);
	assert_int_equal(policy_verify_command(&d, &cs, &out, &err), -1);
	assert_non_null(strstr(err.msg, "unknown key"));
	assert_int_equal(policy_trust_update(&d, NULL, 0, &del2, 1, true, "test", &err), -1);
	assert_non_null(strstr(err.msg, "is revoked"));
	assert_int_equal(policy_trust_update(&d, NULL, 0, &del3, 1, true, "test", &err), -1);
	assert_non_null(strstr(err.msg, "nothing newer"));
	sfree(del3);
	EVP_PKEY_free(k3);

	pol_signed_clear(&cs);
	free(b1);
	free(b2);
	free(tb);
	sfree(del);
	sfree(bad);
	sfree(del2);
	sfree(rot);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_engine, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
