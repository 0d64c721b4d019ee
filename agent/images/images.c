/* images.c - the store of signed VP images (images.h): verified manifests in the state
 * DB, partial and complete files under STATE/images/, read-only loop mounts under
 * RUN_DIR/images/, references held by VPs. */
#include "images.h"
#include "audit.h"
#include "cellsd.h"
#include "cjson.h"
#include "cleanup.h"
#include "cleanup_sqlite.h"
#include "log.h"
#include "loopdev.h"
#include "pol_image.h"
#include "policy_engine.h"
#include "sqldb.h"
#include "testhook.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum img_state { IMG_PENDING, IMG_VERIFIED, IMG_FAILED, IMG_REMOVED };
/* The one writer of an image's partial file (per SHA-256: versions of the same bytes
 * share it); not persisted: after a restart a download resumes, an import starts again. */
enum img_writer { W_NONE, W_IMPORT, W_DOWNLOAD };
static const char *const state_names[] = {"pending", "verified", "failed", "removed"};

struct image {
	struct pol_image_manifest m;
	char hex[65];
	enum img_state st;
	char reason[CELLS_ERR_MSG_MAX];
	uint64_t have; /* bytes in the partial file */
	unsigned refs;
	bool mounted;
	enum img_writer writer; /* who writes the partial file now */
};

struct import_job;
static void imports_stop(struct cellsd *d);

struct images {
	struct image *v;
	size_t n;
	struct import_job *jobs; /* imports copying in their threads */
	images_imported_fn on_imported;
	char dir[PATH_MAX], partial[PATH_MAX], mnt[PATH_MAX];
};

static uint64_t opt_max_size = IMAGES_MAX_SIZE_DEFAULT;

static const char *const images_schema[] = {
    "CREATE TABLE image(name TEXT NOT NULL, version INTEGER NOT NULL, sha256 BLOB NOT NULL,"
    " size INTEGER NOT NULL, fs_type TEXT NOT NULL, created INTEGER NOT NULL,"
    " expires_at INTEGER NOT NULL, signed BLOB NOT NULL, state TEXT NOT NULL,"
    " reason TEXT NOT NULL DEFAULT '', accepted_at INTEGER NOT NULL,"
    " PRIMARY KEY (name, version));",
};

int images_option(const char *name, const char *value, cells_err_t *err)
{
	if (strcmp(name, "max-image-size"))
		return cells_err_set(err, EINVAL, "unknown images option --%s", name);
	char *end;
	errno = 0;
	unsigned long long v = strtoull(value, &end, 10);
	unsigned shift = 0;
	if (*end == 'K' || *end == 'k')
		shift = 10;
	else if (*end == 'M' || *end == 'm')
		shift = 20;
	else if (*end == 'G' || *end == 'g')
		shift = 30;
	if (shift)
		end++;
	if (errno || !*value || *end || v == 0 || v > (UINT64_MAX >> 1 >> shift))
		return cells_err_set(err, EINVAL,
				     "--max-image-size %s: want a positive size in bytes "
				     "(suffix K, M or G)",
				     value);
	opt_max_size = (uint64_t)v << shift;
	return 0;
}

/* --- paths and lookups --- */

static void img_path(struct images *im, const struct image *i, char out[PATH_MAX])
{
	snprintf(out, PATH_MAX, "%s/%s.img", im->dir, i->hex);
}

static void part_path(struct images *im, const struct image *i, char out[PATH_MAX])
{
	snprintf(out, PATH_MAX, "%s/%s.part", im->partial, i->hex);
}

static void mnt_path(struct images *im, const struct image *i, char out[PATH_MAX])
{
	snprintf(out, PATH_MAX, "%s/%s", im->mnt, i->hex);
}

static struct image *find(struct images *im, const char *name, uint64_t version)
{
	for (size_t i = 0; i < im->n; i++)
		if (!strcmp(im->v[i].m.name, name) && im->v[i].m.version == version)
			return &im->v[i];
	return NULL;
}

static struct image *find_hex(struct images *im, const char *hex)
{
	for (size_t i = 0; i < im->n; i++)
		if (!strcmp(im->v[i].hex, hex) && im->v[i].st == IMG_PENDING)
			return &im->v[i];
	for (size_t i = 0; i < im->n; i++)
		if (!strcmp(im->v[i].hex, hex))
			return &im->v[i];
	return NULL;
}

/* Who writes the partial file of these bytes now (any version with that SHA-256). */
static enum img_writer hex_writer(struct images *im, const char *hex)
{
	for (size_t i = 0; i < im->n; i++)
		if (!strcmp(im->v[i].hex, hex) && im->v[i].writer != W_NONE)
			return im->v[i].writer;
	return W_NONE;
}

