/* password.c - per-VP configuration passwords, persistent throttling, lock at limit. */
#include "password.h"
#include "audit.h"
#include "cjson.h"
#include "cleanup.h"
#include "compliance.h"
#include "cleanup_sqlite.h"
#include "log.h"
#include "pol_password.h"
#include "pol_throttle.h"
#include "policy_engine.h"
#include "sqldb.h"
#include "util.h"
#include "wipe.h"
#include "wipe_key.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const password_schema[] = {
    "CREATE TABLE vp_password(vp TEXT PRIMARY KEY, m_kib INTEGER, t INTEGER, p INTEGER,"
    " salt BLOB, hash BLOB, failures INTEGER NOT NULL DEFAULT 0,"
    " last_failure INTEGER NOT NULL DEFAULT 0, locked INTEGER NOT NULL DEFAULT 0)",
    /* 2: the hash was made with the device secret (STATE_DIR/password.key) */
    "ALTER TABLE vp_password ADD COLUMN peppered INTEGER NOT NULL DEFAULT 0",
};

/* The device secret given to Argon2id (locked memory, loaded by password_init). */
static struct wipe_secret pepper;

/* The monotonic reference of each VP's last failure (CLOCK_BOOTTIME, this process). A
 * failure count loaded from the DB after a restart gets "now" as its reference, so the
 * full wait applies again from the restart; the wall clock is never consulted. */
#define PW_MAX_REFS 64
static struct {
	char vp[40];
	int64_t at_ns;
} refs[PW_MAX_REFS];

static int64_t boot_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The reference of vp; set (to now) when absent or when `reset`. */
static int64_t fail_ref(const char *vp, bool reset)
{
	int free_i = -1;
	for (int i = 0; i < PW_MAX_REFS; i++) {
		if (refs[i].vp[0] && !strcmp(refs[i].vp, vp)) {
			if (reset)
				refs[i].at_ns = boot_ns();
			return refs[i].at_ns;
		}
		if (!refs[i].vp[0] && free_i < 0)
			free_i = i;
	}
	int64_t now = boot_ns();
	if (free_i < 0)
		return now; /* table full: the full wait, never a shorter one */
	snprintf(refs[free_i].vp, sizeof refs[free_i].vp, "%s", vp);
	refs[free_i].at_ns = now;
	return now;
}

/* Load (or create, 32 random bytes, 0600) STATE_DIR/password.key. */
static int pepper_load(const char *state_dir, cells_err_t *err)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/password.key", state_dir);
	if (!pepper.p && wipe_secret_alloc(&pepper, POL_PW_PEPPER_LEN, err) < 0)
		return -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT) {
		if (RAND_priv_bytes(pepper.p, POL_PW_PEPPER_LEN) != 1)
			return cells_err_ssl(err, "password key: RAND_priv_bytes");
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0)
			return cells_err_sys(err, errno, "create %s", path);
		ssize_t w = write(fd, pepper.p, POL_PW_PEPPER_LEN);
		int e = errno;
		if (w != POL_PW_PEPPER_LEN || fdatasync(fd) < 0) {
			close(fd);
			unlink(path);
			return cells_err_sys(err, w < 0 ? e : EIO, "write %s", path);
		}
		close(fd);
		return 0;
	}
	if (fd < 0)
		return cells_err_sys(err, errno, "open %s", path);
	struct stat st;
	ssize_t r = -1;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && !(st.st_mode & 077) &&
	    st.st_size == POL_PW_PEPPER_LEN)
		r = read(fd, pepper.p, POL_PW_PEPPER_LEN);
	close(fd);
	if (r != POL_PW_PEPPER_LEN)
		return cells_err_set(err, EPERM, "%s: not a private %d-byte key file", path,
				     POL_PW_PEPPER_LEN);
	return 0;
}

struct pw_row {
	bool exists, set, locked, peppered;
	struct pol_pw_hash h;
	uint32_t failures;
	int64_t last_failure;
};

