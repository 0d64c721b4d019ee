/* wipe.c - encrypted VP storage and the wipe state machine (see wipe.h). */
#include "wipe.h"
#include "audit.h"
#include "testhook.h"
#include "cleanup.h"
#include "compliance.h"
#include "cleanup_sqlite.h"
#include "cleanup_ssl.h"
#include "device_key.h"
#include "fscrypt.h"
#include "knsrun.h"
#include "log.h"
#include "loopdev.h"
#include "outbox.h"
#include "pol_sig.h"
#include "policy_engine.h"
#include "sqldb.h"
#include "util.h"
#include "vpm.h"
#include "wipe_key.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct wipe {
	struct wipe_vp_hooks hooks;
	const char *in_command; /* the command id wipe_cmd_result is answering (borrowed) */
};

enum {
	STEP_INTENT,
	STEP_STOP,
	STEP_REMOVE_KEY,
	STEP_DESTROY_WRAPPED,
	STEP_ROTATE_KEK,
	STEP_DELETE_DATA,
	STEP_RECREATE,
	STEP_RECEIPT,
	STEP_COUNT,
};

static const char *const step_names[STEP_COUNT] = {
    "intent",	  "stop",	 "remove-key", "destroy-wrapped-key",
    "rotate-kek", "delete-data", "recreate",   "receipt",
};

static const char *const migrations[] = {
    "CREATE TABLE wipe_keys(vp TEXT PRIMARY KEY, wrapped BLOB NOT NULL, key_id BLOB NOT NULL,"
    " created_us INTEGER NOT NULL);"
    "CREATE TABLE wipe_vps(vp TEXT PRIMARY KEY, encrypted INTEGER NOT NULL);"
    "CREATE TABLE wipe_config(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE wipe_ops(id INTEGER PRIMARY KEY, command_id TEXT NOT NULL UNIQUE,"
    " vp TEXT NOT NULL, actor TEXT NOT NULL, recreate INTEGER NOT NULL,"
    " encrypted INTEGER NOT NULL, key_id BLOB, step INTEGER NOT NULL DEFAULT 0,"
    " state TEXT NOT NULL, key_status INTEGER NOT NULL DEFAULT 0,"
    " key_destroyed INTEGER NOT NULL DEFAULT 0, started_us INTEGER NOT NULL,"
    " finished_us INTEGER, error TEXT);"
    "CREATE TABLE wipe_receipts(op_id INTEGER PRIMARY KEY REFERENCES wipe_ops(id),"
    " command_id TEXT NOT NULL UNIQUE, vp TEXT NOT NULL, signed BLOB NOT NULL,"
    " created_us INTEGER NOT NULL, acked_us INTEGER);",
    /* 2: what the delete step measured (counted before anything is removed, so that a
     * crash in the middle of the removal does not lose the figures) */
    "ALTER TABLE wipe_ops ADD COLUMN counted INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE wipe_ops ADD COLUMN files_removed INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE wipe_ops ADD COLUMN bytes_removed INTEGER NOT NULL DEFAULT 0;",
};

/* VPs encrypted when neither `vp create --encrypted` nor the policy says
 * (cellsd --encrypted-vps). */
static char default_encrypted[512] = "work";

/* cellsd --wipe-storage / --wipe-image-mb (wipe_option): fixed at first use per state dir */
static char storage_pref[8] = "auto";
static unsigned image_mb = 4096;

int wipe_option(const char *name, const char *value, cells_err_t *err)
{
	if (!strcmp(name, "wipe-storage")) {
		if (strcmp(value, "auto") && strcmp(value, "image") && strcmp(value, "host"))
			return cells_err_set(err, EINVAL,
					     "--wipe-storage %s: want auto, image or host", value);
		snprintf(storage_pref, sizeof storage_pref, "%s", value);
		return 0;
	}
	if (!strcmp(name, "wipe-image-mb")) {
		char *end;
		unsigned long v = strtoul(value, &end, 10);
		if (!*value || *end || v < 16 || v > (1ul << 20))
			return cells_err_set(err, EINVAL, "--wipe-image-mb %s: want 16..1048576",
					     value);
		image_mb = (unsigned)v;
		return 0;
	}
	if (!strcmp(name, "encrypted-vps"))
		return wipe_set_default_encrypted(value, err);
	return cells_err_set(err, EINVAL, "unknown wipe option --%s", name);
}

int wipe_set_default_encrypted(const char *list, cells_err_t *err)
{
	if (strlen(list) >= sizeof default_encrypted)
		return cells_err_set(err, EINVAL, "list too long");
	char copy[sizeof default_encrypted];
	snprintf(copy, sizeof copy, "%s", list);
	char *save = NULL;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
		if (cells_valid_name(t, err) < 0)
			return -1;
	snprintf(default_encrypted, sizeof default_encrypted, "%s", list);
	return 0;
}

/* ---- small helpers ---------------------------------------------------------------- */

/* A test build's crash point after each step (testhook.h: --test-crash-at wipe-step-N). */
static void crash_point(int step)
{
	char where[32];
	snprintf(where, sizeof where, "wipe-step-%d", step);
	testhook_point(where);
}

static int config_get(struct cellsd *d, const char *key, char *out, size_t cap)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db, "SELECT value FROM wipe_config WHERE key=?", &st, NULL) < 0)
		return -1;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_ROW)
		return 0;
	snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
	return 1;
}

static int config_set(struct cellsd *d, const char *key, const char *value, cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db, "INSERT OR REPLACE INTO wipe_config(key,value) VALUES(?,?)", &st,
			  err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		return sqldb_err(d->db, "wipe config", err);
	return 0;
}

static int audit_step(struct cellsd *d, const char *vp, const char *actor, int64_t op,
		      const char *command_id, const char *event, const char *step,
		      const char *outcome, const char *detail, cells_err_t *err)
{
	json_object *j = json_object_new_object();
	json_object_object_add(j, "op", json_object_new_int64(op));
	json_object_object_add(j, "command_id", json_object_new_string(command_id));
	if (step)
		json_object_object_add(j, "step", json_object_new_string(step));
	if (detail)
		json_object_object_add(j, "detail", json_object_new_string(detail));
	int rc = cellsd_audit(d, vp, actor, event, outcome, j, err);
	json_object_put(j);
	return rc;
}

/* ---- storage ---------------------------------------------------------------------- */

/* "image" or "host", fixed at first use. */
static int storage_mode(struct cellsd *d, char mode[16], cells_err_t *err)
{
	if (config_get(d, "storage", mode, 16) == 1)
		return 0;
	const char *want = storage_pref;
	if (!strcmp(want, "auto")) {
		cleanup_close int fd = open(d->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			return cells_err_sys(err, errno, "open %s", d->state_dir);
		int s = fscrypt_fs_supported(fd, err);
		if (s < 0)
			return -1;
		want = s ? "host" : "image";
	}
	snprintf(mode, 16, "%s", want);
	return config_set(d, "storage", mode, err);
}

static void image_path(struct cellsd *d, char out[PATH_MAX])
{
	snprintf(out, PATH_MAX, "%s/wipe/vpdata.img", d->state_dir);
}

/* STATE/vp/NAME/{upper,work}: where an older version kept an unencrypted VP's data. */
static void legacy_dir(struct cellsd *d, const char *vp, const char *what, char out[PATH_MAX])
{
	snprintf(out, PATH_MAX, "%s/vp/%s/%s", d->state_dir, vp, what);
}

/* The encrypted area's root directory, mounted if needed; returns an O_DIRECTORY fd. */
static int area_open(struct cellsd *d, char root[PATH_MAX], cells_err_t *err)
{
	char mode[16], p[PATH_MAX];
	if (storage_mode(d, mode, err) < 0)
		return -1;
	if (!strcmp(mode, "host")) {
		snprintf(root, PATH_MAX, "%s/wipe/data", d->state_dir);
		if (cells_mkdir_p(root, 0700, err) < 0)
			return -1;
	} else {
		snprintf(root, PATH_MAX, "%s/wipe/mnt", d->run_dir);
		if (cells_mkdir_p(root, 0700, err) < 0)
			return -1;
		if (!loopdev_is_mountpoint(root)) {
			image_path(d, p);
			if (access(p, F_OK) < 0) {
				uint64_t size = (uint64_t)image_mb << 20;
				char dir[PATH_MAX];
				snprintf(dir, sizeof dir, "%s/wipe", d->state_dir);
				if (cells_mkdir_p(dir, 0700, err) < 0 ||
				    loopdev_make_ext4_image(p, size, err) < 0)
					return -1;
			}
			if (loopdev_mount_image(p, root, err) < 0)
				return -1;
			log_info("wipe: mounted %s on %s", p, root);
		}
	}
	int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return cells_err_sys(err, errno, "open %s", root);
	int s = fscrypt_fs_supported(fd, err);
	if (s <= 0) {
		close(fd);
		return s < 0 ? -1 : cells_err_set(err, EOPNOTSUPP, "%s cannot encrypt", root);
	}
	return fd;
}

static int key_row(struct cellsd *d, const char *vp, uint8_t wrapped[WIPE_WRAPPED_LEN],
		   uint8_t id[FSCRYPT_IDENTIFIER_LEN], cells_err_t *err);

/* Sticky once storage exists: a VP with a stored key stays encrypted whatever a later
 * policy says. Else: wipe_vps (vp create --encrypted), the policy's rule, the default. */
bool wipe_vp_encrypted(struct cellsd *d, const char *vp)
{
	if (key_row(d, vp, NULL, NULL, NULL) == 1)
		return true;
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db, "SELECT encrypted FROM wipe_vps WHERE vp=?", &st, NULL) == 0) {
		sqlite3_bind_text(st, 1, vp, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			return sqlite3_column_int(st, 0) != 0;
	}
	const struct pol_vp_rule *rule = d->pe ? policy_vp_rule(d, vp) : NULL;
	if (rule)
		return rule->encrypted;
	const char *list = default_encrypted;
	size_t n = strlen(vp);
	for (const char *p = list; *p;) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == n && !strncmp(p, vp, n))
			return true;
		p += l + (e ? 1 : 0);
	}
	return false;
}