static void set_writer(struct images *im, const char *hex, enum img_writer w)
{
	for (size_t i = 0; i < im->n; i++)
		if (!strcmp(im->v[i].hex, hex))
			im->v[i].writer = w;
}

static struct image *newest(struct images *im, const char *name)
{
	struct image *best = NULL;
	for (size_t i = 0; i < im->n; i++)
		if (!strcmp(im->v[i].m.name, name) &&
		    (!best || im->v[i].m.version > best->m.version))
			best = &im->v[i];
	return best;
}

/* The newest complete version of name, the one kept mounted. */
static struct image *newest_verified(struct images *im, const char *name)
{
	struct image *best = NULL;
	for (size_t i = 0; i < im->n; i++)
		if (im->v[i].st == IMG_VERIFIED && !strcmp(im->v[i].m.name, name) &&
		    (!best || im->v[i].m.version > best->m.version))
			best = &im->v[i];
	return best;
}

static struct image *add(struct images *im, const struct pol_image_manifest *m)
{
	struct image *nv = realloc(im->v, (im->n + 1) * sizeof *nv);
	if (!nv)
		return NULL;
	im->v = nv;
	struct image *i = &im->v[im->n++];
	memset(i, 0, sizeof *i);
	i->m = *m;
	pol_image_hex(m->sha256, i->hex);
	return i;
}

/* pol_image_limits.highest: the newest version recorded for name, whatever its state
 * (a version is burnt once its manifest verified). */
static void highest(void *ctx, const char *name, uint64_t *v, uint64_t *size, uint8_t sha[32])
{
	struct image *i = newest(ctx, name);
	if (i) {
		*v = i->m.version;
		*size = i->m.size;
		memcpy(sha, i->m.sha256, 32);
	}
}

/* --- audit and DB --- */

static json_object *audit_details(const struct image *i, const char *reason)
{
	json_object *det = json_object_new_object();
	if (i) {
		json_object_object_add(det, "name", json_object_new_string(i->m.name));
		json_object_object_add(det, "version",
				       json_object_new_int64((int64_t)i->m.version));
		json_object_object_add(det, "sha256", json_object_new_string(i->hex));
		json_object_object_add(det, "size", json_object_new_int64((int64_t)i->m.size));
	}
	if (reason)
		json_object_object_add(det, "reason", json_object_new_string(reason));
	return det;
}

static int audit_image(struct cellsd *d, const char *actor, const char *event, const char *outcome,
		       const struct image *i, const char *reason, cells_err_t *err)
{
	cleanup_json json_object *det = audit_details(i, reason);
	return cellsd_audit(d, "", actor, event, outcome, det, err);
}

static int db_set_state(struct cellsd *d, const struct image *i, cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db, "UPDATE image SET state=?, reason=? WHERE name=? AND version=?",
			  &st, err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, state_names[i->st], -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, i->reason, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, i->m.name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)i->m.version);
	return sqldb_step_done(d->db, st, "image state", err);
}

static int db_insert(struct cellsd *d, const struct image *i, const Cells__V1__Signed *s,
		     cells_err_t *err)
{
	cleanup_free uint8_t *sb = NULL;
	size_t sn;
	if (pol_signed_pack(s, &sb, &sn, err) < 0)
		return -1;
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(
		d->db,
		"INSERT OR REPLACE INTO image(name, version, sha256, size, fs_type, created,"
		" expires_at, signed, state, reason, accepted_at)"
		" VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?)",
		&st, err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, i->m.name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)i->m.version);
	sqlite3_bind_blob(st, 3, i->m.sha256, 32, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)i->m.size);
	sqlite3_bind_text(st, 5, i->m.fs_type, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, i->m.created);
	sqlite3_bind_int64(st, 7, i->m.expires_at);
	sqlite3_bind_blob(st, 8, sb, (int)sn, SQLITE_STATIC);
	sqlite3_bind_text(st, 9, state_names[i->st], -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 10, (sqlite3_int64)time(NULL));
	return sqldb_step_done(d->db, st, "store image manifest", err);
}

/* Another version than i with the same bytes (SHA-256: the same files and mount) in
 * state st. */
static bool same_bytes(struct images *im, const struct image *i, enum img_state st)
{
	for (size_t k = 0; k < im->n; k++)
		if (&im->v[k] != i && im->v[k].st == st && !strcmp(im->v[k].hex, i->hex))
			return true;
	return false;
}