/* Compliance: a VP whose rule in the policy in force requires a password, without one. */
static void compliance_source(struct cellsd *d, struct compliance *c)
{
	const struct pol_model *p = policy_in_force(d);
	for (size_t i = 0; p && i < p->nvps; i++) {
		const struct pol_vp_rule *r = &p->vps[i];
		bool set = false, locked = false;
		uint32_t failures = 0, retry = 0;
		if (!r->password_required)
			continue;
		if (password_state(d, r->vp, &set, &failures, &locked, &retry) == 0 && !set)
			compliance_reason_add(c, "password-not-set:%s", r->vp);
	}
}

int password_init(struct cellsd *d, cells_err_t *err)
{
	if (compliance_source_add("password", compliance_source) < 0)
		return cells_err_set(err, ENOSPC, "passwords: compliance sources full");
	if (sqldb_migrate(d->db, "password", password_schema, CELLS_ARRAY_SIZE(password_schema),
			  err) < 0)
		return cells_err_prefix(err, "passwords");
	if (pepper_load(d->state_dir, err) < 0)
		return cells_err_prefix(err, "passwords");
	/* every count of failures waits its full delay again, from now */
	cleanup_stmt sqlite3_stmt *q = NULL;
	if (sqldb_prepare(d->db, "SELECT vp FROM vp_password WHERE failures > 0", &q, err) < 0)
		return cells_err_prefix(err, "passwords");
	while (sqlite3_step(q) == SQLITE_ROW)
		fail_ref((const char *)sqlite3_column_text(q, 0), true);
	return 0;
}

static int load_row(struct cellsd *d, const char *vp, struct pw_row *r, cells_err_t *err)
{
	memset(r, 0, sizeof *r);
	cleanup_stmt sqlite3_stmt *q = NULL;
	if (sqldb_prepare(d->db,
			  "SELECT m_kib, t, p, salt, hash, failures, last_failure, locked, "
			  "peppered FROM vp_password WHERE vp=?",
			  &q, err) < 0)
		return -1;
	sqlite3_bind_text(q, 1, vp, -1, SQLITE_STATIC);
	int rc = sqlite3_step(q);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return sqldb_err(d->db, "password", err);
	r->exists = true;
	if (sqlite3_column_type(q, 4) == SQLITE_BLOB &&
	    sqlite3_column_bytes(q, 4) == POL_PW_HASH_LEN &&
	    sqlite3_column_bytes(q, 3) == POL_PW_SALT_LEN) {
		r->set = true;
		r->h.m_kib = (uint32_t)sqlite3_column_int64(q, 0);
		r->h.t = (uint32_t)sqlite3_column_int64(q, 1);
		r->h.p = (uint32_t)sqlite3_column_int64(q, 2);
		memcpy(r->h.salt, sqlite3_column_blob(q, 3), POL_PW_SALT_LEN);
		memcpy(r->h.hash, sqlite3_column_blob(q, 4), POL_PW_HASH_LEN);
	}
	r->failures = (uint32_t)sqlite3_column_int64(q, 5);
	r->last_failure = sqlite3_column_int64(q, 6);
	r->locked = sqlite3_column_int(q, 7) != 0;
	r->peppered = sqlite3_column_int(q, 8) != 0;
	return 0;
}

static int exec_vp(struct cellsd *d, const char *sql, const char *vp, int64_t a, cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db, sql, &st, err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, vp, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, a);
	if (sqlite3_step(st) != SQLITE_DONE)
		return sqldb_err(d->db, "password state", err);
	return 0;
}

static uint32_t retry_in(const char *vp, const struct pw_row *r)
{
	if (!pol_throttle_delay_s(r->failures))
		return 0;
	return pol_throttle_retry_in(r->failures, boot_ns() - fail_ref(vp, false));
}

int password_state(struct cellsd *d, const char *vp, bool *set, uint32_t *failures, bool *locked,
		   uint32_t *retry_in_s)
{
	struct pw_row r;
	if (load_row(d, vp, &r, NULL) < 0)
		return -1;
	*set = r.set;
	*failures = r.failures;
	*locked = r.locked;
	*retry_in_s = retry_in(vp, &r);
	return 0;
}