int wipe_set_encrypted(struct cellsd *d, const char *vp, bool encrypted, cells_err_t *err)
{
	if (cells_valid_name(vp, err) < 0)
		return -1;
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db, "INSERT OR REPLACE INTO wipe_vps(vp,encrypted) VALUES(?,?)", &st,
			  err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, vp, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, encrypted);
	if (sqlite3_step(st) != SQLITE_DONE)
		return sqldb_err(d->db, "wipe vps", err);
	return 0;
}

bool wipe_vp_has_storage(struct cellsd *d, const char *vp)
{
	if (!d->wipe)
		return false;
	if (key_row(d, vp, NULL, NULL, NULL) == 1)
		return true;
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s/vpdata/%s", d->state_dir, vp);
	if (access(p, F_OK) == 0)
		return true;
	legacy_dir(d, vp, "upper", p);
	if (access(p, F_OK) == 0)
		return true;
	legacy_dir(d, vp, "work", p);
	return access(p, F_OK) == 0;
}

/* The key slot of vp (STATE_DIR/wipe.slots): 1 found (slot and index filled when
 * non-NULL), 0 none, -1 error. */
static int key_slot(struct cellsd *d, const char *vp, struct wipe_slot *slot, int *idx,
		    cells_err_t *err)
{
	static struct wipe_slot slots[WIPE_SLOTS];
	if (wipe_slots_read(d->state_dir, slots, err) < 0)
		return -1;
	int i = wipe_slot_find(slots, vp);
	if (idx)
		*idx = i;
	if (i < 0)
		return 0;
	if (slot)
		*slot = slots[i];
	return 1;
}

static int key_row(struct cellsd *d, const char *vp, uint8_t wrapped[WIPE_WRAPPED_LEN],
		   uint8_t id[FSCRYPT_IDENTIFIER_LEN], cells_err_t *err)
{
	struct wipe_slot s;
	int r = key_slot(d, vp, &s, NULL, err);
	if (r == 1) {
		if (wrapped)
			memcpy(wrapped, s.wrapped, WIPE_WRAPPED_LEN);
		if (id)
			memcpy(id, s.id, FSCRYPT_IDENTIFIER_LEN);
	}
	return r;
}

/* Add vp's key to the area (creating and storing a new one when none exists). */
static int unlock_key(struct cellsd *d, int afd, const char *vp, uint8_t id[FSCRYPT_IDENTIFIER_LEN],
		      cells_err_t *err)
{
	struct wipe_slot slot;
	int idx;
	cleanup_wipe_kek struct wipe_kek k = {0};
	cleanup_wipe_secret struct wipe_secret key = {0};
	int have = key_slot(d, vp, &slot, &idx, err);
	if (have < 0 || wipe_kek_open(d->state_dir, &k, err) < 0)
		return -1;
	if (have) {
		const struct wipe_secret *kek = wipe_kek_get(&k, slot.gen, NULL);
		if (!kek)
			return cells_err_set(err, EBADMSG, "key of %s: its KEK generation is gone",
					     vp);
		if (wipe_key_unwrap(kek, vp, slot.wrapped, sizeof slot.wrapped, &key, err) < 0)
			return cells_err_prefix(err, "key of %s", vp);
		uint8_t got[FSCRYPT_IDENTIFIER_LEN];
		if (fscrypt_add_key(afd, key.p, key.len, got, err) < 0)
			return -1;
		if (memcmp(got, slot.id, sizeof got))
			return cells_err_set(err, EBADMSG, "key of %s has the wrong identifier",
					     vp);
		memcpy(id, slot.id, FSCRYPT_IDENTIFIER_LEN);
		return 0;
	}
	static struct wipe_slot slots[WIPE_SLOTS];
	if (wipe_slots_read(d->state_dir, slots, err) < 0)
		return -1;
	for (idx = 0; idx < WIPE_SLOTS && slots[idx].used; idx++)
		;
	if (idx == WIPE_SLOTS)
		return cells_err_set(err, ENOSPC, "key of %s: all %d key slots are used", vp,
				     WIPE_SLOTS);
	memset(&slot, 0, sizeof slot);
	const struct wipe_secret *kek = wipe_kek_get(&k, 0, &slot.gen);
	if (!kek || wipe_key_generate(&key, FSCRYPT_KEY_LEN, err) < 0 ||
	    wipe_key_wrap(kek, vp, &key, slot.wrapped, err) < 0 ||
	    fscrypt_add_key(afd, key.p, key.len, id, err) < 0)
		return kek ? -1 : cells_err_set(err, EBADMSG, "no current KEK");
	slot.used = true;
	snprintf(slot.vp, sizeof slot.vp, "%s", vp);
	memcpy(slot.id, id, FSCRYPT_IDENTIFIER_LEN);
	return wipe_slot_write(d->state_dir, idx, &slot, err);
}

int wipe_prepare_vp_storage(struct cellsd *d, const char *vp, char upper_dir_out[PATH_MAX],
			    cells_err_t *err)
{
	if (cells_valid_name(vp, err) < 0)
		return -1;
	if (!d->wipe)
		return cells_err_set(err, EAGAIN, "storage of %s: the wipe module is not ready",
				     vp);
	if (!wipe_vp_encrypted(d, vp)) {
		snprintf(upper_dir_out, PATH_MAX, "%s/vpdata/%s", d->state_dir, vp);
		if (cells_mkdir_p(upper_dir_out, 0700, err) < 0)
			return -1;
		/* data an older version kept in STATE/vp/NAME moves here (same filesystem) */
		static const char *const parts[] = {"upper", "work"};
		for (size_t i = 0; i < CELLS_ARRAY_SIZE(parts); i++) {
			char old[PATH_MAX], now[PATH_MAX + 8];
			legacy_dir(d, vp, parts[i], old);
			snprintf(now, sizeof now, "%s/%s", upper_dir_out, parts[i]);
			if (access(old, F_OK) < 0 || access(now, F_OK) == 0)
				continue;
			if (rename(old, now) < 0)
				return cells_err_sys(err, errno, "move %s to %s", old, now);
			log_info("VP %s: moved its data from %s to %s", vp, old, now);
		}
		return 0;
	}
	char root[PATH_MAX], dir[PATH_MAX + 8];
	cleanup_close int afd = area_open(d, root, err);
	if (afd < 0)
		return cells_err_prefix(err, "storage of %s", vp);
	uint8_t id[FSCRYPT_IDENTIFIER_LEN], pid[FSCRYPT_IDENTIFIER_LEN];
	if (unlock_key(d, afd, vp, id, err) < 0)
		return cells_err_prefix(err, "storage of %s", vp);
	snprintf(dir, sizeof dir, "%s/vp", root);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return cells_err_sys(err, errno, "mkdir %s", dir);
	snprintf(dir, sizeof dir, "%s/vp/%s", root, vp);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return cells_err_sys(err, errno, "mkdir %s", dir);
	cleanup_close int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return cells_err_sys(err, errno, "open %s", dir);
	int pol = fscrypt_get_policy(dfd, pid, err);
	if (pol < 0)
		return cells_err_prefix(err, "%s", dir);
	if (pol == 0) {
		/* new, or a crash between mkdir and set policy: must still be empty */
		if (fscrypt_set_policy(dfd, id, err) < 0)
			return cells_err_prefix(err, "%s", dir);
	} else if (memcmp(pid, id, sizeof id)) {
		return cells_err_set(err, EBADMSG, "%s is encrypted with another key", dir);
	}
	if (snprintf(upper_dir_out, PATH_MAX, "%s", dir) >= PATH_MAX)
		return cells_err_set(err, ENAMETOOLONG, "path of %s", vp);
	return 0;
}