/* Mark i failed with a one-line reason, remove its files, audit image.corrupt. */
static void fail_image(struct cellsd *d, struct image *i, const char *actor, const char *reason)
{
	struct images *im = d->images;
	char p[PATH_MAX];
	/* another version may be the same file (same SHA-256): its files stay */
	if (!same_bytes(im, i, IMG_PENDING)) {
		part_path(im, i, p);
		unlink(p);
	}
	if (!i->mounted && !same_bytes(im, i, IMG_VERIFIED)) {
		img_path(im, i, p);
		unlink(p);
	}
	i->st = IMG_FAILED;
	i->have = 0;
	snprintf(i->reason, sizeof i->reason, "%s", reason);
	cells_err_t e;
	if (db_set_state(d, i, &e) < 0)
		log_error("images: %s", e.msg);
	audit_image(d, actor, "image.corrupt", "refused", i, reason, NULL);
	log_warn("image %s@%llu: %s", i->m.name, (unsigned long long)i->m.version, reason);
}

/* --- mounting --- */

static int mount_image(struct cellsd *d, struct image *i, cells_err_t *err)
{
	struct images *im = d->images;
	char ip[PATH_MAX], mp[PATH_MAX];
	img_path(im, i, ip);
	mnt_path(im, i, mp);
	if (loopdev_is_mountpoint(mp)) {
		i->mounted = true;
		return 0;
	}
	if (cells_mkdir_p(mp, 0755, err) < 0)
		return -1;
	if (loopdev_mount_image_ro(ip, i->m.fs_type, mp, err) < 0)
		return cells_err_prefix(err, "image %s@%llu", i->m.name,
					(unsigned long long)i->m.version);
	i->mounted = true;
	audit_image(d, "cellsd", "image.mounted", "ok", i, NULL, NULL);
	return 0;
}

static void unmount_image(struct images *im, struct image *i)
{
	char mp[PATH_MAX];
	mnt_path(im, i, mp);
	if (umount2(mp, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
		log_warn("image %s: umount %s: %s", i->m.name, mp, strerror(errno));
	rmdir(mp);
	i->mounted = false;
}

/* Remove the verified versions of name that are neither the newest nor the one before it
 * (A/B: the previous one stays for a policy that names it again) and that no VP holds
 * (runs on or falls back on). Their file and mount go unless another version that stays
 * has the same bytes (same SHA-256: the same file and mount). */
static void retire_old(struct cellsd *d, const char *name)
{
	struct images *im = d->images;
	struct image *top = newest_verified(im, name), *prev = NULL;
	for (size_t k = 0; top && k < im->n; k++) {
		struct image *i = &im->v[k];
		if (i->st == IMG_VERIFIED && !strcmp(i->m.name, name) && i != top &&
		    (!prev || i->m.version > prev->m.version))
			prev = i;
	}
	for (size_t k = 0; top && k < im->n; k++) {
		struct image *i = &im->v[k];
		if (i->st != IMG_VERIFIED || strcmp(i->m.name, name) || i == top || i == prev ||
		    i->refs > 0)
			continue;
		i->st = IMG_REMOVED;
		if (same_bytes(im, i, IMG_VERIFIED)) {
			i->mounted = false; /* the mount is the other version's too */
		} else {
			if (i->mounted)
				unmount_image(im, i);
			char ip[PATH_MAX];
			img_path(im, i, ip);
			unlink(ip);
		}
		cells_err_t e;
		if (db_set_state(d, i, &e) < 0)
			log_error("images: %s", e.msg);
		audit_image(d, "cellsd", "image.removed", "ok", i, NULL, NULL);
		log_info("image %s@%llu removed (an older version no VP holds)", i->m.name,
			 (unsigned long long)i->m.version);
	}
}

/* --- module --- */

static int load(struct cellsd *d, cells_err_t *err)
{
	struct images *im = d->images;
	cleanup_stmt sqlite3_stmt *q = NULL;
	if (sqldb_prepare(d->db,
			  "SELECT name, version, sha256, size, fs_type, created, expires_at, state,"
			  " reason FROM image ORDER BY name, version",
			  &q, err) < 0)
		return -1;
	while (sqlite3_step(q) == SQLITE_ROW) {
		struct pol_image_manifest m;
		memset(&m, 0, sizeof m);
		snprintf(m.name, sizeof m.name, "%s", (const char *)sqlite3_column_text(q, 0));
		m.version = (uint64_t)sqlite3_column_int64(q, 1);
		if (sqlite3_column_bytes(q, 2) != 32)
			continue;
		memcpy(m.sha256, sqlite3_column_blob(q, 2), 32);
		m.size = (uint64_t)sqlite3_column_int64(q, 3);
		snprintf(m.fs_type, sizeof m.fs_type, "%s",
			 (const char *)sqlite3_column_text(q, 4));
		m.created = sqlite3_column_int64(q, 5);
		m.expires_at = sqlite3_column_int64(q, 6);
		struct image *i = add(im, &m);
		if (!i)
			return cells_err_sys(err, ENOMEM, "images");
		const char *st = (const char *)sqlite3_column_text(q, 7);
		for (unsigned s = 0; s < CELLS_ARRAY_SIZE(state_names); s++)
			if (!strcmp(st, state_names[s]))
				i->st = (enum img_state)s;
		snprintf(i->reason, sizeof i->reason, "%s",
			 (const char *)sqlite3_column_text(q, 8));
	}
	/* check what the files say */
	for (size_t k = 0; k < im->n; k++) {
		struct image *i = &im->v[k];
		char p[PATH_MAX], mp[PATH_MAX];
		struct stat sb;
		mnt_path(im, i, mp);
		if (i->st == IMG_VERIFIED) {
			img_path(im, i, p);
			if (stat(p, &sb) < 0 || !S_ISREG(sb.st_mode) ||
			    (uint64_t)sb.st_size != i->m.size) {
				fail_image(d, i, "cellsd",
					   "the image file is missing or not of the signed size");
				continue;
			}
			i->mounted = loopdev_is_mountpoint(mp);
		} else if (i->st == IMG_PENDING) {
			part_path(im, i, p);
			if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode))
				i->have = (uint64_t)sb.st_size;
		}
	}
	return 0;
}