void password_limit_reached(struct cellsd *d, const char *vp, bool wipe)
{
	log_warn("VP %s: limit of failed password attempts reached: configuration locked%s", vp,
		 wipe ? ": wiping it, as the policy says" : "");
	cells_err_t e;
	if (wipe && wipe_start(d, vp, "password-limit", true, &e) < 0)
		log_error("VP %s: password-limit wipe: %s (finished at the next start)", vp, e.msg);
}

static void audit_pw(struct cellsd *d, const char *vp, const char *actor, const char *event,
		     const char *outcome, const char *reason, uint32_t failures)
{
	cleanup_json json_object *det = json_object_new_object();
	if (reason)
		json_object_object_add(det, "reason", json_object_new_string(reason));
	json_object_object_add(det, "failures", json_object_new_int64(failures));
	cellsd_audit(d, vp, actor, event, outcome, det, NULL);
}

static int store_hash(struct cellsd *d, const char *vp, const struct pol_pw_hash *h,
		      cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db,
			  "UPDATE vp_password SET m_kib=?, t=?, p=?, salt=?, hash=?, failures=0,"
			  " last_failure=0, peppered=1 WHERE vp=?",
			  &st, err) < 0)
		return -1;
	sqlite3_bind_int64(st, 1, h->m_kib);
	sqlite3_bind_int64(st, 2, h->t);
	sqlite3_bind_int64(st, 3, h->p);
	sqlite3_bind_blob(st, 4, h->salt, sizeof h->salt, SQLITE_TRANSIENT);
	sqlite3_bind_blob(st, 5, h->hash, sizeof h->hash, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 6, vp, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		return sqldb_err(d->db, "store password", err);
	return 0;
}

/* A hash of an older version (no device secret) that just matched: made again with it. */
static int rehash(struct cellsd *d, const char *vp, const uint8_t *pw, size_t len, cells_err_t *err)
{
	struct pol_pw_hash h;
	int rc = pol_pw_hash_new(pw, len, pepper.p, pepper.len, &h, err);
	if (rc == 0)
		rc = store_hash(d, vp, &h, err);
	OPENSSL_cleanse(&h, sizeof h);
	if (rc == 0)
		log_info("VP %s: password hash now bound to the device secret", vp);
	return rc;
}

/* The throttled check of pw against r (r->set). 0 match, -1 refused. */
static int check(struct cellsd *d, const char *vp, struct pw_row *r, const uint8_t *pw, size_t len,
		 const char *actor, cells_err_t *err)
{
	const struct pol_vp_rule *rule = policy_vp_bounds(d, vp);
	int64_t now = time(NULL);
	if (r->locked) {
		cells_err_set(err, EPERM,
			      "VP %s's configuration is locked after %u failed password attempts",
			      vp, r->failures);
		audit_pw(d, vp, actor, "password.check", "refused", err->msg, r->failures);
		return -1;
	}
	uint32_t wait = retry_in(vp, r);
	if (wait) {
		cells_err_set(err, EAGAIN, "too many wrong passwords for VP %s: try again in %u s",
			      vp, wait);
		audit_pw(d, vp, actor, "password.throttled", "refused", err->msg, r->failures);
		return -1;
	}
	/* count the attempt durably before checking it */
	if (exec_vp(d, "UPDATE vp_password SET failures=failures+1, last_failure=?2 WHERE vp=?1",
		    vp, now, err) < 0)
		return cells_err_prefix(err, "password check refused");
	fail_ref(vp, true);
	uint32_t failures = r->failures + 1;
	int ok = pol_pw_check(&r->h, pw, len, r->peppered ? pepper.p : NULL,
			      r->peppered ? pepper.len : 0, err);
	if (ok < 0)
		return -1;
	if (ok && !r->peppered && rehash(d, vp, pw, len, err) < 0)
		return -1;
	if (ok) {
		if (exec_vp(d, "UPDATE vp_password SET failures=0, last_failure=?2 WHERE vp=?1", vp,
			    0, err) < 0)
			return -1;
		r->failures = 0;
		return 0;
	}
	uint32_t max = rule ? rule->max_failed_attempts : 0;
	if (max && failures >= max) {
		if (exec_vp(d, "UPDATE vp_password SET locked=?2 WHERE vp=?1", vp, 1, err) < 0)
			return -1;
		audit_pw(d, vp, actor, "password.limit", "locked", "limit of failed attempts",
			 failures);
		password_limit_reached(d, vp, rule->wipe_on_limit);
		return cells_err_set(err, EACCES,
				     "wrong password for VP %s: %u failed attempts, the limit: "
				     "configuration locked",
				     vp, failures);
	}
	audit_pw(d, vp, actor, "password.failed", "refused", "wrong password", failures);
	uint32_t next = pol_throttle_delay_s(failures);
	if (next)
		return cells_err_set(err, EACCES,
				     "wrong password for VP %s (%u failed attempts; next try in "
				     "%u s)",
				     vp, failures, next);
	return cells_err_set(err, EACCES, "wrong password for VP %s (%u failed attempts)", vp,
			     failures);
}