/* ---- killing what uses the data ----------------------------------------------------- */

static bool link_under(const char *link, const char *prefix)
{
	char t[PATH_MAX];
	ssize_t n = readlink(link, t, sizeof t - 1);
	if (n <= 0)
		return false;
	t[n] = 0;
	size_t l = strlen(prefix);
	return !strncmp(t, prefix, l) && (t[l] == 0 || t[l] == '/');
}

static bool pid_uses(int pid, const char *prefix)
{
	char p[64];
	static const char *const links[] = {"cwd", "root", "exe"};
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(links); i++) {
		snprintf(p, sizeof p, "/proc/%d/%s", pid, links[i]);
		if (link_under(p, prefix))
			return true;
	}
	snprintf(p, sizeof p, "/proc/%d/fd", pid);
	cleanup_dir DIR *fds = opendir(p);
	struct dirent *e;
	while (fds && (e = readdir(fds))) {
		if (e->d_name[0] == '.')
			continue;
		char fp[96];
		snprintf(fp, sizeof fp, "/proc/%d/fd/%s", pid, e->d_name);
		if (link_under(fp, prefix))
			return true;
	}
	snprintf(p, sizeof p, "/proc/%d/maps", pid);
	cleanup_file FILE *m = fopen(p, "re");
	char line[PATH_MAX + 128];
	while (m && fgets(line, sizeof line, m)) {
		char *s = strchr(line, '/');
		if (s && !strncmp(s, prefix, strlen(prefix)))
			return true;
	}
	return false;
}

/* SIGKILL every process with a cwd, root, executable, open file or mapping under one of
 * dirs; wait (bounded) until they are gone. Returns how many were killed. */
static int kill_users(const char *const *dirs, int ndirs)
{
	int killed = 0, me = getpid();
	for (int round = 0; round < 5; round++) {
		int found = 0;
		cleanup_dir DIR *pd = opendir("/proc");
		struct dirent *e;
		while (pd && (e = readdir(pd))) {
			int pid = atoi(e->d_name);
			if (pid <= 1 || pid == me)
				continue;
			for (int i = 0; i < ndirs; i++) {
				if (!pid_uses(pid, dirs[i]))
					continue;
				if (kill(pid, SIGKILL) == 0) {
					found++;
					log_info("wipe: killed pid %d using %s", pid, dirs[i]);
				}
				break;
			}
		}
		killed += found;
		if (!found)
			break;
		struct timespec ts = {0, 50 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return killed;
}

/* ---- the state machine ------------------------------------------------------------ */

struct op {
	int64_t id;
	char command_id[CELLS_MAX_ID_LEN + 32];
	char vp[64];
	char actor[64];
	bool recreate, encrypted, has_key_id;
	uint8_t key_id[FSCRYPT_IDENTIFIER_LEN];
	int step;
	int key_status;
	bool key_destroyed;
	bool counted;
	uint64_t files_removed, bytes_removed;
};

static int op_load(struct cellsd *d, const char *where, const char *arg, struct op *o,
		   cells_err_t *err)
{
	char sql[320];
	snprintf(sql, sizeof sql,
		 "SELECT id,command_id,vp,actor,recreate,encrypted,key_id,step,key_status,"
		 "key_destroyed,state,counted,files_removed,bytes_removed FROM wipe_ops WHERE %s",
		 where);
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db, sql, &st, err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return sqldb_err(d->db, "wipe ops", err);
	memset(o, 0, sizeof *o);
	o->id = sqlite3_column_int64(st, 0);
	snprintf(o->command_id, sizeof o->command_id, "%s", sqlite3_column_text(st, 1));
	snprintf(o->vp, sizeof o->vp, "%s", sqlite3_column_text(st, 2));
	snprintf(o->actor, sizeof o->actor, "%s", sqlite3_column_text(st, 3));
	o->recreate = sqlite3_column_int(st, 4);
	o->encrypted = sqlite3_column_int(st, 5);
	if (sqlite3_column_bytes(st, 6) == FSCRYPT_IDENTIFIER_LEN) {
		o->has_key_id = true;
		memcpy(o->key_id, sqlite3_column_blob(st, 6), FSCRYPT_IDENTIFIER_LEN);
	}
	o->step = sqlite3_column_int(st, 7);
	o->key_status = sqlite3_column_int(st, 8);
	o->key_destroyed = sqlite3_column_int(st, 9);
	o->counted = sqlite3_column_int(st, 11);
	o->files_removed = (uint64_t)sqlite3_column_int64(st, 12);
	o->bytes_removed = (uint64_t)sqlite3_column_int64(st, 13);
	return strcmp((const char *)sqlite3_column_text(st, 10), "done") ? 1 : 2;
}

/* Record step `step` as completed (next = step + 1) with the op's outcome fields. */
static int op_advance(struct cellsd *d, struct op *o, int step, cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db,
			  "UPDATE wipe_ops SET step=?, key_status=?, key_destroyed=? WHERE id=?",
			  &st, err) < 0)
		return -1;
	sqlite3_bind_int(st, 1, step + 1);
	sqlite3_bind_int(st, 2, o->key_status);
	sqlite3_bind_int(st, 3, o->key_destroyed);
	sqlite3_bind_int64(st, 4, o->id);
	if (sqlite3_step(st) != SQLITE_DONE)
		return sqldb_err(d->db, "wipe step", err);
	o->step = step + 1;
	return 0;
}

static void vp_dir(struct cellsd *d, const struct op *o, const char *root, char out[PATH_MAX])
{
	if (o->encrypted)
		snprintf(out, PATH_MAX, "%s/vp/%s", root, o->vp);
	else
		snprintf(out, PATH_MAX, "%s/vpdata/%s", d->state_dir, o->vp);
}

#define WIPE_MAX_MOUNTS 16

/* The mounts at or under dir and the overlays whose upper/work/lower dir is under it (a
 * VP root the runtime left behind), in cellsd's mount namespace. */
static int mounts_using(const char *mountinfo, const char *dir, char mps[WIPE_MAX_MOUNTS][PATH_MAX])
{
	cleanup_file FILE *f = fopen(mountinfo, "re");
	char line[8192];
	int n = 0;
	size_t l = strlen(dir);
	while (f && n < WIPE_MAX_MOUNTS && fgets(line, sizeof line, f)) {
		char *save = NULL, *tok = strtok_r(line, " ", &save), *mp = NULL;
		for (int i = 0; tok && i < 4; i++)
			tok = strtok_r(NULL, " ", &save);
		mp = tok;
		if (!mp)
			continue;
		bool hit = !strncmp(mp, dir, l) && (mp[l] == 0 || mp[l] == '/');
		const char *rest = save ? save : "";
		for (const char *k = rest; !hit && (k = strstr(k, "dir=")); k += 4)
			hit = !strncmp(k + 4, dir, l) &&
			      (k[4 + l] == '/' || k[4 + l] == ',' || k[4 + l] == ':' ||
			       k[4 + l] == '\n' || k[4 + l] == 0);
		if (hit)
			snprintf(mps[n++], PATH_MAX, "%s", mp);
	}
	return n;
}