int images_init(struct cellsd *d, cells_err_t *err)
{
	if (sqldb_migrate(d->db, "images", images_schema, CELLS_ARRAY_SIZE(images_schema), err) < 0)
		return cells_err_prefix(err, "images");
	struct images *im = calloc(1, sizeof *im);
	if (!im)
		return cells_err_sys(err, ENOMEM, "images");
	d->images = im;
	snprintf(im->dir, sizeof im->dir, "%s/images", d->state_dir);
	snprintf(im->partial, sizeof im->partial, "%s/images/partial", d->state_dir);
	snprintf(im->mnt, sizeof im->mnt, "%s/images", d->run_dir);
	if (cells_mkdir_p(im->partial, 0700, err) < 0 || cells_mkdir_p(im->mnt, 0755, err) < 0)
		return cells_err_prefix(err, "images");
	if (load(d, err) < 0)
		return -1;
	/* the newest complete version of each name is mounted, ready for its VPs */
	for (size_t k = 0; k < im->n; k++) {
		struct image *i = &im->v[k];
		cells_err_t e;
		if (i->st == IMG_VERIFIED && !i->mounted && newest_verified(im, i->m.name) == i &&
		    mount_image(d, i, &e) < 0)
			log_warn("images: %s", e.msg);
	}
	return 0;
}

void images_fini(struct cellsd *d)
{
	struct images *im = d->images;
	if (!im)
		return;
	imports_stop(d);
	for (size_t k = 0; k < im->n; k++)
		if (im->v[k].mounted)
			unmount_image(im, &im->v[k]);
	free(im->v);
	free(im);
	d->images = NULL;
}

/* --- verification --- */

static int verify(struct cellsd *d, const uint8_t *blob, size_t n, bool bare,
		  struct pol_image_bundle *b, struct pol_image_manifest *m, cells_err_t *err)
{
	struct pol_trust t;
	if (policy_trust_get(d, &t, err) < 0)
		return -1;
	if (pol_image_bundle_decode(blob, n, b, err) < 0)
		return -1;
	if (bare && b->manifest != b->pb) {
		pol_image_bundle_free(b);
		return cells_err_set(err, EBADMSG, "an offered image must be a Signed manifest");
	}
	struct pol_image_limits lim = {
	    .max_size = opt_max_size, .highest = highest, .ctx = d->images};
	int r = pol_image_bundle_verify(&t, b, time(NULL), &lim, m, NULL, err);
	if (r < 0)
		pol_image_bundle_free(b);
	return r;
}