int password_unlock(struct cellsd *d, const char *vp, const char *actor, cells_err_t *err)
{
	cleanup_json json_object *det = json_object_new_object();
	int a = cellsd_audit(d, vp, actor, "password.unlock", "ok", det, err);
	if (a < 0)
		return cells_err_prefix(err, "unlock refused: audit log");
	return exec_vp(d,
		       "UPDATE vp_password SET locked=0, failures=0, last_failure=?2 WHERE vp=?1",
		       vp, 0, err);
}

int password_authorize(struct cellsd *d, const char *vp, const uint8_t *pw, size_t len,
		       const char *actor, cells_err_t *err)
{
	const struct pol_vp_rule *rule = policy_vp_bounds(d, vp);
	if (!rule)
		return cells_err_set(err, ENOENT, "no policy in force names VP %s", vp);
	struct pw_row r;
	if (load_row(d, vp, &r, err) < 0)
		return -1;
	if (!r.set) {
		if (rule->password_required)
			return cells_err_set(
			    err, EPERM,
			    "VP %s needs a configuration password first (cellctl vp "
			    "password %s)",
			    vp, vp);
		return 0;
	}
	return check(d, vp, &r, pw, len, actor, err);
}

int password_set(struct cellsd *d, const char *vp, const uint8_t *new_pw, size_t new_len,
		 const uint8_t *old_pw, size_t old_len, const char *actor, cells_err_t *err)
{
	const struct pol_vp_rule *rule = policy_vp_bounds(d, vp);
	if (!rule)
		return cells_err_set(err, ENOENT, "no policy in force names VP %s", vp);
	uint32_t min = rule->password_min_length;
	if (min < 1)
		min = 1;
	if (new_len < min)
		return cells_err_set(err, EINVAL, "the new password is shorter than %u characters",
				     min);
	if (new_len > POL_PW_MAX_LEN)
		return cells_err_set(err, EINVAL, "the new password is longer than %d bytes",
				     POL_PW_MAX_LEN);
	struct pw_row r;
	if (load_row(d, vp, &r, err) < 0)
		return -1;
	if (!r.exists &&
	    exec_vp(d, "INSERT INTO vp_password(vp, failures) VALUES(?1, ?2)", vp, 0, err) < 0)
		return -1;
	if (r.set && check(d, vp, &r, old_pw, old_len, actor, err) < 0)
		return cells_err_prefix(err, "password unchanged");
	struct pol_pw_hash h;
	if (pol_pw_hash_new(new_pw, new_len, pepper.p, pepper.len, &h, err) < 0)
		return -1;
	cleanup_json json_object *det = json_object_new_object();
	json_object_object_add(det, "first", json_object_new_boolean(!r.set));
	int a = cellsd_audit(d, vp, actor, "password.changed", "ok", det, err);
	if (a < 0) {
		OPENSSL_cleanse(&h, sizeof h);
		return cells_err_prefix(err, "password unchanged: audit log");
	}
	int rc = store_hash(d, vp, &h, err);
	OPENSSL_cleanse(&h, sizeof h);
	return rc;
}
