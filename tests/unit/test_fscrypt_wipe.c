/* test_fscrypt_wipe.c - the wipe module's logic with a real state DB, audit log and
 * device key: data-key wrapping (round trip, wrong VP, tampering, KEK file mode), and
 * wipe commands: forged (wrong device, expired, wrong action) and replayed ones do
 * nothing but an audit record; a valid one leaves exactly one receipt that verifies
 * with the device public key. The VP here is unencrypted so this runs without root;
 * the encrypted path is covered by tests/integration/wipe_*.sh, and here by
 * test_storage_lock (root and loop devices; a failure when CI=true and it cannot run).
 * Also: the KEK rotation (old KEK overwritten in place, surviving keys rewrapped) and
 * the receipt's measured method and counts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_skip.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
#include "sqldb.h"
#include "util.h"
#include "wipe.h"
#include "wipe_key.h"

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
	if (wipe_set_default_encrypted("", NULL) < 0)
		return -1;
	setenv("CELLS_WIPE_STORAGE", "image", 1);
	setenv("CELLS_WIPE_IMAGE_MB", "64", 1);
	char p[PATH_MAX + 16];
	cells_err_t e;
	snprintf(p, sizeof p, "%s/state.db", tmp);
	if (sqldb_open(p, SQLDB_DURABLE, 5000, &D.db, &e) < 0)
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

/* Does file p contain the n bytes b? */
static bool file_has(const char *p, const void *b, size_t n)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	cells_err_t e;
	if (cells_read_file(p, 1 << 20, &buf, &len, &e) < 0)
		return false;
	bool found = memmem(buf, len, b, n) != NULL;
	free(buf);
	return found;
}