/* Verify and record; *out the image entry (new or held). */
static int accept_manifest(struct cellsd *d, const uint8_t *blob, size_t n, bool bare,
			   const char *actor, struct image **out, cells_err_t *err)
{
	struct images *im = d->images;
	struct pol_image_bundle b;
	struct pol_image_manifest m;
	int r = verify(d, blob, n, bare, &b, &m, err);
	if (r < 0) {
		audit_image(d, actor, "image.rejected", "refused", NULL, err->msg, NULL);
		log_warn("image from %s rejected: %s", actor, err->msg);
		return -1;
	}
	struct image *i = find(im, m.name, m.version);
	if (r == 1 && i && i->st != IMG_FAILED && i->st != IMG_REMOVED) {
		pol_image_bundle_free(&b);
		*out = i;
		return 1;
	}
	if (!i && !(i = add(im, &m))) {
		pol_image_bundle_free(&b);
		return cells_err_sys(err, ENOMEM, "images");
	}
	i->m = m;
	i->st = IMG_PENDING;
	i->reason[0] = 0;
	i->have = 0;
	if (audit_image(d, actor, "image.accepted", "ok", i, NULL, err) < 0 ||
	    db_insert(d, i, b.manifest, err) < 0) {
		pol_image_bundle_free(&b);
		i->st = IMG_FAILED;
		snprintf(i->reason, sizeof i->reason, "%s", err->msg);
		return cells_err_prefix(err, "image %s@%llu", m.name,
					(unsigned long long)m.version);
	}
	pol_image_bundle_free(&b);
	log_info("image %s@%llu (%s) accepted from %s", i->m.name, (unsigned long long)i->m.version,
		 i->hex, actor);
	*out = i;
	return 0;
}

/* The partial file of i is complete as far as the writer knows: check its size (from the
 * file) and given, the SHA-256 cellsd computed of the bytes as it wrote them (never what
 * a peer says), against the signed manifest; rename, mount. */
static int finish(struct cellsd *d, struct image *i, const uint8_t *given, const char *actor,
		  cells_err_t *err)
{
	struct images *im = d->images;
	char pp[PATH_MAX], ip[PATH_MAX];
	part_path(im, i, pp);
	img_path(im, i, ip);
	uint8_t h[32];
	uint64_t size = 0;
	{
		cleanup_close int fd = open(pp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		struct stat sb;
		if (fd < 0 || fsync(fd) < 0 || fstat(fd, &sb) < 0) {
			cells_err_sys(err, errno, "sync %s", pp);
			fail_image(d, i, actor, err->msg);
			return -1;
		}
		memcpy(h, given, 32);
		size = (uint64_t)sb.st_size;
	}
	if (size != i->m.size) {
		cells_err_set(err, EBADMSG,
			      "image %s@%llu: %llu bytes received, the signed manifest says %llu",
			      i->m.name, (unsigned long long)i->m.version, (unsigned long long)size,
			      (unsigned long long)i->m.size);
		fail_image(d, i, actor, err->msg);
		return -1;
	}
	if (memcmp(h, i->m.sha256, 32)) {
		cells_err_set(err, EBADMSG,
			      "image %s@%llu: SHA-256 does not match the signed manifest",
			      i->m.name, (unsigned long long)i->m.version);
		fail_image(d, i, actor, err->msg);
		return -1;
	}
	if (rename(pp, ip) < 0) {
		cells_err_sys(err, errno, "rename %s", pp);
		fail_image(d, i, actor, err->msg);
		return -1;
	}
	{
		cleanup_close int dfd = open(im->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0)
			fsync(dfd);
	}
	i->st = IMG_VERIFIED;
	i->have = size;
	i->reason[0] = 0;
	if (db_set_state(d, i, err) < 0)
		return -1;
	audit_image(d, actor, "image.verified", "ok", i, NULL, NULL);
	log_info("image %s@%llu verified (%s)", i->m.name, (unsigned long long)i->m.version,
		 i->hex);
	retire_old(d, i->m.name);
	if (mount_image(d, i, err) < 0) {
		audit_image(d, actor, "image.mount_failed", "failed", i, err->msg, NULL);
		return -1;
	}
	return 0;
}

static json_object *describe(struct images *im, const struct image *i)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "name", json_object_new_string(i->m.name));
	json_object_object_add(o, "version", json_object_new_int64((int64_t)i->m.version));
	json_object_object_add(o, "sha256", json_object_new_string(i->hex));
	json_object_object_add(o, "size", json_object_new_int64((int64_t)i->m.size));
	json_object_object_add(o, "fs_type", json_object_new_string(i->m.fs_type));
	json_object_object_add(o, "expires_at", json_object_new_int64(i->m.expires_at));
	const char *st = i->st == IMG_PENDING
			     ? (i->writer == W_IMPORT ? "importing" : "downloading")
			 : i->st == IMG_VERIFIED ? (i->mounted ? "mounted" : "verified")
						 : state_names[i->st];
	json_object_object_add(o, "state", json_object_new_string(st));
	json_object_object_add(
	    o, "bytes",
	    json_object_new_int64((int64_t)(i->st == IMG_VERIFIED ? i->m.size : i->have)));
	json_object_object_add(o, "refs", json_object_new_int64(i->refs));
	char line[CELLS_ERR_MSG_MAX + 64];
	if (i->st == IMG_PENDING && i->writer == W_IMPORT)
		snprintf(line, sizeof line, "importing %llu bytes", (unsigned long long)i->m.size);
	else if (i->st == IMG_PENDING)
		snprintf(line, sizeof line, "downloading %llu/%llu bytes",
			 (unsigned long long)i->have, (unsigned long long)i->m.size);
	else if (i->st == IMG_VERIFIED && i->mounted)
		snprintf(line, sizeof line, "mounted (%u refs)", i->refs);
	else if (i->st == IMG_FAILED)
		snprintf(line, sizeof line, "failed: %s", i->reason);
	else
		snprintf(line, sizeof line, "%s", st);
	json_object_object_add(o, "status", json_object_new_string(line));
	if (i->st == IMG_FAILED)
		json_object_object_add(o, "reason", json_object_new_string(i->reason));
	if (i->mounted) {
		char mp[PATH_MAX];
		mnt_path(im, i, mp);
		json_object_object_add(o, "path", json_object_new_string(mp));
	}
	return o;
}