struct detach_arg {
	char (*mps)[PATH_MAX];
	int n;
};

/* In the namespace (knsrun): lazily unmount the mounts, innermost first. */
static int detach_in_ns(struct knsrun_ctx *c, void *arg)
{
	(void)c;
	const struct detach_arg *a = arg;
	for (int i = a->n - 1; i >= 0; i--)
		umount2(a->mps[i], MNT_DETACH);
	return 0;
}

/* A mount namespace made while a mount over dir existed holds a copy of it, which pins
 * the VP's files (the key stays "incompletely removed"). Detach such copies inside every
 * other mount namespace (knsrun.h). */
static void detach_elsewhere(const char *dir)
{
	struct stat self;
	if (stat("/proc/self/ns/mnt", &self) < 0)
		return;
	ino_t seen[256];
	size_t nseen = 0;
	cleanup_dir DIR *pd = opendir("/proc");
	struct dirent *e;
	while (pd && (e = readdir(pd))) {
		int pid = atoi(e->d_name);
		if (pid <= 0)
			continue;
		char p[64];
		struct stat st;
		snprintf(p, sizeof p, "/proc/%d/ns/mnt", pid);
		if (stat(p, &st) < 0 || st.st_ino == self.st_ino)
			continue;
		bool dup = false;
		for (size_t i = 0; i < nseen; i++)
			dup = dup || seen[i] == st.st_ino;
		if (dup || nseen >= CELLS_ARRAY_SIZE(seen))
			continue;
		seen[nseen++] = st.st_ino;
		static char mps[WIPE_MAX_MOUNTS][PATH_MAX];
		char mi[64];
		snprintf(mi, sizeof mi, "/proc/%d/mountinfo", pid);
		int n = mounts_using(mi, dir, mps);
		if (n <= 0)
			continue;
		cleanup_close int nsfd = open(p, O_RDONLY | O_CLOEXEC);
		if (nsfd < 0)
			continue;
		struct detach_arg a = {mps, n};
		cells_err_t err;
		if (knsrun(nsfd, -1, detach_in_ns, &a, &err) == 0)
			log_info(
			    "wipe: detached %d mount(s) using %s in the mount namespace of pid %d",
			    n, dir, pid);
		else
			log_warn("wipe: mounts using %s in the mount namespace of pid %d: %s", dir,
				 pid, err.msg);
	}
}

/* Kill every process using dir (directly or through a mount of it), then lazily
 * unmount those mounts. Returns the number of processes killed. */
static int evict_users(const char *dir)
{
	static char mps[WIPE_MAX_MOUNTS][PATH_MAX];
	const char *dirs[WIPE_MAX_MOUNTS + 1] = {dir};
	int n = mounts_using("/proc/self/mountinfo", dir, mps);
	for (int i = 0; i < n; i++)
		dirs[i + 1] = mps[i];
	int killed = kill_users(dirs, n + 1);
	for (int i = n - 1; i >= 0; i--)
		if (umount2(mps[i], MNT_DETACH) == 0)
			log_info("wipe: unmounted %s (it used %s)", mps[i], dir);
	detach_elsewhere(dir);
	return killed;
}

static int do_stop(struct cellsd *d, struct op *o, const char *dir, cells_err_t *err)
{
	if (d->wipe && d->wipe->hooks.stop) {
		if (d->wipe->hooks.stop(d, o->vp, d->wipe->hooks.data, err) < 0)
			return cells_err_prefix(err, "stop %s", o->vp);
	} else if (d->vpm && vpm_running(d, o->vp)) {
		/* the VP runtime kills the VP's cgroup and unmounts its root */
		if (vpm_stop(d, o->vp, err) < 0)
			return cells_err_prefix(err, "stop %s", o->vp);
	}
	int n = evict_users(dir);
	if (n)
		log_info("wipe %s: killed %d process(es)", o->vp, n);
	return 0;
}