static void test_key_wrap(void **state)
{
	cells_err_t e;
	struct wipe_kek k = {0}, k2 = {0};
	struct wipe_secret key = {0}, back = {0}, other = {0};
	assert_int_equal(wipe_kek_open(tmp, &k, &e), 0);
	char p[PATH_MAX + 16];
	snprintf(p, sizeof p, "%s/wipe.kek", tmp);
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, WIPE_KEK_FILE_LEN);
	uint64_t gen = 0;
	const struct wipe_secret *kek = wipe_kek_get(&k, 0, &gen);
	assert_non_null(kek);
	assert_int_equal(gen, 1);
	/* loading again gives the same KEK */
	assert_int_equal(wipe_kek_open(tmp, &k2, &e), 0);
	assert_memory_equal(kek->p, wipe_kek_get(&k2, 0, NULL)->p, WIPE_KEK_LEN);
	wipe_kek_free(&k2);
	assert_null(k2.key[0].p);

	assert_int_equal(wipe_key_generate(&key, 64, &e), 0);
	uint8_t blob[WIPE_WRAPPED_LEN];
	assert_int_equal(wipe_key_wrap(kek, "work", &key, blob, &e), 0);
	assert_null(memmem(blob, sizeof blob, key.p, 16)); /* no plaintext in the blob */
	assert_int_equal(wipe_key_unwrap(kek, "work", blob, sizeof blob, &back, &e), 0);
	assert_memory_equal(back.p, key.p, 64);
	wipe_secret_free(&back);
	/* bound to the VP name */
	assert_int_equal(wipe_key_unwrap(kek, "personal", blob, sizeof blob, &other, &e), -1);
	assert_null(other.p);
	/* any bit flipped anywhere is detected */
	for (size_t i = 0; i < sizeof blob; i += 7) {
		blob[i] ^= 0x10;
		assert_int_equal(wipe_key_unwrap(kek, "work", blob, sizeof blob, &other, &e), -1);
		blob[i] ^= 0x10;
	}
	assert_int_equal(wipe_key_unwrap(kek, "work", blob, sizeof blob - 1, &other, &e), -1);

	/* rotation: the surviving slot is rewrapped under a fresh KEK; the old KEK and the
	 * old blob are in neither file any more; the key itself is unchanged */
	struct wipe_slot s = {.used = true, .gen = 1};
	snprintf(s.vp, sizeof s.vp, "work");
	memcpy(s.wrapped, blob, sizeof blob);
	assert_int_equal(wipe_slot_write(tmp, 3, &s, &e), 0);
	char sp[PATH_MAX + 16];
	snprintf(sp, sizeof sp, "%s/wipe.slots", tmp);
	assert_int_equal(stat(sp, &st), 0);
	assert_int_equal(st.st_size, WIPE_SLOTS * WIPE_SLOT_SIZE);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_true(file_has(p, kek->p, WIPE_KEK_LEN)); /* controls */
	assert_true(file_has(sp, blob, sizeof blob));
	ino_t ino_kek = 0, ino_slots = st.st_ino;
	assert_int_equal(stat(p, &st), 0);
	ino_kek = st.st_ino;
	int n = -1;
	assert_int_equal(wipe_kek_rotate(tmp, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_false(file_has(p, kek->p, WIPE_KEK_LEN));
	assert_false(file_has(sp, blob, sizeof blob));
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_ino, ino_kek); /* overwritten in place, not replaced */
	assert_int_equal(st.st_size, WIPE_KEK_FILE_LEN);
	assert_int_equal(stat(sp, &st), 0);
	assert_int_equal(st.st_ino, ino_slots);
	assert_int_equal(wipe_kek_open(tmp, &k2, &e), 0);
	assert_null(wipe_kek_get(&k2, 1, NULL)); /* generation 1 is gone */
	const struct wipe_secret *kek2 = wipe_kek_get(&k2, 0, &gen);
	assert_int_equal(gen, 2);
	struct wipe_slot slots[WIPE_SLOTS];
	assert_int_equal(wipe_slots_read(tmp, slots, &e), 0);
	assert_int_equal(wipe_slot_find(slots, "work"), 3);
	assert_int_equal(slots[3].gen, 2);
	assert_int_equal(
	    wipe_key_unwrap(kek2, "work", slots[3].wrapped, WIPE_WRAPPED_LEN, &back, &e), 0);
	assert_memory_equal(back.p, key.p, 64);
	wipe_secret_free(&back);
	/* a rotation interrupted after the new KEK was written (slot still on generation 2,
	 * a generation 3 entry present) is finished by the next one */
	uint8_t ent[WIPE_KEK_ENTRY_LEN] = {3};
	int fd = open(p, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	int lo = k2.gen[0] == 2 ? 1 : 0;
	assert_int_equal(pwrite(fd, ent, sizeof ent, lo * WIPE_KEK_ENTRY_LEN), sizeof ent);
	close(fd);
	assert_int_equal(wipe_kek_rotate(tmp, &n, &e), 0);
	assert_int_equal(n, 2);
	wipe_kek_free(&k2);
	assert_int_equal(wipe_kek_open(tmp, &k2, &e), 0);
	kek2 = wipe_kek_get(&k2, 0, &gen);
	assert_int_equal(gen, 4);
	assert_int_equal(wipe_slots_read(tmp, slots, &e), 0);
	assert_int_equal(
	    wipe_key_unwrap(kek2, "work", slots[3].wrapped, WIPE_WRAPPED_LEN, &back, &e), 0);
	assert_memory_equal(back.p, key.p, 64);
	wipe_secret_free(&back);
	wipe_kek_free(&k2);
	assert_int_equal(wipe_slot_write(tmp, 3, NULL, &e), 0);
	assert_int_equal(wipe_slots_read(tmp, slots, &e), 0);
	assert_int_equal(wipe_slot_find(slots, "work"), -1);

	wipe_secret_free(&key);
	wipe_kek_free(&k);
	/* a KEK file readable by others is refused */
	chmod(p, 0644);
	assert_int_equal(wipe_kek_open(tmp, &k, &e), -1);
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
	FILE *cf = fopen(canary, "w");
	fputs("hello", cf);
	fclose(cf);

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
	assert_int_equal(audit_count("wipe.step"), 8);

	/* a replay is acknowledged and does nothing: new data survives it */
	assert_int_equal(wipe_prepare_vp_storage(&D, "scratch", dir, &e), 0);
	fclose(fopen(canary, "w"));
	assert_int_equal(wipe_cmd(&D, &c, &e), 0);
	assert_int_equal(access(canary, F_OK), 0);
	assert_int_equal(q("SELECT count(*) FROM wipe_ops"), 1);
	assert_int_equal(q("SELECT count(*) FROM wipe_receipts"), 1);
	assert_int_equal(audit_count("wipe.replayed"), 1);
	assert_int_equal(audit_count("wipe.step"), 8);

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
	assert_int_equal(r->n_steps, 7);
	/* what was removed, as measured: the directory and the 5-byte canary */
	assert_string_equal(r->method, "delete");
	assert_int_equal(r->files_removed, 2);
	assert_int_equal(r->bytes_removed, 5);
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

	/* a VP without data: the receipt says so */
	assert_int_equal(wipe_start(&D, "nodata", "local", false, &e), 0);
	assert_int_equal(q("SELECT count(*) FROM wipe_ops WHERE vp='nodata' AND state='done' AND "
			   "files_removed=0"),
			 1);
	j = json_object_new_object();
	assert_int_equal(wipe_status_json(&D, "nodata", j, &e), 0);
	json_object *op0 = json_object_array_get_idx(json_object_object_get(j, "ops"), 0);
	assert_string_equal(json_object_get_string(json_object_object_get(op0, "method")),
			    "nothing");
	json_object_put(j);
}

/* A privileged test that cannot run: skipped, or failed under CI=true. */
#define NEED_ROOT()                                                                                \
	do {                                                                                       \
		if (geteuid() != 0 || access("/dev/loop-control", F_OK) < 0) {                     \
			SKIP_OR_FAIL("needs root and loop devices");                               \
		}                                                                                  \
	} while (0)

/* wipe_vp_storage_lock: the key leaves the kernel, the files are ciphertext (encrypted
 * names; ENOKEY on open), the wrapped key stays; wipe_prepare_vp_storage unlocks. */
static void test_storage_lock(void **state)
{
	NEED_ROOT();
	cells_err_t e;
	char dir[PATH_MAX], f[PATH_MAX + 32];
	assert_int_equal(wipe_set_encrypted(&D, "enc", true, &e), 0);
	assert_int_equal(wipe_prepare_vp_storage(&D, "enc", dir, &e), 0);
	snprintf(f, sizeof f, "%s/secret-name.txt", dir);
	FILE *fp = fopen(f, "w");
	assert_non_null(fp);
	fputs("secret-content", fp);
	fclose(fp);
	assert_int_equal(wipe_vp_storage_lock(&D, "enc", true, &e), 0);
	/* seen from outside: the plaintext name is gone, the entry's name is encrypted and
	 * opening it fails with ENOKEY */
	assert_int_equal(access(f, F_OK), -1);
	DIR *dp = opendir(dir);
	assert_non_null(dp);
	struct dirent *de;
	int entries = 0;
	while ((de = readdir(dp))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		entries++;
		assert_null(strstr(de->d_name, "secret"));
		char g[PATH_MAX + 300];
		snprintf(g, sizeof g, "%s/%s", dir, de->d_name);
		errno = 0;
		assert_int_equal(open(g, O_RDONLY | O_CLOEXEC), -1);
		assert_int_equal(errno, ENOKEY);
	}
	closedir(dp);
	assert_int_equal(entries, 1);
	assert_true(wipe_vp_has_storage(&D, "enc")); /* the wrapped key stays */
	/* unlock: readable again */
	assert_int_equal(wipe_prepare_vp_storage(&D, "enc", dir, &e), 0);
	uint8_t *buf = NULL;
	size_t n = 0;
	assert_int_equal(cells_read_file(f, 1024, &buf, &n, &e), 0);
	assert_int_equal(n, 14);
	assert_memory_equal(buf, "secret-content", 14);
	free(buf);
	/* locking a VP without encrypted storage does nothing */
	assert_int_equal(wipe_vp_storage_lock(&D, "scratch", true, &e), 0);
	/* the wipe of an encrypted VP is a crypto-erase */
	assert_int_equal(wipe_start(&D, "enc", "local", false, &e), 0);
	json_object *j = json_object_new_object();
	assert_int_equal(wipe_status_json(&D, "enc", j, &e), 0);
	json_object *op0 = json_object_array_get_idx(json_object_object_get(j, "ops"), 0);
	assert_string_equal(json_object_get_string(json_object_object_get(op0, "method")),
			    "crypto-erase");
	json_object_put(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_key_wrap),
	    cmocka_unit_test(test_wipe_commands),
	    cmocka_unit_test(test_storage_lock),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