/* An import copies in a thread of its own (a 4 GB image is a minute of I/O; the loop
 * keeps serving calls, calls and VPs meanwhile): the image's bytes from the client's fd
 * into the partial file, hashing as it goes, then fsync. The loop, woken by the eventfd,
 * checks size and hash against the signed manifest and renames and mounts (finish). */
struct import_job {
	struct import_job *next;
	struct cellsd *d;
	char hex[65], name[IMAGES_NAME_MAX + 1], actor[64];
	uint64_t version, limit; /* at most the signed size + 1 bytes */
	int in, out, efd;
	pthread_t th;
	atomic_bool stop;  /* cellsd is stopping */
	int err_no;	   /* the thread's outcome: 0 or errno */
	char err_what[32]; /* what failed */
	uint8_t sha[32];   /* of the bytes copied */
	images_import_done done;
	void *data;
};

static void *import_copy(void *arg)
{
	struct import_job *j = arg;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	uint8_t *buf = malloc(1 << 20);
	uint64_t total = 0;
	if (!c || !buf || !EVP_DigestInit_ex(c, EVP_sha256(), NULL)) {
		j->err_no = ENOMEM;
		snprintf(j->err_what, sizeof j->err_what, "sha256");
		goto out;
	}
	for (;;) {
		size_t want = 1 << 20;
		if (j->limit - total < want)
			want = (size_t)(j->limit - total);
		if (want == 0)
			break; /* one byte over the signed size: enough to refuse */
		if (atomic_load(&j->stop)) {
			j->err_no = ECANCELED;
			snprintf(j->err_what, sizeof j->err_what, "cellsd stopping");
			goto out;
		}
		ssize_t k = read(j->in, buf, want);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			j->err_no = errno;
			snprintf(j->err_what, sizeof j->err_what, "read the image file");
			goto out;
		}
		if (k == 0)
			break;
		if (cells_write_all(j->out, buf, (size_t)k) < 0) {
			j->err_no = errno;
			snprintf(j->err_what, sizeof j->err_what, "write the partial file");
			goto out;
		}
		EVP_DigestUpdate(c, buf, (size_t)k);
		total += (uint64_t)k;
		if (total > (1 << 20)) {
			testhook_point("image-import-copying");
		}
	}
	if (fsync(j->out) < 0) {
		j->err_no = errno;
		snprintf(j->err_what, sizeof j->err_what, "sync the partial file");
		goto out;
	}
	EVP_DigestFinal_ex(c, j->sha, NULL);
out:
	EVP_MD_CTX_free(c);
	free(buf);
	uint64_t one = 1;
	if (write(j->efd, &one, sizeof one) < 0) {
		/* an eventfd write fails only on overflow: the loop is woken anyway */
	}
	return NULL;
}

static void job_unlink(struct images *im, struct import_job *j)
{
	for (struct import_job **p = &im->jobs; *p; p = &(*p)->next)
		if (*p == j) {
			*p = j->next;
			return;
		}
}

static void job_free(struct import_job *j)
{
	if (j->in >= 0)
		close(j->in);
	if (j->out >= 0)
		close(j->out);
	if (j->efd >= 0)
		close(j->efd);
	free(j);
}

