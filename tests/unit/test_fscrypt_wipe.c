/* test_fscrypt_wipe.c - the wipe module's logic with a real state DB, audit log and
 * device key: data-key wrapping (round trip, wrong VP, tampering, KEK file mode), and
 * wipe commands: forged (wrong device, expired, wrong action) and replayed ones do
 * nothing but an audit record; a valid one leaves exactly one receipt that verifies
 * with the device public key. The VP here is unencrypted so this runs without root;
 * the encrypted path is covered by tests/integration/wipe_*.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "cellsd.h"
#include "cleanup_ssl.h"
#include "device_key.h"
#include "pol_sig.h"
#include "statedb.h"
#include "util.h"
#include "wipe.h"
#include "wipe_key.h"

/* cellsd.c is not in the agent library: the same contract, for the test */
int cellsd_audit(struct cellsd *d, const char *vp, const char *actor, const char *event,
		 const char *outcome, struct json_object *details, cells_err_t *err)
{
	return audit_append(d->audit, vp, actor, event, outcome, details, NULL, err);
}

static struct cellsd D;
static char tmp[64];

static int setup(void **state)
{
	(void)state;
	snprintf(tmp, sizeof tmp, "/tmp/cells-wipeu.XXXXXX");
	if (!mkdtemp(tmp))
		return -1;
	snprintf(D.state_dir, sizeof D.state_dir, "%s", tmp);
	snprintf(D.run_dir, sizeof D.run_dir, "%s/run", tmp);
	mkdir(D.run_dir, 0700);
	D.state = CELLSD_ST_READY;
	setenv("CELLS_WIPE_ENCRYPTED_VPS", "", 1);
	char p[PATH_MAX + 16];
	cells_err_t e;
	snprintf(p, sizeof p, "%s/state.db", tmp);
	if (statedb_open(p, &D.db, &e) < 0)
		return -1;
	snprintf(p, sizeof p, "%s/audit.db", tmp);
	if (audit_open(p, &D.audit, &e) < 0 || wipe_init(&D, &e) < 0) {
		fprintf(stderr, "setup: %s\n", e.msg);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	wipe_fini(&D);
	audit_close(D.audit);
	sqlite3_close_v2(D.db);
	cells_rm_rf(tmp, NULL);
	return 0;
}

static long long q(const char *sql)
{
	sqlite3_stmt *st = NULL;
	long long v = -1;
	if (sqlite3_prepare_v2(D.db, sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static long long audit_count(const char *event)
{
	char p[PATH_MAX + 16], sql[128];
	snprintf(p, sizeof p, "%s/audit.db", tmp);
	snprintf(sql, sizeof sql, "SELECT count(*) FROM audit WHERE event='%s'", event);
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	long long v = -1;
	if (sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close_v2(db);
	return v;
}

static void test_key_wrap(void **state)
{
	cells_err_t e;
	struct wipe_secret kek = {0}, key = {0}, back = {0}, other = {0};
	assert_int_equal(wipe_kek_load(tmp, &kek, &e), 0);
	char p[PATH_MAX + 16];
	snprintf(p, sizeof p, "%s/wipe.kek", tmp);
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, WIPE_KEK_LEN);
	/* loading again gives the same KEK */
	struct wipe_secret kek2 = {0};
	assert_int_equal(wipe_kek_load(tmp, &kek2, &e), 0);
	assert_memory_equal(kek.p, kek2.p, WIPE_KEK_LEN);
	wipe_secret_free(&kek2);
	assert_null(kek2.p);

	assert_int_equal(wipe_key_generate(&key, 64, &e), 0);
	uint8_t blob[WIPE_WRAPPED_LEN];
	assert_int_equal(wipe_key_wrap(&kek, "work", &key, blob, &e), 0);
	assert_null(memmem(blob, sizeof blob, key.p, 16)); /* no plaintext in the blob */
	assert_int_equal(wipe_key_unwrap(&kek, "work", blob, sizeof blob, &back, &e), 0);
	assert_memory_equal(back.p, key.p, 64);
	/* bound to the VP name */
	assert_int_equal(wipe_key_unwrap(&kek, "personal", blob, sizeof blob, &other, &e), -1);
	assert_null(other.p);
	/* any bit flipped anywhere is detected */
	for (size_t i = 0; i < sizeof blob; i += 7) {
		blob[i] ^= 0x10;
		assert_int_equal(wipe_key_unwrap(&kek, "work", blob, sizeof blob, &other, &e), -1);
		blob[i] ^= 0x10;
	}
	assert_int_equal(wipe_key_unwrap(&kek, "work", blob, sizeof blob - 1, &other, &e), -1);
	wipe_secret_free(&back);
	wipe_secret_free(&key);
	wipe_secret_free(&kek);
	/* a KEK file readable by others is refused */
	chmod(p, 0644);
	assert_int_equal(wipe_kek_load(tmp, &kek, &e), -1);
	assert_int_equal(e.code, EPERM);
	chmod(p, 0600);
}

static void command(Cells__V1__Command *c, Cells__V1__WipeVp *w, const char *id, const char *dev,
		    const char *vp)
{
	cells__v1__command__init(c);
	cells__v1__wipe_vp__init(w);
	c->command_id = (char *)id;
	c->device_id = (char *)dev;
	c->issued_at = (int64_t)time(NULL);
	c->expires_at = (int64_t)time(NULL) + 3600;
	c->action_case = CELLS__V1__COMMAND__ACTION_WIPE;
	c->wipe = w;
	w->vp = (char *)vp;
}

static void test_wipe_commands(void **state)
{
	cells_err_t e;
	char dev[DEVICE_ID_LEN + 1], dir[PATH_MAX], canary[PATH_MAX + 16];
	assert_int_equal(device_key_load(tmp, NULL, dev, &e), 0);
	assert_false(wipe_vp_encrypted(&D, "scratch"));
	assert_int_equal(wipe_prepare_vp_storage(&D, "scratch", dir, &e), 0);
	snprintf(canary, sizeof canary, "%s/canary", dir);
	fclose(fopen(canary, "w"));

	Cells__V1__Command c;
	Cells__V1__WipeVp w;
	/* forged / invalid: nothing happens but an audit record */
	command(&c, &w, "c-wrongdev", "00000000000000000000000000000000", "scratch");
	assert_int_equal(wipe_cmd(&D, &c, &e), -1);
	command(&c, &w, "c-expired", dev, "scratch");
	c.expires_at = 1000;
	assert_int_equal(wipe_cmd(&D, &c, &e), -1);
	command(&c, &w, "c-badname", dev, "../etc");
	assert_int_equal(wipe_cmd(&D, &c, &e), -1);
	command(&c, &w, "c-lock", dev, "scratch");
	c.action_case = CELLS__V1__COMMAND__ACTION_LOCK;
	assert_int_equal(wipe_cmd(&D, &c, &e), -1);
	assert_int_equal(audit_count("wipe.rejected"), 4);
	assert_int_equal(q("SELECT count(*) FROM wipe_ops"), 0);
	assert_int_equal(access(canary, F_OK), 0);

	/* the real one */
	command(&c, &w, "c-1", dev, "scratch");
	assert_int_equal(wipe_cmd(&D, &c, &e), 0);
	assert_int_equal(access(dir, F_OK), -1);
	assert_int_equal(q("SELECT count(*) FROM wipe_ops WHERE state='done'"), 1);
	assert_int_equal(q("SELECT count(*) FROM wipe_receipts"), 1);
	assert_int_equal(audit_count("wipe.step"), 7);

	/* a replay is acknowledged and does nothing: new data survives it */
	assert_int_equal(wipe_prepare_vp_storage(&D, "scratch", dir, &e), 0);
	fclose(fopen(canary, "w"));
	assert_int_equal(wipe_cmd(&D, &c, &e), 0);
	assert_int_equal(access(canary, F_OK), 0);
	assert_int_equal(q("SELECT count(*) FROM wipe_ops"), 1);
	assert_int_equal(q("SELECT count(*) FROM wipe_receipts"), 1);
	assert_int_equal(audit_count("wipe.replayed"), 1);
	assert_int_equal(audit_count("wipe.step"), 7);

	/* the receipt verifies with the device public key and says what happened */
	sqlite3_stmt *st = NULL;
	assert_int_equal(
	    sqlite3_prepare_v2(D.db, "SELECT signed FROM wipe_receipts", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	Cells__V1__Signed *s = NULL;
	assert_int_equal(cells_signed_decode(sqlite3_column_blob(st, 0),
					     (size_t)sqlite3_column_bytes(st, 0), &s, &e),
			 0);
	sqlite3_finalize(st);
	cleanup_pkey EVP_PKEY *key = NULL;
	assert_int_equal(device_key_load(tmp, &key, dev, &e), 0);
	uint8_t pub[POL_PUBKEY_LEN], kid[POL_KEYID_LEN];
	assert_int_equal(pol_key_raw_public(key, pub, &e), 0);
	pol_key_id(pub, kid);
	assert_int_equal(s->kind, CELLS__V1__SIGNED_KIND__SIGNED_WIPE_RECEIPT);
	assert_int_equal(s->n_signatures, 1);
	assert_memory_equal(s->signatures[0]->key_id.data, kid, POL_KEYID_LEN);
	assert_int_equal(pol_verify_raw(pub, s->kind, s->payload.data, s->payload.len,
					s->signatures[0]->signature.data, &e),
			 0);
	s->payload.data[0] ^= 1;
	assert_int_equal(pol_verify_raw(pub, s->kind, s->payload.data, s->payload.len,
					s->signatures[0]->signature.data, &e),
			 -1);
	s->payload.data[0] ^= 1;
	Cells__V1__WipeReceipt *r =
	    cells__v1__wipe_receipt__unpack(NULL, s->payload.len, s->payload.data);
	assert_non_null(r);
	assert_string_equal(r->vp, "scratch");
	assert_string_equal(r->command_id, "c-1");
	assert_string_equal(r->device_id, dev);
	assert_int_equal(r->key_status, CELLS__V1__KEY_STATUS__KEY_NOT_ENCRYPTED);
	assert_false(r->recreated);
	assert_int_equal(r->n_steps, 6);
	cells__v1__wipe_receipt__free_unpacked(r, NULL);
	cells__v1__signed__free_unpacked(s, NULL);

	/* acknowledgement: once */
	assert_int_equal(wipe_receipt_acked(&D, "c-1", &e), 1);
	assert_int_equal(wipe_receipt_acked(&D, "c-1", &e), 0);

	/* the password-limit trigger, recreating */
	assert_int_equal(wipe_start(&D, "scratch", "password-limit", true, &e), 0);
	assert_int_equal(q("SELECT count(*) FROM wipe_ops WHERE command_id LIKE 'password-limit:%'"
			   " AND actor='password-limit' AND state='done'"),
			 1);
	assert_int_equal(access(canary, F_OK), -1);
	assert_int_equal(access(dir, F_OK), 0); /* recreated, empty */
	json_object *j = json_object_new_object();
	assert_int_equal(wipe_status_json(&D, "scratch", j, &e), 0);
	assert_int_equal(json_object_array_length(json_object_object_get(j, "ops")), 2);
	json_object_put(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_key_wrap),
	    cmocka_unit_test(test_wipe_commands),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