static int do_remove_key(struct cellsd *d, struct op *o, int afd, const char *dir, cells_err_t *err)
{
	if (!o->encrypted || !o->has_key_id) {
		o->key_status = CELLS__V1__KEY_STATUS__KEY_NOT_ENCRYPTED;
		return 0;
	}
	for (int tries = 0;; tries++) {
		bool busy = false;
		if (fscrypt_remove_key(afd, o->key_id, &busy, NULL, err) < 0)
			return -1;
		int s = fscrypt_key_status(afd, o->key_id, err);
		if (s < 0)
			return -1;
		if (s == FSCRYPT_KEY_ABSENT_STATE)
			break;
		if (tries >= 100) /* ~10 s: killed processes may take a while to exit */
			return cells_err_set(
			    err, EBUSY, "key of %s still in use after removal (files busy)", o->vp);
		/* something reopened the data: kill again, let the kernel evict, retry */
		evict_users(dir);
		syncfs(afd);
		struct timespec ts = {0, 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	o->key_status = CELLS__V1__KEY_STATUS__KEY_ABSENT;
	return 0;
}

/* Copy the WAL into the database and truncate it to zero bytes; a reader holding an old
 * snapshot makes the checkpoint partial ("busy"): retry (bounded), then fail the step. */
static int checkpoint_truncate(struct cellsd *d, cells_err_t *err)
{
	for (int tries = 0; tries < 50; tries++) {
		cleanup_stmt sqlite3_stmt *st = NULL;
		if (sqldb_prepare(d->db, "PRAGMA wal_checkpoint(TRUNCATE)", &st, err) < 0)
			return -1;
		int rc = sqlite3_step(st);
		if (rc == SQLITE_ROW && sqlite3_column_int(st, 0) == 0)
			return 0;
		if (rc != SQLITE_ROW && rc != SQLITE_BUSY)
			return sqldb_err(d->db, "wal checkpoint", err);
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return cells_err_set(err, EBUSY, "wal checkpoint: a reader keeps old WAL frames");
}

static int do_destroy_wrapped(struct cellsd *d, struct op *o, cells_err_t *err)
{
	/* the slot is overwritten with zeros in place (and fdatasync'd) */
	int idx;
	if (key_slot(d, o->vp, NULL, &idx, err) < 0)
		return -1;
	if (idx >= 0 && wipe_slot_write(d->state_dir, idx, NULL, err) < 0)
		return cells_err_prefix(err, "destroy key slot of %s", o->vp);
	/* rows an older version kept in the state DB */
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db, "DELETE FROM wipe_keys WHERE vp=?", &st, err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, o->vp, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		return sqldb_err(d->db, "delete wrapped key", err);
	/* secure_delete zeroed the row in its page; now get the old page images out of the
	 * WAL and rewrite the file so no free page or WAL frame keeps a copy */
	if (checkpoint_truncate(d, err) < 0 || sqldb_exec(d->db, "VACUUM", err) < 0 ||
	    checkpoint_truncate(d, err) < 0)
		return cells_err_prefix(err, "scrub state DB");
	o->key_destroyed = true;
	return 0;
}

/* A fresh KEK: the surviving VPs' keys are rewrapped, the old KEK is overwritten. */
static int do_rotate_kek(struct cellsd *d, struct op *o, char *note, size_t ncap, cells_err_t *err)
{
	int n = 0;
	if (wipe_kek_rotate(d->state_dir, &n, err) < 0)
		return cells_err_prefix(err, "wipe %s", o->vp);
	snprintf(note, ncap, "rewrapped %d key(s)", n);
	return 0;
}

/* Count the files and directories at and under path (lstat, no symlink followed) and
 * the bytes of the regular files among them. */
static void count_tree(int dirfd, const char *name, uint64_t *files, uint64_t *bytes, int depth)
{
	struct stat st;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return;
	(*files)++;
	if (S_ISREG(st.st_mode))
		*bytes += (uint64_t)st.st_size;
	if (!S_ISDIR(st.st_mode) || depth > 256)
		return;
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	DIR *dp = fdopendir(fd);
	if (!dp) {
		close(fd);
		return;
	}
	struct dirent *e;
	while ((e = readdir(dp)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			count_tree(fd, e->d_name, files, bytes, depth + 1);
	closedir(dp);
}

/* The directories holding vp's data: its storage dir and what an older version left in
 * STATE/vp/NAME. */
static int data_dirs_of(struct cellsd *d, const struct op *o, const char *dir,
			char out[3][PATH_MAX])
{
	snprintf(out[0], PATH_MAX, "%s", dir);
	legacy_dir(d, o->vp, "upper", out[1]);
	legacy_dir(d, o->vp, "work", out[2]);
	return 3;
}

static int do_delete_data(struct cellsd *d, struct op *o, int afd, const char *dir, char *note,
			  size_t ncap, cells_err_t *err)
{
	char dirs[3][PATH_MAX];
	int nd = data_dirs_of(d, o, dir, dirs);
	if (!o->counted) {
		/* measured and recorded before anything goes: a crash during the removal
		 * keeps the figures of the whole */
		uint64_t files = 0, bytes = 0;
		for (int i = 0; i < nd; i++)
			count_tree(AT_FDCWD, dirs[i], &files, &bytes, 0);
		cleanup_stmt sqlite3_stmt *st = NULL;
		if (sqldb_prepare(d->db,
				  "UPDATE wipe_ops SET counted=1, files_removed=?, "
				  "bytes_removed=? WHERE id=?",
				  &st, err) < 0)
			return -1;
		sqlite3_bind_int64(st, 1, (sqlite3_int64)files);
		sqlite3_bind_int64(st, 2, (sqlite3_int64)bytes);
		sqlite3_bind_int64(st, 3, o->id);
		if (sqlite3_step(st) != SQLITE_DONE)
			return sqldb_err(d->db, "wipe counts", err);
		o->counted = true;
		o->files_removed = files;
		o->bytes_removed = bytes;
	}
	for (int i = 0; i < nd; i++)
		if (cells_rm_rf(dirs[i], err) < 0)
			return -1;
	note[0] = 0;
	if (!o->encrypted) {
		cleanup_close int sfd = open(d->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (sfd >= 0)
			syncfs(sfd);
		snprintf(note, ncap, "deleted %llu files, %llu bytes",
			 (unsigned long long)o->files_removed,
			 (unsigned long long)o->bytes_removed);
		return 0;
	}
	if (afd < 0)
		return 0;
	syncfs(afd);
	uint64_t trimmed = 0;
	cells_err_t e2;
	if (loopdev_fstrim(afd, &trimmed, &e2) < 0)
		snprintf(note, ncap, "discard: %s", e2.msg);
	else
		snprintf(note, ncap, "discarded %llu bytes", (unsigned long long)trimmed);
	return 0;
}

static int do_recreate(struct cellsd *d, struct op *o, cells_err_t *err)
{
	struct wipe_vp_hooks *h = d->wipe ? &d->wipe->hooks : NULL;
	if (!o->recreate) {
		if (h && h->remove) {
			if (h->remove(d, o->vp, h->data, err) < 0)
				return cells_err_prefix(err, "remove %s", o->vp);
		} else if (d->vpm && vpm_exists(d, o->vp)) {
			if (vpm_running(d, o->vp) && vpm_stop(d, o->vp, err) < 0)
				return cells_err_prefix(err, "remove %s", o->vp);
			if (vpm_destroy(d, o->vp, err) < 0)
				return cells_err_prefix(err, "remove %s", o->vp);
		}
		return 0;
	}
	char dir[PATH_MAX];
	if (wipe_prepare_vp_storage(d, o->vp, dir, err) < 0)
		return -1;
	if (h && h->recreate && h->recreate(d, o->vp, h->data, err) < 0)
		return cells_err_prefix(err, "recreate %s", o->vp);
	return 0;
}

/* Sign the receipt and store it with the op's completion, in one transaction. */
static int do_receipt(struct cellsd *d, struct op *o, cells_err_t *err)
{
	cleanup_pkey EVP_PKEY *key = NULL;
	char id[DEVICE_ID_LEN + 1];
	if (device_key_load(d->state_dir, &key, id, err) < 0)
		return -1;
	Cells__V1__WipeReceipt r = CELLS__V1__WIPE_RECEIPT__INIT;
	char *steps[STEP_COUNT];
	for (int i = 0; i < STEP_COUNT; i++)
		steps[i] =
		    (char *)(i == STEP_RECREATE && !o->recreate ? "leave-absent" : step_names[i]);
	r.device_id = id;
	r.vp = o->vp;
	r.command_id = o->command_id;
	r.wiped_at = (int64_t)time(NULL);
	r.key_status = (Cells__V1__KeyStatus)o->key_status;
	r.wrapped_key_destroyed = o->key_destroyed;
	r.recreated = o->recreate;
	r.n_steps = STEP_COUNT - 1; /* every step before the receipt itself */
	/* what was done, as measured: never "done" for nothing */
	if (o->encrypted && o->has_key_id && o->key_status == CELLS__V1__KEY_STATUS__KEY_ABSENT)
		r.method = "crypto-erase";
	else if (o->files_removed)
		r.method = "delete";
	else
		r.method = "nothing";
	r.files_removed = o->files_removed;
	r.bytes_removed = o->bytes_removed;
	r.steps = steps;
	size_t n = cells__v1__wipe_receipt__get_packed_size(&r);
	if (n > CELLS_MAX_RECEIPT)
		return cells_err_set(err, EMSGSIZE, "receipt of %zu bytes", n);
	cleanup_free uint8_t *payload = malloc(n ? n : 1);
	if (!payload)
		return cells_err_sys(err, ENOMEM, "receipt");
	cells__v1__wipe_receipt__pack(&r, payload);
	Cells__V1__Signed s = CELLS__V1__SIGNED__INIT;
	cleanup_free uint8_t *blob = NULL;
	size_t blen = 0;
	int rc = pol_sign(&s, CELLS__V1__SIGNED_KIND__SIGNED_WIPE_RECEIPT, payload, n, key, err);
	if (rc == 0)
		rc = pol_signed_pack(&s, &blob, &blen, err);
	pol_signed_clear(&s);
	if (rc < 0)
		return cells_err_prefix(err, "sign receipt");
	if (sqldb_begin(d->db, err) < 0)
		return -1;
	cleanup_stmt sqlite3_stmt *st = NULL;
	cleanup_stmt sqlite3_stmt *up = NULL;
	if (sqldb_prepare(d->db,
			  "INSERT OR IGNORE INTO wipe_receipts(op_id,command_id,vp,signed,"
			  "created_us) VALUES(?,?,?,?,?)",
			  &st, err) < 0 ||
	    sqldb_prepare(d->db,
			  "UPDATE wipe_ops SET state='done', step=?, finished_us=?, error=NULL "
			  "WHERE id=?",
			  &up, err) < 0) {
		sqldb_rollback(d->db);
		return -1;
	}
	sqlite3_bind_int64(st, 1, o->id);
	sqlite3_bind_text(st, 2, o->command_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, o->vp, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 4, blob, (int)blen, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, cells_now_us());
	sqlite3_bind_int(up, 1, STEP_COUNT);
	sqlite3_bind_int64(up, 2, cells_now_us());
	sqlite3_bind_int64(up, 3, o->id);
	if (sqlite3_step(st) != SQLITE_DONE || sqlite3_step(up) != SQLITE_DONE) {
		sqldb_err(d->db, "store receipt", err);
		sqldb_rollback(d->db);
		return -1;
	}
	if (sqldb_commit(d->db, err) < 0)
		return -1;
	/* A wipe run for an MDM command in flight carries its receipt in that command's
	 * result (wipe_cmd_result). Any other wipe (local, password-limit, or one finished
	 * by wipe_init after a crash, whose command got no answer) queues its own result
	 * here: the outbox resends it until the server acknowledges it. */
	if (d->wipe && d->wipe->in_command && !strcmp(d->wipe->in_command, o->command_id))
		return 0;
	cleanup_signed Cells__V1__Signed *rs = NULL;
	if (cells_signed_decode(blob, blen, &rs, err) == 0) {
		Cells__V1__Envelope env = CELLS__V1__ENVELOPE__INIT;
		Cells__V1__CommandResult res = CELLS__V1__COMMAND_RESULT__INIT;
		char mid[CELLS_MAX_ID_LEN + 1];
		snprintf(mid, sizeof mid, "wipe-receipt-%lld", (long long)o->id);
		res.command_id = o->command_id;
		res.status = CELLS__V1__RESULT_STATUS__RESULT_DONE;
		res.reason = "";
		res.at = (int64_t)time(NULL);
		res.receipt = rs;
		env.message_id = mid;
		env.correlation_id = "";
		env.body_case = CELLS__V1__ENVELOPE__BODY_RESULT;
		env.result = &res;
		if (outbox_put(d, &env, err) < 0)
			log_warn("wipe %s: receipt not queued to the MDM yet: %s", o->vp, err->msg);
	}
	return 0;
}

static int op_fail(struct cellsd *d, struct op *o, const char *step, cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db, "UPDATE wipe_ops SET error=? WHERE id=?", &st, NULL) == 0) {
		sqlite3_bind_text(st, 1, err->msg, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 2, o->id);
		if (sqlite3_step(st) != SQLITE_DONE)
			log_warn("wipe %s: step error not recorded: %s", o->vp,
				 sqlite3_errmsg(d->db));
	}
	cells_err_t e2;
	audit_step(d, o->vp, o->actor, o->id, o->command_id, "wipe.step", step, "failed", err->msg,
		   &e2);
	return cells_err_prefix(err, "wipe %s: %s", o->vp, step);
}

/* Carry out the remaining steps of o. */
static int op_run(struct cellsd *d, struct op *o, cells_err_t *err)
{
	char root[PATH_MAX] = "", dir[PATH_MAX];
	cleanup_close int afd = -1;
	if (o->encrypted) {
		afd = area_open(d, root, err);
		if (afd < 0)
			return op_fail(d, o, "storage", err);
	}
	vp_dir(d, o, root, dir);
	while (o->step < STEP_COUNT) {
		int step = o->step;
		const char *name = step_names[step];
		char note[CELLS_ERR_MSG_MAX] = "";
		int rc = 0;
		switch (step) {
		case STEP_INTENT:
			break; /* recorded when the op was created */
		case STEP_STOP:
			rc = do_stop(d, o, dir, err);
			break;
		case STEP_REMOVE_KEY:
			rc = do_remove_key(d, o, afd, dir, err);
			break;
		case STEP_DESTROY_WRAPPED:
			rc = do_destroy_wrapped(d, o, err);
			break;
		case STEP_ROTATE_KEK:
			rc = do_rotate_kek(d, o, note, sizeof note, err);
			break;
		case STEP_DELETE_DATA:
			rc = do_delete_data(d, o, afd, dir, note, sizeof note, err);
			break;
		case STEP_RECREATE:
			if (!o->recreate)
				name = "leave-absent";
			rc = do_recreate(d, o, err);
			break;
		case STEP_RECEIPT:
			rc = do_receipt(d, o, err);
			break;
		}
		if (rc < 0)
			return op_fail(d, o, name, err);
		crash_point(step);
		if (step != STEP_RECEIPT && op_advance(d, o, step, err) < 0)
			return op_fail(d, o, name, err);
		if (step == STEP_RECEIPT)
			o->step = STEP_COUNT;
		if (audit_step(d, o->vp, o->actor, o->id, o->command_id, "wipe.step", name, "ok",
			       note[0] ? note : NULL, err) < 0)
			return cells_err_prefix(err, "wipe %s: audit (fail closed)", o->vp);
	}
	log_info("wipe %s (%s): done", o->vp, o->command_id);
	return audit_step(d, o->vp, o->actor, o->id, o->command_id, "wipe.done", NULL, "ok", NULL,
			  err);
}

/* Create the op (step 0: the intent), durably, and audit it. */
static int op_create(struct cellsd *d, const char *vp, const char *command_id, const char *actor,
		     bool recreate, struct op *o, cells_err_t *err)
{
	memset(o, 0, sizeof *o);
	snprintf(o->vp, sizeof o->vp, "%s", vp);
	snprintf(o->command_id, sizeof o->command_id, "%s", command_id);
	snprintf(o->actor, sizeof o->actor, "%s", actor);
	o->recreate = recreate;
	o->encrypted = wipe_vp_encrypted(d, vp);
	if (o->encrypted) {
		int have = key_row(d, vp, NULL, o->key_id, err);
		if (have < 0)
			return -1;
		o->has_key_id = have == 1;
	}
	/* audit first: a wipe that cannot be logged does not start (fail closed) */
	if (audit_step(d, vp, actor, 0, command_id, "wipe.requested", NULL, "ok", NULL, err) < 0)
		return cells_err_prefix(err, "wipe %s: audit (fail closed)", vp);
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db,
			  "INSERT INTO wipe_ops(command_id,vp,actor,recreate,encrypted,key_id,"
			  "step,state,started_us) VALUES(?,?,?,?,?,?,?,'running',?)",
			  &st, err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, command_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, vp, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, actor, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 4, recreate);
	sqlite3_bind_int(st, 5, o->encrypted);
	if (o->has_key_id)
		sqlite3_bind_blob(st, 6, o->key_id, FSCRYPT_IDENTIFIER_LEN, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 6);
	sqlite3_bind_int(st, 7, STEP_INTENT + 1);
	sqlite3_bind_int64(st, 8, cells_now_us());
	if (sqlite3_step(st) != SQLITE_DONE)
		return sqldb_err(d->db, "record wipe intent", err);
	o->id = sqlite3_last_insert_rowid(d->db);
	o->step = STEP_INTENT + 1;
	crash_point(STEP_INTENT);
	return audit_step(d, vp, actor, o->id, command_id, "wipe.step", "intent", "ok", NULL, err);
}

static int start(struct cellsd *d, const char *vp, const char *command_id, const char *actor,
		 bool recreate, cells_err_t *err)
{
	if (cells_valid_name(vp, err) < 0)
		return -1;
	struct op o;
	int found = op_load(d, "command_id=?", command_id, &o, err);
	if (found < 0)
		return -1;
	if (found) {
		/* a replay: acknowledge, do not repeat (finish it if it was interrupted) */
		if (audit_step(d, o.vp, actor, o.id, command_id, "wipe.replayed", NULL, "refused",
			       found == 2 ? "already done" : "in progress", err) < 0)
			return -1;
		if (found == 2)
			return 0;
		return op_run(d, &o, err);
	}
	/* an interrupted wipe of the same VP is finished first; this command then gets its
	 * own op and receipt */
	found = op_load(d, "vp=? AND state='running'", vp, &o, err);
	if (found < 0)
		return -1;
	if (found == 1 && op_run(d, &o, err) < 0)
		return -1;
	if (op_create(d, vp, command_id, actor, recreate, &o, err) < 0)
		return -1;
	return op_run(d, &o, err);
}

int wipe_start(struct cellsd *d, const char *vp, const char *reason_or_command_id, bool recreate,
	       cells_err_t *err)
{
	char id[CELLS_MAX_ID_LEN + 32], actor[64];
	const char *r =
	    reason_or_command_id && *reason_or_command_id ? reason_or_command_id : "local";
	if (strchr(r, ':'))
		snprintf(id, sizeof id, "%s", r);
	else
		snprintf(id, sizeof id, "%s:%lld", r, (long long)cells_now_us());
	snprintf(actor, sizeof actor, "%.*s", (int)strcspn(r, ":"), r);
	return start(d, vp, id, actor, recreate, err);
}

int wipe_cmd(struct cellsd *d, const Cells__V1__Command *cmd, cells_err_t *err)
{
	const char *cid = cmd && cmd->command_id ? cmd->command_id : "";
	const char *vp =
	    cmd && cmd->action_case == CELLS__V1__COMMAND__ACTION_WIPE && cmd->wipe && cmd->wipe->vp
		? cmd->wipe->vp
		: "";
	char dev[DEVICE_ID_LEN + 1];
	const char *why = NULL;
	cells_err_t e2;
	if (!*cid || strlen(cid) > CELLS_MAX_ID_LEN)
		why = "command id missing or too long";
	else if (cmd->action_case != CELLS__V1__COMMAND__ACTION_WIPE || !cmd->wipe)
		why = "not a wipe command";
	else if (cells_valid_name(vp, &e2) < 0)
		why = e2.msg;
	else if (device_key_load(d->state_dir, NULL, dev, err) < 0)
		return -1;
	else if (!cmd->device_id || strcmp(cmd->device_id, dev))
		why = "command is for another device";
	else if (cmd->expires_at && cmd->expires_at < (int64_t)time(NULL))
		why = "command expired";
	if (why) {
		json_object *j = json_object_new_object();
		json_object_object_add(j, "command_id", json_object_new_string(cid));
		json_object_object_add(j, "reason", json_object_new_string(why));
		if (cellsd_audit(d, vp, "mdm", "wipe.rejected", "refused", j, err) < 0) {
			json_object_put(j);
			return -1;
		}
		json_object_put(j);
		return cells_err_set(err, EINVAL, "wipe command %s: %s", cid, why);
	}
	return start(d, vp, cid, "mdm", cmd->wipe->recreate, err);
}

int wipe_receipt_get(struct cellsd *d, const char *command_id, Cells__V1__Signed **out,
		     cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	*out = NULL;
	if (sqldb_prepare(d->db, "SELECT signed FROM wipe_receipts WHERE command_id=?", &st, err) <
	    0)
		return -1;
	sqlite3_bind_text(st, 1, command_id, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return sqldb_err(d->db, "wipe receipt", err);
	if (cells_signed_decode(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0),
				out, err) < 0)
		return cells_err_prefix(err, "stored receipt of %s", command_id);
	return 1;
}

int wipe_cmd_result(struct cellsd *d, const Cells__V1__Command *cmd, Cells__V1__CommandResult *res,
		    cells_err_t *err)
{
	if (d->wipe)
		d->wipe->in_command = cmd->command_id;
	int r = wipe_cmd(d, cmd, err);
	if (d->wipe)
		d->wipe->in_command = NULL;
	if (r < 0)
		return -1;
	return wipe_cmd_replay(d, cmd, res, err);
}

int wipe_cmd_replay(struct cellsd *d, const Cells__V1__Command *cmd, Cells__V1__CommandResult *res,
		    cells_err_t *err)
{
	Cells__V1__Signed *s = NULL;
	int r = wipe_receipt_get(d, cmd->command_id, &s, err);
	if (r < 0)
		return -1;
	if (r == 0)
		return cells_err_set(err, ENOENT, "wipe %s: no receipt stored", cmd->command_id);
	res->receipt = s;
	return 0;
}

int wipe_receipt_acked(struct cellsd *d, const char *command_id, cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db,
			  "UPDATE wipe_receipts SET acked_us=? WHERE command_id=? AND acked_us IS "
			  "NULL",
			  &st, err) < 0)
		return -1;
	sqlite3_bind_int64(st, 1, cells_now_us());
	sqlite3_bind_text(st, 2, command_id, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		return sqldb_err(d->db, "receipt ack", err);
	return sqlite3_changes(d->db);
}

static json_object *hex_json(const void *p, int n)
{
	if (n <= 0 || !p)
		return json_object_new_string("");
	char *h = malloc((size_t)n * 2 + 1);
	if (!h)
		return NULL;
	cells_hex(p, (size_t)n, h);
	json_object *j = json_object_new_string(h);
	free(h);
	return j;
}

static const char *key_state_name(int afd, const uint8_t *id)
{
	cells_err_t e2;
	switch (fscrypt_key_status(afd, id, &e2)) {
	case FSCRYPT_KEY_ABSENT_STATE:
		return "absent";
	case FSCRYPT_KEY_PRESENT_STATE:
		return "present";
	case FSCRYPT_KEY_INCOMPLETE_STATE:
		return "incomplete";
	default:
		return "error";
	}
}

int wipe_status_json(struct cellsd *d, const char *vp, json_object *out, cells_err_t *err)
{
	char mode[16] = "";
	config_get(d, "storage", mode, sizeof mode);
	json_object_object_add(out, "storage", json_object_new_string(mode[0] ? mode : "unset"));
	/* per-VP key state as the kernel reports it */
	json_object *vps = json_object_new_array();
	json_object_object_add(out, "keys", vps);
	char root[PATH_MAX];
	cleanup_close int afd = -1;
	if (mode[0]) {
		cells_err_t e2;
		afd = area_open(d, root, &e2);
	}
	static struct wipe_slot slots[WIPE_SLOTS];
	if (wipe_slots_read(d->state_dir, slots, err) < 0)
		return -1;
	for (int i = 0; i < WIPE_SLOTS; i++) {
		const char *v = slots[i].vp;
		if (!slots[i].used || (vp && strcmp(v, vp)))
			continue;
		json_object *k = json_object_new_object();
		json_object_object_add(k, "vp", json_object_new_string(v));
		json_object_object_add(k, "slot", json_object_new_int(i));
		json_object_object_add(k, "key_id", hex_json(slots[i].id, FSCRYPT_IDENTIFIER_LEN));
		if (afd >= 0)
			json_object_object_add(
			    k, "kernel_key_status",
			    json_object_new_string(key_state_name(afd, slots[i].id)));
		json_object_array_add(vps, k);
	}
	json_object *ops = json_object_new_array();
	json_object_object_add(out, "ops", ops);
	cleanup_stmt sqlite3_stmt *os = NULL;
	if (sqldb_prepare(d->db,
			  "SELECT o.id,o.command_id,o.vp,o.state,o.step,o.key_status,"
			  "o.key_destroyed,o.recreate,o.error,o.key_id,r.signed,r.acked_us,"
			  "o.files_removed,o.bytes_removed "
			  "FROM wipe_ops o LEFT JOIN wipe_receipts r ON r.op_id=o.id ORDER BY o.id",
			  &os, err) < 0)
		return -1;
	while (sqlite3_step(os) == SQLITE_ROW) {
		const char *v = (const char *)sqlite3_column_text(os, 2);
		if (vp && strcmp(v, vp))
			continue;
		json_object *o = json_object_new_object();
		json_object_object_add(o, "id", json_object_new_int64(sqlite3_column_int64(os, 0)));
		json_object_object_add(
		    o, "command_id",
		    json_object_new_string((const char *)sqlite3_column_text(os, 1)));
		json_object_object_add(o, "vp", json_object_new_string(v));
		json_object_object_add(
		    o, "state", json_object_new_string((const char *)sqlite3_column_text(os, 3)));
		int step = sqlite3_column_int(os, 4);
		json_object_object_add(
		    o, "step",
		    json_object_new_string(step < STEP_COUNT ? step_names[step] : "complete"));
		static const char *const ks_names[] = {"unknown", "absent", "present",
						       "not-encrypted"};
		int kst = sqlite3_column_int(os, 5);
		json_object_object_add(
		    o, "key_status",
		    json_object_new_string(kst >= 0 && kst < 4 ? ks_names[kst] : "unknown"));
		/* what the kernel says now about the wiped key */
		if (afd >= 0 && sqlite3_column_bytes(os, 9) == FSCRYPT_IDENTIFIER_LEN) {
			json_object_object_add(o, "kernel_key_status",
					       json_object_new_string(key_state_name(
						   afd, sqlite3_column_blob(os, 9))));
		}
		json_object_object_add(o, "wrapped_key_destroyed",
				       json_object_new_boolean(sqlite3_column_int(os, 6)));
		json_object_object_add(o, "recreate",
				       json_object_new_boolean(sqlite3_column_int(os, 7)));
		json_object_object_add(o, "files_removed",
				       json_object_new_int64(sqlite3_column_int64(os, 12)));
		json_object_object_add(o, "bytes_removed",
				       json_object_new_int64(sqlite3_column_int64(os, 13)));
		if (sqlite3_column_type(os, 8) != SQLITE_NULL)
			json_object_object_add(
			    o, "error",
			    json_object_new_string((const char *)sqlite3_column_text(os, 8)));
		if (sqlite3_column_type(os, 10) != SQLITE_NULL) {
			const uint8_t *b = sqlite3_column_blob(os, 10);
			int n = sqlite3_column_bytes(os, 10);
			json_object_object_add(o, "receipt", hex_json(b, n));
			json_object_object_add(
			    o, "receipt_acked",
			    json_object_new_boolean(sqlite3_column_type(os, 11) != SQLITE_NULL));
			cleanup_signed Cells__V1__Signed *s = NULL;
			cells_err_t e2;
			if (cells_signed_decode(b, (size_t)n, &s, &e2) == 0 && s->n_signatures) {
				json_object_object_add(
				    o, "receipt_payload",
				    hex_json(s->payload.data, (int)s->payload.len));
				json_object_object_add(
				    o, "receipt_signature",
				    hex_json(s->signatures[0]->signature.data,
					     (int)s->signatures[0]->signature.len));
				Cells__V1__WipeReceipt *wr = cells__v1__wipe_receipt__unpack(
				    NULL, s->payload.len, s->payload.data);
				if (wr) {
					json_object_object_add(
					    o, "method",
					    json_object_new_string(wr->method ? wr->method : ""));
					cells__v1__wipe_receipt__free_unpacked(wr, NULL);
				}
			}
		}
		json_object_array_add(ops, o);
	}
	return 0;
}

/* ---- life cycle --------------------------------------------------------------------- */

/* Wrapped keys an older version kept in the state DB (wipe_keys) move to the key-slot
 * file; the rows are then deleted and the DB scrubbed (as in the destroy step). A crash
 * in between leaves the row and the slot: the next start finds the slot and only
 * deletes the row. */
static int migrate_legacy_keys(struct cellsd *d, cells_err_t *err)
{
	int moved = 0;
	{
		cleanup_stmt sqlite3_stmt *st = NULL;
		if (sqldb_prepare(d->db, "SELECT vp, wrapped, key_id FROM wipe_keys", &st, err) < 0)
			return -1;
		while (sqlite3_step(st) == SQLITE_ROW) {
			const char *vp = (const char *)sqlite3_column_text(st, 0);
			if (sqlite3_column_bytes(st, 1) != WIPE_WRAPPED_LEN ||
			    sqlite3_column_bytes(st, 2) != FSCRYPT_IDENTIFIER_LEN ||
			    strlen(vp) >= WIPE_SLOT_NAME_LEN)
				return cells_err_set(err, EBADMSG, "wrapped key of %s is malformed",
						     vp);
			static struct wipe_slot slots[WIPE_SLOTS];
			if (wipe_slots_read(d->state_dir, slots, err) < 0)
				return -1;
			moved++;
			if (wipe_slot_find(slots, vp) >= 0)
				continue;
			int idx = 0;
			while (idx < WIPE_SLOTS && slots[idx].used)
				idx++;
			if (idx == WIPE_SLOTS)
				return cells_err_set(err, ENOSPC, "no free key slot");
			cleanup_wipe_kek struct wipe_kek k = {0};
			struct wipe_slot s = {.used = true};
			if (wipe_kek_open(d->state_dir, &k, err) < 0 ||
			    !wipe_kek_get(&k, 0, &s.gen))
				return -1;
			snprintf(s.vp, sizeof s.vp, "%s", vp);
			memcpy(s.wrapped, sqlite3_column_blob(st, 1), WIPE_WRAPPED_LEN);
			memcpy(s.id, sqlite3_column_blob(st, 2), FSCRYPT_IDENTIFIER_LEN);
			if (wipe_slot_write(d->state_dir, idx, &s, err) < 0)
				return -1;
		}
	}
	if (!moved)
		return 0;
	if (sqldb_exec(d->db, "DELETE FROM wipe_keys", err) < 0 ||
	    checkpoint_truncate(d, err) < 0 || sqldb_exec(d->db, "VACUUM", err) < 0 ||
	    checkpoint_truncate(d, err) < 0)
		return -1;
	log_info("wipe: moved %d wrapped key(s) from the state DB to the key-slot file", moved);
	return 0;
}

int wipe_vp_storage_lock(struct cellsd *d, const char *vp, bool wait, cells_err_t *err)
{
	if (cells_valid_name(vp, err) < 0)
		return -1;
	uint8_t id[FSCRYPT_IDENTIFIER_LEN];
	int have = key_row(d, vp, NULL, id, err);
	if (have <= 0)
		return have; /* nothing encrypted to lock */
	char root[PATH_MAX], dir[PATH_MAX + 8];
	cleanup_close int afd = area_open(d, root, err);
	if (afd < 0)
		return cells_err_prefix(err, "lock storage of %s", vp);
	snprintf(dir, sizeof dir, "%s/vp/%s", root, vp);
	for (int tries = 0;; tries++) {
		bool busy = false;
		if (fscrypt_remove_key(afd, id, &busy, NULL, err) < 0)
			return cells_err_prefix(err, "lock storage of %s", vp);
		int st = fscrypt_key_status(afd, id, err);
		if (st < 0)
			return cells_err_prefix(err, "lock storage of %s", vp);
		if (st == FSCRYPT_KEY_ABSENT_STATE)
			break;
		if (!wait) {
			/* a locked VP's frozen processes keep their open files: the master key is
			 * wiped and every other inode evicted; the rest goes at their close */
			log_info("VP %s: storage locked (fscrypt key removed; the files its frozen "
				 "processes hold open stay readable to them)",
				 vp);
			return 0;
		}
		if (tries >= 20)
			return cells_err_set(err, EBUSY,
					     "lock storage of %s: files still open (key only "
					     "partly removed)",
					     vp);
		/* a process that just closed its files: let the kernel evict, retry */
		syncfs(afd);
		struct timespec ts = {0, 50 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	log_info("VP %s: storage locked (fscrypt key removed; %s is ciphertext)", vp, dir);
	return 0;
}

/* Compliance (compliance.h): a wipe that was ordered and has not finished. */
static void compliance_source(struct cellsd *d, struct compliance *c)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db, "SELECT DISTINCT vp FROM wipe_ops WHERE state != 'done'", &st,
			  NULL) < 0)
		return;
	while (sqlite3_step(st) == SQLITE_ROW)
		compliance_reason_add(c, "wipe-pending:%s",
				      (const char *)sqlite3_column_text(st, 0));
}

int wipe_init(struct cellsd *d, cells_err_t *err)
{
	if (sqldb_migrate(d->db, "wipe", migrations, CELLS_ARRAY_SIZE(migrations), err) < 0)
		return cells_err_prefix(err, "wipe");
	if (compliance_source_add("wipe", compliance_source) < 0)
		return cells_err_set(err, ENOSPC, "wipe: compliance sources full");
	if (!d->wipe) {
		d->wipe = calloc(1, sizeof *d->wipe);
		if (!d->wipe)
			return cells_err_sys(err, ENOMEM, "wipe");
	}
	if (migrate_legacy_keys(d, err) < 0)
		return cells_err_prefix(err, "wipe: move wrapped keys to the key-slot file");
	/* finish every wipe a crash interrupted */
	for (int guard = 0; guard < 64; guard++) {
		struct op o;
		int found =
		    op_load(d, "state='running' AND ?='x' ORDER BY id LIMIT 1", "x", &o, err);
		if (found < 0)
			return cells_err_prefix(err, "wipe resume");
		if (found == 0)
			break;
		log_info("wipe %s (%s): resuming at step %s", o.vp, o.command_id,
			 o.step < STEP_COUNT ? step_names[o.step] : "end");
		cells_err_t e2 = {0};
		if (audit_step(d, o.vp, "cellsd", o.id, o.command_id, "wipe.resumed",
			       o.step < STEP_COUNT ? step_names[o.step] : NULL, "ok", NULL,
			       err) < 0)
			return cells_err_prefix(err, "wipe resume");
		if (op_run(d, &o, &e2) < 0) {
			log_error("%s (will retry at the next start or request)", e2.msg);
			break;
		}
	}
	return 0;
}

void wipe_fini(struct cellsd *d)
{
	/* After a clean stop every VP is stopped (vpm_shutdown ran first): nothing uses the
	 * loop-mounted area any more. Unmount it; the kernel drops its keys with the
	 * superblock and the next start unlocks again. Busy (a VP that would not stop): left. */
	char mode[16], root[PATH_MAX];
	if (d->wipe && !d->vpm && config_get(d, "storage", mode, sizeof mode) == 1 &&
	    !strcmp(mode, "image")) {
		snprintf(root, sizeof root, "%s/wipe/mnt", d->run_dir);
		if (loopdev_is_mountpoint(root)) {
			if (umount2(root, 0) == 0)
				log_info("wipe: unmounted the encrypted area %s", root);
			else
				log_warn("wipe: encrypted area %s stays mounted: %s", root,
					 strerror(errno));
		}
	}
	free(d->wipe);
	d->wipe = NULL;
}

void wipe_set_vp_hooks(struct cellsd *d, const struct wipe_vp_hooks *h)
{
	if (d->wipe && h)
		d->wipe->hooks = *h;
}