/* The copy ended (the loop): check and use it, or fail the image; tell the caller. */
static void import_ended(struct loop *l, int fd, uint32_t events, void *data)
{
	struct import_job *j = data;
	struct cellsd *d = j->d;
	struct images *im = d->images;
	(void)events;
	loop_del_fd(l, fd);
	pthread_join(j->th, NULL);
	job_unlink(im, j);
	set_writer(im, j->hex, W_NONE);
	cells_err_t err = {0};
	json_object *desc = NULL;
	struct image *i = find(im, j->name, j->version);
	if (!i || i->st != IMG_PENDING) {
		cells_err_set(&err, ECANCELED, "image %s@%llu: no longer pending", j->name,
			      (unsigned long long)j->version);
	} else if (j->err_no) {
		cells_err_sys(&err, j->err_no, "%s", j->err_what);
		fail_image(d, i, j->actor, err.msg);
	} else if (finish(d, i, j->sha, j->actor, &err) == 0) {
		desc = describe(im, i);
	}
	j->done(d, desc, desc ? NULL : &err, j->data);
	if (im->on_imported)
		im->on_imported(d, j->hex, desc ? NULL : &err);
	job_free(j);
}

void images_on_imported(struct cellsd *d, images_imported_fn fn)
{
	d->images->on_imported = fn;
}

/* An import still copying stops at its next chunk; its partial file is left, and the
 * image stays pending (imported again, or downloaded, later). A copy stuck in a read
 * (a hung network or FUSE file system) is not waited for past IMPORT_STOP_WAIT_S: its
 * thread and job are left to the process's exit (the thread touches nothing else). */
#define IMPORT_STOP_WAIT_S 2
static void imports_stop(struct cellsd *d)
{
	struct images *im = d->images;
	while (im->jobs) {
		struct import_job *j = im->jobs;
		im->jobs = j->next;
		atomic_store(&j->stop, true);
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += IMPORT_STOP_WAIT_S;
		bool joined = pthread_timedjoin_np(j->th, NULL, &until) == 0;
		loop_del_fd(d->loop, j->efd);
		cells_err_t err = {0};
		cells_err_set(&err, ECANCELED, "cellsd is stopping");
		j->done(d, NULL, &err, j->data);
		if (joined) {
			job_free(j);
		} else {
			log_warn("image import %s: its copy is stuck in a read after %d s: left "
				 "behind",
				 j->hex, IMPORT_STOP_WAIT_S);
			pthread_detach(j->th);
		}
	}
}

