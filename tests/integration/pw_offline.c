/* pw_offline - what an attacker with a copy of state.db can do offline: recompute a VP's
 * stored Argon2id password hash from a guess.
 *   pw_offline check DB VP PASSWORD_FILE [PEPPER_FILE]
 *       exit 0 when the guess matches the stored hash, 1 when not, 2 on error
 *   pw_offline legacy DB VP PASSWORD_FILE
 *       rewrite VP's row as an older version stored it (Argon2id without the device
 *       secret, peppered=0), to test the migration
 * (tests/integration/policy_password.sh) */
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "pol_password.h"
#include "util.h"

static int read_small(const char *p, uint8_t *buf, size_t cap, size_t *n, int strip_nl)
{
	FILE *f = fopen(p, "rb");
	if (!f)
		return -1;
	*n = fread(buf, 1, cap, f);
	fclose(f);
	if (strip_nl && *n && buf[*n - 1] == '\n')
		(*n)--;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr,
			"usage: pw_offline check|legacy DB VP PASSWORD_FILE [PEPPER_FILE]\n");
		return 2;
	}
	uint8_t pw[1024], pep[64];
	size_t pwn = 0, pepn = 0;
	if (read_small(argv[4], pw, sizeof pw, &pwn, 1) < 0 ||
	    (argc > 5 && read_small(argv[5], pep, sizeof pep, &pepn, 0) < 0)) {
		fprintf(stderr, "pw_offline: cannot read the password or pepper file\n");
		return 2;
	}
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	if (sqlite3_open(argv[2], &db) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT m_kib, t, p, salt, hash FROM vp_password WHERE vp=?", -1,
			       &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "pw_offline: %s\n", sqlite3_errmsg(db));
		return 2;
	}
	sqlite3_bind_text(st, 1, argv[3], -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_ROW || sqlite3_column_bytes(st, 3) != POL_PW_SALT_LEN ||
	    sqlite3_column_bytes(st, 4) != POL_PW_HASH_LEN) {
		fprintf(stderr, "pw_offline: no password row for %s\n", argv[3]);
		return 2;
	}
	struct pol_pw_hash h = {.m_kib = (uint32_t)sqlite3_column_int64(st, 0),
				.t = (uint32_t)sqlite3_column_int64(st, 1),
				.p = (uint32_t)sqlite3_column_int64(st, 2)};
	memcpy(h.salt, sqlite3_column_blob(st, 3), POL_PW_SALT_LEN);
	memcpy(h.hash, sqlite3_column_blob(st, 4), POL_PW_HASH_LEN);
	sqlite3_finalize(st);
	cells_err_t err;
	if (!strcmp(argv[1], "check")) {
		int ok = pol_pw_check(&h, pw, pwn, pepn ? pep : NULL, pepn, &err);
		sqlite3_close(db);
		if (ok < 0) {
			fprintf(stderr, "pw_offline: %s\n", err.msg);
			return 2;
		}
		printf("%s\n", ok ? "match" : "mismatch");
		return ok ? 0 : 1;
	}
	if (strcmp(argv[1], "legacy") || pol_pw_hash_new(pw, pwn, NULL, 0, &h, &err) < 0)
		return 2;
	if (sqlite3_prepare_v2(db, "UPDATE vp_password SET salt=?, hash=?, peppered=0 WHERE vp=?",
			       -1, &st, NULL) != SQLITE_OK)
		return 2;
	sqlite3_bind_blob(st, 1, h.salt, POL_PW_SALT_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, h.hash, POL_PW_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, argv[3], -1, SQLITE_STATIC);
	int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : 2;
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}