int images_import(struct cellsd *d, int fd, const uint8_t *bundle, size_t n, const char *actor,
		  images_import_done done, void *data, json_object **desc, cells_err_t *err)
{
	struct images *im = d->images;
	struct image *i;
	int r = accept_manifest(d, bundle, n, false, actor, &i, err);
	if (r < 0)
		return -1;
	if (r == 1 && i->st == IMG_VERIFIED) {
		if (!i->mounted && mount_image(d, i, err) < 0)
			return -1;
		*desc = describe(im, i);
		return 0;
	}
	enum img_writer w = hex_writer(im, i->hex);
	if (w != W_NONE)
		return cells_err_set(err, EBUSY, "image %s@%llu: %s", i->m.name,
				     (unsigned long long)i->m.version,
				     w == W_IMPORT ? "an import of these bytes is in progress"
						   : "it is being downloaded from the MDM");
	struct import_job *j = calloc(1, sizeof *j);
	if (!j)
		return cells_err_sys(err, ENOMEM, "image import");
	j->d = d;
	j->in = j->out = -1;
	j->done = done;
	j->data = data;
	memcpy(j->hex, i->hex, sizeof j->hex);
	snprintf(j->name, sizeof j->name, "%s", i->m.name);
	snprintf(j->actor, sizeof j->actor, "%s", actor);
	j->version = i->m.version;
	j->limit = i->m.size + 1;
	char pp[PATH_MAX];
	part_path(im, i, pp);
	unlink(pp);
	j->out = open(pp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	j->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	j->in = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (j->out < 0 || j->efd < 0 || j->in < 0) {
		cells_err_sys(err, errno, "image import: %s", j->out < 0 ? pp : "fds");
		fail_image(d, i, actor, err->msg);
		job_free(j);
		return -1;
	}
	if (loop_add_fd(d->loop, j->efd, EPOLLIN, import_ended, j, err) < 0) {
		job_free(j);
		return -1;
	}
	int e = pthread_create(&j->th, NULL, import_copy, j);
	if (e) {
		loop_del_fd(d->loop, j->efd);
		job_free(j);
		return cells_err_sys(err, e, "image import: thread");
	}
	set_writer(im, i->hex, W_IMPORT);
	j->next = im->jobs;
	im->jobs = j;
	log_info("image %s@%llu: import started (%llu bytes)", i->m.name,
		 (unsigned long long)i->m.version, (unsigned long long)i->m.size);
	return 1;
}

int images_offer(struct cellsd *d, const uint8_t *signed_blob, size_t n, const char *actor,
		 struct pol_image_manifest *m, bool *complete, cells_err_t *err)
{
	struct image *i;
	int r = accept_manifest(d, signed_blob, n, true, actor, &i, err);
	if (r < 0)
		return -1;
	*m = i->m;
	*complete = i->st == IMG_VERIFIED;
	return r;
}

int images_partial_open(struct cellsd *d, const char *hex, uint64_t *have, uint64_t *size,
			cells_err_t *err)
{
	struct images *im = d->images;
	struct image *i = find_hex(im, hex);
	if (!i || i->st != IMG_PENDING)
		return cells_err_set(err, ENOENT, "no download pending for image %s", hex);
	if (hex_writer(im, hex) == W_IMPORT)
		return cells_err_set(err, EBUSY,
				     "image %s: an import of these bytes is in progress", hex);
	char pp[PATH_MAX];
	part_path(im, i, pp);
	int fd = open(pp, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return cells_err_sys(err, errno, "open %s", pp);
	struct stat sb;
	if (fstat(fd, &sb) < 0) {
		close(fd);
		return cells_err_sys(err, errno, "stat %s", pp);
	}
	i->have = (uint64_t)sb.st_size;
	*have = i->have;
	*size = i->m.size;
	set_writer(im, hex, W_DOWNLOAD);
	return fd;
}

void images_partial_progress(struct cellsd *d, const char *hex, uint64_t have)
{
	struct image *i = find_hex(d->images, hex);
	if (i && i->st == IMG_PENDING)
		i->have = have;
}

int images_partial_finish(struct cellsd *d, const char *hex, const uint8_t *sha256,
			  cells_err_t *err)
{
	struct image *i = find_hex(d->images, hex);
	if (!i || i->st != IMG_PENDING || i->writer != W_DOWNLOAD)
		return cells_err_set(err, ENOENT, "no download pending for image %s", hex);
	set_writer(d->images, hex, W_NONE);
	return finish(d, i, sha256, "mgmt", err);
}

int images_next_pending(struct cellsd *d, char hex[65], char ref[IMAGES_NAME_MAX + 24])
{
	struct images *im = d->images;
	for (size_t k = 0; im && k < im->n; k++)
		if (im->v[k].st == IMG_PENDING && im->v[k].writer != W_IMPORT) {
			memcpy(hex, im->v[k].hex, 65);
			snprintf(ref, IMAGES_NAME_MAX + 24, "%s@%llu", im->v[k].m.name,
				 (unsigned long long)im->v[k].m.version);
			return 0;
		}
	return -1;
}

void images_partial_release(struct cellsd *d, const char *hex)
{
	if (hex_writer(d->images, hex) == W_DOWNLOAD)
		set_writer(d->images, hex, W_NONE);
}

void images_partial_fail(struct cellsd *d, const char *hex, const char *reason)
{
	struct image *i = find_hex(d->images, hex);
	if (i && i->st == IMG_PENDING && i->writer != W_IMPORT) {
		set_writer(d->images, hex, W_NONE);
		fail_image(d, i, "mgmt", reason);
	}
}

json_object *images_list(struct cellsd *d)
{
	struct images *im = d->images;
	json_object *o = json_object_new_object(), *a = json_object_new_array();
	for (size_t k = 0; k < im->n; k++)
		json_object_array_add(a, describe(im, &im->v[k]));
	json_object_object_add(o, "images", a);
	return o;
}

json_object *images_status(struct cellsd *d, const char *name, cells_err_t *err)
{
	struct images *im = d->images;
	json_object *a = NULL;
	for (size_t k = im->n; k-- > 0;) {
		if (strcmp(im->v[k].m.name, name))
			continue;
		if (!a)
			a = json_object_new_array();
		json_object_array_add(a, describe(im, &im->v[k]));
	}
	if (!a) {
		cells_err_set(err, ENOENT, "image %s is not on the device", name);
		return NULL;
	}
	json_object *o = json_object_new_object();
	json_object_object_add(o, "images", a);
	return o;
}

/* --- the VP manager's contract --- */

int images_acquire(struct cellsd *d, const char *name, uint64_t version, char path[PATH_MAX],
		   cells_err_t *err)
{
	struct images *im = d->images;
	struct image *i = im ? find(im, name, version) : NULL;
	if (!i || i->st != IMG_VERIFIED)
		return cells_err_set(err, ENOENT,
				     "image %s@%llu is not complete and verified on the device",
				     name, (unsigned long long)version);
	if (!i->mounted && mount_image(d, i, err) < 0)
		return -1;
	i->refs++;
	mnt_path(im, i, path);
	return 0;
}

void images_release(struct cellsd *d, const char *name, uint64_t version)
{
	struct images *im = d->images;
	struct image *i = im ? find(im, name, version) : NULL;
	if (!i || i->refs == 0)
		return;
	if (--i->refs == 0)
		retire_old(d, name);
}
