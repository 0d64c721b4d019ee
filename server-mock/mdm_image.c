/* mdm_image.c - signed VP images (docs/IMAGES.md): `cells-mdm image build|sign|push|list`
 * and the download endpoint of `cells-mdm serve`, GET /v1/images/<sha256>.
 *
 * build: mkfs.erofs or mksquashfs (forked and executed, no shell) with fixed timestamps
 * and a fixed UUID, so the same tree gives the same bytes; the tree's ownership is kept
 * (a VP image holds uids 0..65535, the device idmaps them). Then OUT.manifest.json.
 * sign: the manifest (checked again against the file) as a SIGNED_IMAGE_MANIFEST in an
 * ImageBundle (mdm_sign_bundle: the key must hold KEY_ROLE_IMAGES) -> OUT.bundle.
 * push: the image copied to STATE_DIR/images/<sha256>.img, a row in table images, and
 * for each device an Envelope.image offer in the durable queue (MDM_QK_IMAGE, dedup key
 * "image:NAME@VERSION"); the device answers with a CommandResult whose command_id is
 * "image:NAME@VERSION". A version at or below one pushed for the name is refused (the
 * newest image again, same version and SHA-256, may go to more devices).
 * The endpoint streams the file in chunks from the WRITEABLE callback, with Range. */
#include "cleanup.h"
#include "log.h"
#include "mdm.h"
#include "mdm_db.h"
#include "mdm_store.h"
#include "pol_sig.h"
#include "util.h"
#include "wire.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <libwebsockets.h>
#include <openssl/evp.h>

#define IMAGE_NAME_MAX 32
#define PRIO_IMAGE 55 /* after trust updates (60), before the policies that name it (50) */
#define MANIFEST_JSON_MAX (16 * 1024)
#define DL_CHUNK (16 * 1024) /* at most one HTTP/2 frame of the default size */
#define DL_STALL_S 60	     /* a client that reads nothing for this long is dropped */

/* ---- the manifest ---- */

struct manifest {
	char name[IMAGE_NAME_MAX + 1];
	uint64_t version, size;
	uint8_t sha256[32];
	int64_t created, expires_at;
	char fs_type[16];
};

/* [a-z0-9][a-z0-9._-]{0,31} */
static int name_check(const char *n, cells_err_t *err)
{
	size_t l = strlen(n);
	if (l < 1 || l > IMAGE_NAME_MAX || !strchr("abcdefghijklmnopqrstuvwxyz0123456789", n[0]) ||
	    strspn(n, "abcdefghijklmnopqrstuvwxyz0123456789._-") != l)
		return cells_err_set(err, EINVAL,
				     "image name '%.40s' is not [a-z0-9][a-z0-9._-]{0,31}", n);
	return 0;
}

static bool fs_known(const char *fs)
{
	return !strcmp(fs, "erofs") || !strcmp(fs, "squashfs");
}

static int hex_decode32(const char *h, uint8_t out[32])
{
	if (strlen(h) != 64 || strspn(h, "0123456789abcdef") != 64)
		return -1;
	for (size_t i = 0; i < 32; i++) {
		unsigned v;
		if (sscanf(h + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (uint8_t)v;
	}
	return 0;
}

/* Size and SHA-256 of a file, read in chunks. */
static int file_sha256(const char *path, uint64_t *size, uint8_t out[32], cells_err_t *err)
{
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cells_err_sys(err, errno, "open %s", path);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	if (!c || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(c);
		return cells_err_set(err, EIO, "sha256");
	}
	static uint8_t buf[64 * 1024];
	uint64_t n = 0;
	ssize_t r;
	while ((r = read(fd, buf, sizeof buf)) > 0) {
		EVP_DigestUpdate(c, buf, (size_t)r);
		n += (uint64_t)r;
	}
	int e = errno;
	unsigned l = 32;
	EVP_DigestFinal_ex(c, out, &l);
	EVP_MD_CTX_free(c);
	if (r < 0)
		return cells_err_sys(err, e, "read %s", path);
	*size = n;
	return 0;
}

static int manifest_check(const struct manifest *mf, cells_err_t *err)
{
	if (name_check(mf->name, err) < 0)
		return -1;
	if (mf->version < 1)
		return cells_err_set(err, EINVAL, "image version must be >= 1");
	if (!fs_known(mf->fs_type))
		return cells_err_set(err, EINVAL, "fs_type '%s' is not erofs or squashfs",
				     mf->fs_type);
	if (mf->expires_at <= 0 || mf->expires_at <= mf->created)
		return cells_err_set(err, EINVAL, "expires_at must be after created");
	return 0;
}

static json_object *manifest_json(const struct manifest *mf)
{
	char hex[65];
	cells_hex(mf->sha256, 32, hex);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "name", json_object_new_string(mf->name));
	json_object_object_add(o, "version", json_object_new_int64((int64_t)mf->version));
	json_object_object_add(o, "size", json_object_new_int64((int64_t)mf->size));
	json_object_object_add(o, "sha256", json_object_new_string(hex));
	json_object_object_add(o, "created", json_object_new_int64(mf->created));
	json_object_object_add(o, "expires_at", json_object_new_int64(mf->expires_at));
	json_object_object_add(o, "fs_type", json_object_new_string(mf->fs_type));
	return o;
}

/* IMG.manifest.json -> mf (validated); the file's size and SHA-256 must match it. */
static int manifest_read(const char *img, struct manifest *mf, cells_err_t *err)
{
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s.manifest.json", img);
	cleanup_free uint8_t *t = NULL;
	size_t n;
	if (cells_read_file(p, MANIFEST_JSON_MAX, &t, &n, err) < 0)
		return -1;
	enum json_tokener_error je;
	json_object *o = json_tokener_parse_verbose((const char *)t, &je);
	json_object *v;
	memset(mf, 0, sizeof *mf);
	int rc = cells_err_set(err, EINVAL,
			       "%s: not a manifest (name, version, size, sha256, "
			       "created, expires_at, fs_type)",
			       p);
#define STR(k, dst)                                                                                \
	(json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string) &&        \
	 strlen(json_object_get_string(v)) < sizeof(dst) &&                                        \
	 snprintf(dst, sizeof(dst), "%s", json_object_get_string(v)) >= 0)
#define INT(k, dst)                                                                                \
	(json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_int) &&           \
	 json_object_get_int64(v) >= 0 && ((dst) = json_object_get_int64(v), true))
	char hex[80];
	int64_t ver, size;
	if (o && json_object_is_type(o, json_type_object) && STR("name", mf->name) &&
	    INT("version", ver) && INT("size", size) && STR("sha256", hex) &&
	    INT("created", mf->created) && INT("expires_at", mf->expires_at) &&
	    STR("fs_type", mf->fs_type) && hex_decode32(hex, mf->sha256) == 0) {
		mf->version = (uint64_t)ver;
		mf->size = (uint64_t)size;
		rc = manifest_check(mf, err) < 0 ? cells_err_prefix(err, "%s", p) : 0;
	}
#undef STR
#undef INT
	json_object_put(o);
	if (rc < 0)
		return -1;
	uint8_t h[32];
	uint64_t sz;
	if (file_sha256(img, &sz, h, err) < 0)
		return -1;
	if (sz != mf->size || memcmp(h, mf->sha256, 32))
		return cells_err_set(err, EBADMSG,
				     "%s does not match its manifest (size %llu, manifest %llu; "
				     "or another SHA-256): build it again",
				     img, (unsigned long long)sz, (unsigned long long)mf->size);
	return 0;
}

/* The serialized ImageManifest of mf (*out owned). */
static int manifest_pack(const struct manifest *mf, uint8_t **out, size_t *len, cells_err_t *err)
{
	Cells__V1__ImageManifest im = CELLS__V1__IMAGE_MANIFEST__INIT;
	im.name = (char *)mf->name;
	im.version = mf->version;
	im.size = mf->size;
	im.sha256.data = (uint8_t *)mf->sha256;
	im.sha256.len = 32;
	im.created = mf->created;
	im.expires_at = mf->expires_at;
	im.fs_type = (char *)mf->fs_type;
	size_t n = cells__v1__image_manifest__get_packed_size(&im);
	if (n > CELLS_MAX_IMAGE_MANIFEST)
		return cells_err_set(err, EMSGSIZE, "image manifest over %d bytes",
				     CELLS_MAX_IMAGE_MANIFEST);
	uint8_t *b = malloc(n ? n : 1);
	if (!b)
		return cells_err_sys(err, ENOMEM, "image manifest");
	cells__v1__image_manifest__pack(&im, b);
	*out = b;
	*len = n;
	return 0;
}

/* A Signed SIGNED_IMAGE_MANIFEST's payload -> mf (validated). */
static int manifest_unpack(const Cells__V1__Signed *s, struct manifest *mf, cells_err_t *err)
{
	if (!s || s->kind != CELLS__V1__SIGNED_KIND__SIGNED_IMAGE_MANIFEST ||
	    s->payload.len > CELLS_MAX_IMAGE_MANIFEST)
		return cells_err_set(err, EBADMSG, "not a signed image manifest");
	Cells__V1__ImageManifest *im =
	    cells__v1__image_manifest__unpack(NULL, s->payload.len, s->payload.data);
	if (!im)
		return cells_err_set(err, EBADMSG, "image manifest: malformed");
	memset(mf, 0, sizeof *mf);
	int rc = 0;
	if (strlen(im->name) > IMAGE_NAME_MAX || strlen(im->fs_type) >= sizeof mf->fs_type ||
	    im->sha256.len != 32)
		rc = cells_err_set(err, EBADMSG, "image manifest: bad fields");
	else {
		snprintf(mf->name, sizeof mf->name, "%s", im->name);
		snprintf(mf->fs_type, sizeof mf->fs_type, "%s", im->fs_type);
		memcpy(mf->sha256, im->sha256.data, 32);
		mf->version = im->version;
		mf->size = im->size;
		mf->created = im->created;
		mf->expires_at = im->expires_at;
		rc = manifest_check(mf, err);
	}
	cells__v1__image_manifest__free_unpacked(im, NULL);
	return rc;
}

static void print_json(json_object *o)
{
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
}

static int fail(const struct mdm_cmd *cmd, const cells_err_t *err)
{
	fprintf(stderr, "cells-mdm: %s: %s\n", cmd->words, err->msg);
	return 1;
}

/* ---- image build ---- */

/* An executable named tool on $PATH. */
static bool on_path(const char *tool)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX];
	if (!path || !*path)
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	while (*path) {
		size_t l = strcspn(path, ":");
		if (l && l + strlen(tool) + 2 < sizeof buf) {
			snprintf(buf, sizeof buf, "%.*s/%s", (int)l, path, tool);
			if (access(buf, X_OK) == 0)
				return true;
		}
		path += l + (path[l] == ':');
	}
	return false;
}

/* Run argv (no shell), its output kept in a memfd; a failure's last line goes to err. */
static int run_tool(char *const argv[], const char *package, cells_err_t *err)
{
	if (!on_path(argv[0]))
		return cells_err_set(err, ENOENT, "%s not found on PATH (install %s)", argv[0],
				     package);
	cleanup_close int log = memfd_create("cells-mkfs-log", MFD_CLOEXEC);
	if (log < 0)
		return cells_err_sys(err, errno, "memfd_create");
	pid_t pid = fork();
	if (pid < 0)
		return cells_err_sys(err, errno, "fork");
	if (pid == 0) {
		int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (nul < 0 || dup2(nul, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0)
			_exit(126);
		close_range(3, ~0U, 0);
		/* our -T/-all-time options set the times; mksquashfs refuses both */
		unsetenv("SOURCE_DATE_EPOCH");
		execvp(argv[0], argv);
		_exit(127);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return cells_err_sys(err, errno, "waitpid");
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	/* the last non-empty line of its output */
	char out[4096] = "";
	off_t end = lseek(log, 0, SEEK_END);
	off_t from = end > (off_t)sizeof out - 1 ? end - (off_t)sizeof out + 1 : 0;
	ssize_t r = pread(log, out, sizeof out - 1, from);
	out[r > 0 ? r : 0] = 0;
	size_t l = strlen(out);
	while (l && (out[l - 1] == '\n' || out[l - 1] == ' '))
		out[--l] = 0;
	char *last = strrchr(out, '\n');
	return cells_err_set(
	    err, EIO, "%s failed (%s %d)%s%s", argv[0], WIFEXITED(st) ? "exit" : "signal",
	    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), l ? ": " : "", last ? last + 1 : out);
}

/* A UUID for the file system that depends only on name@version (reproducible). */
static void fixed_uuid(const char *name, uint64_t version, char out[37])
{
	char s[80];
	uint8_t h[32];
	unsigned hl = 32;
	snprintf(s, sizeof s, "cells-image:%s@%llu", name, (unsigned long long)version);
	EVP_Digest(s, strlen(s), h, &hl, EVP_sha256(), NULL);
	h[6] = (uint8_t)((h[6] & 0x0f) | 0x40); /* a version 4 layout, so tools accept it */
	h[8] = (uint8_t)((h[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11], h[12],
		 h[13], h[14], h[15]);
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	errno = 0;
	if (!*s || *s == '-')
		return -1;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int mdm_cmd_image_build(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	cells_err_t err = {0};
	const char *dir = NULL, *out = NULL, *fs = "erofs";
	struct manifest mf = {0};
	uint64_t days = 365;
	bool have_name = false;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "-o") && v)
			out = v, i++;
		else if (!strcmp(a, "--name") && v) {
			if (name_check(v, &err) < 0) {
				fprintf(stderr, "cells-mdm: image build: %s\n", err.msg);
				return 2;
			}
			snprintf(mf.name, sizeof mf.name, "%s", v);
			have_name = true, i++;
		} else if (!strcmp(a, "--version") && v) {
			if (parse_u64(v, 1, INT64_MAX, &mf.version) < 0) {
				fprintf(stderr, "cells-mdm: image build: --version takes a "
						"number >= 1\n");
				return 2;
			}
			i++;
		} else if (!strcmp(a, "--fs") && v) {
			if (!fs_known(v)) {
				fprintf(stderr,
					"cells-mdm: image build: --fs takes erofs or squashfs\n");
				return 2;
			}
			fs = v, i++;
		} else if (!strcmp(a, "--expires-days") && v) {
			if (parse_u64(v, 1, 36500, &days) < 0) {
				fprintf(stderr, "cells-mdm: image build: --expires-days takes "
						"1..36500\n");
				return 2;
			}
			i++;
		} else if (a[0] != '-' && !dir)
			dir = a;
		else
			return mdm_usage(cmd);
	}
	if (!dir || !out || !have_name || !mf.version)
		return mdm_usage(cmd);
	struct stat st;
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "cells-mdm: image build: %s is not a directory\n", dir);
		return 1;
	}
	/* the times of every file and of the file system: SOURCE_DATE_EPOCH, else 0 */
	uint64_t t = 0;
	const char *sde = getenv("SOURCE_DATE_EPOCH");
	if (sde && *sde && parse_u64(sde, 0, INT32_MAX, &t) < 0) {
		fprintf(stderr, "cells-mdm: image build: SOURCE_DATE_EPOCH is not a number\n");
		return 2;
	}
	char ts[24], uuid[37], tmp[PATH_MAX], topt[32], uopt[48];
	snprintf(ts, sizeof ts, "%llu", (unsigned long long)t);
	fixed_uuid(mf.name, mf.version, uuid);
	if (snprintf(tmp, sizeof tmp, "%s.tmp", out) >= (int)sizeof tmp) {
		fprintf(stderr, "cells-mdm: image build: output path too long\n");
		return 2;
	}
	unlink(tmp);
	int r;
	if (!strcmp(fs, "erofs")) {
		snprintf(topt, sizeof topt, "-T%s", ts);
		snprintf(uopt, sizeof uopt, "-U%s", uuid);
		char *args[] = {"mkfs.erofs", "--quiet", topt, uopt, tmp, (char *)dir, NULL};
		r = run_tool(args, "erofs-utils", &err);
	} else {
		char *args[] = {
		    "mksquashfs", (char *)dir, tmp,	     "-noappend", "-quiet", "-no-progress",
		    "-all-time",  ts,	       "-mkfs-time", ts,	  NULL};
		r = run_tool(args, "squashfs-tools", &err);
	}
	if (r < 0) {
		unlink(tmp);
		return fail(cmd, &err);
	}
	if (rename(tmp, out) < 0) {
		cells_err_sys(&err, errno, "rename %s", tmp);
		unlink(tmp);
		return fail(cmd, &err);
	}
	snprintf(mf.fs_type, sizeof mf.fs_type, "%s", fs);
	mf.created = time(NULL);
	mf.expires_at = mf.created + (int64_t)days * 86400;
	if (file_sha256(out, &mf.size, mf.sha256, &err) < 0)
		return fail(cmd, &err);
	json_object *o = manifest_json(&mf);
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY);
	char mp[PATH_MAX + 16];
	snprintf(mp, sizeof mp, "%s.manifest.json", out);
	char *body = NULL;
	if (asprintf(&body, "%s\n", text) < 0 ||
	    cells_write_file_atomic(mp, body, strlen(body), 0644, &err) < 0) {
		free(body);
		json_object_put(o);
		if (!err.msg[0])
			cells_err_sys(&err, ENOMEM, "manifest");
		return fail(cmd, &err);
	}
	free(body);
	char hex[65];
	cells_hex(mf.sha256, 32, hex);
	if (m->json) {
		json_object_object_add(o, "output", json_object_new_string(out));
		json_object_object_add(o, "manifest", json_object_new_string(mp));
		print_json(o);
	} else {
		printf("built %s image %s@%llu -> %s (%llu bytes, sha256 %s)\nmanifest: %s\n", fs,
		       mf.name, (unsigned long long)mf.version, out, (unsigned long long)mf.size,
		       hex, mp);
	}
	json_object_put(o);
	return 0;
}

/* ---- image sign ---- */

/* The ImageBundle of img (its manifest.json checked against the file). */
static int image_bundle(const struct mdm *m, const char *img, struct manifest *mf, uint8_t **out,
			size_t *len, cells_err_t *err)
{
	cleanup_free uint8_t *payload = NULL;
	size_t pn = 0;
	if (manifest_read(img, mf, err) < 0)
		return -1;
	if (mf->expires_at <= time(NULL))
		return cells_err_set(err, EKEYEXPIRED,
				     "the manifest of %s expired: build it again (--expires-days)",
				     img);
	if (manifest_pack(mf, &payload, &pn, err) < 0)
		return -1;
	return mdm_sign_bundle(m, CELLS__V1__SIGNED_KIND__SIGNED_IMAGE_MANIFEST, payload, pn, out,
			       len, err);
}

int mdm_cmd_image_sign(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	cells_err_t err = {0};
	if (argc != 1)
		return mdm_usage(cmd);
	const char *img = argv[0];
	struct manifest mf;
	cleanup_free uint8_t *b = NULL;
	size_t bn = 0;
	char out[PATH_MAX + 8];
	snprintf(out, sizeof out, "%s.bundle", img);
	if (image_bundle(m, img, &mf, &b, &bn, &err) < 0 ||
	    cells_write_file_atomic(out, b, bn, 0644, &err) < 0)
		return fail(cmd, &err);
	if (m->json) {
		json_object *o = manifest_json(&mf);
		json_object_object_add(o, "bundle", json_object_new_string(out));
		json_object_object_add(o, "bytes", json_object_new_int64((int64_t)bn));
		print_json(o);
		json_object_put(o);
	} else {
		printf("signed image %s@%llu -> %s (%zu bytes)\n", mf.name,
		       (unsigned long long)mf.version, out, bn);
	}
	return 0;
}

/* ---- the images table ---- */

/* The image rows of name: the highest version (0: none), and the sha256 of version v. */
static int image_versions(struct mdb *db, const char *name, uint64_t v, uint64_t *max,
			  char sha_of_v[65], cells_err_t *err)
{
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	*max = 0;
	sha_of_v[0] = 0;
	if (mdb_prepare(db, "SELECT version, sha256 FROM images WHERE name=?", &st, err) < 0)
		return -1;
	mdb_bind_text(st, 1, name);
	int r;
	while ((r = mdb_step(st)) == MDB_ROW) {
		uint64_t ver = (uint64_t)mdb_column_int64(st, 0);
		if (ver > *max)
			*max = ver;
		if (ver == v)
			snprintf(sha_of_v, 65, "%s", mdb_column_text(st, 1));
	}
	return r == MDB_DONE ? 0 : mdb_err(db, "images", err);
}

/* Copy src to dst (dst.tmp, fsync, rename), checking its SHA-256 on the way. */
static int copy_checked(const char *src, const char *dst, const uint8_t sha[32], cells_err_t *err)
{
	char tmp[PATH_MAX + 8];
	snprintf(tmp, sizeof tmp, "%s.tmp", dst);
	cleanup_close int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return cells_err_sys(err, errno, "open %s", src);
	cleanup_close int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0)
		return cells_err_sys(err, errno, "create %s", tmp);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	if (!c || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(c);
		return cells_err_set(err, EIO, "sha256");
	}
	static uint8_t buf[64 * 1024];
	ssize_t r;
	int rc = 0;
	while ((r = read(in, buf, sizeof buf)) > 0) {
		EVP_DigestUpdate(c, buf, (size_t)r);
		for (ssize_t w = 0; w < r;) {
			ssize_t k = write(out, buf + w, (size_t)(r - w));
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0) {
				rc = cells_err_sys(err, errno, "write %s", tmp);
				break;
			}
			w += k;
		}
		if (rc < 0)
			break;
	}
	if (r < 0 && rc == 0)
		rc = cells_err_sys(err, errno, "read %s", src);
	uint8_t h[32];
	unsigned hl = 32;
	EVP_DigestFinal_ex(c, h, &hl);
	EVP_MD_CTX_free(c);
	if (rc == 0 && memcmp(h, sha, 32))
		rc = cells_err_set(err, EBADMSG, "%s changed while it was copied", src);
	if (rc == 0 && fsync(out) < 0)
		rc = cells_err_sys(err, errno, "fsync %s", tmp);
	if (rc == 0 && rename(tmp, dst) < 0)
		rc = cells_err_sys(err, errno, "rename %s", tmp);
	if (rc < 0)
		unlink(tmp);
	return rc;
}

static const char *image_state_name(int st)
{
	return st == MDM_Q_ACKNOWLEDGED ? "done" : mdm_qstate_name(st);
}

int mdm_cmd_image_push(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	cells_err_t err = {0};
	if (argc != 2)
		return mdm_usage(cmd);
	const char *target = argv[0], *img = argv[1];
	/* the signed manifest: IMG.bundle of `image sign`, else signed now */
	char bp[PATH_MAX + 8];
	snprintf(bp, sizeof bp, "%s.bundle", img);
	cleanup_free uint8_t *b = NULL;
	size_t bn = 0;
	struct manifest mf;
	if (access(bp, F_OK) == 0) {
		if (cells_read_file(bp, CELLS_MAX_ENVELOPE, &b, &bn, &err) < 0)
			return fail(cmd, &err);
	} else if (image_bundle(m, img, &mf, &b, &bn, &err) < 0) {
		return fail(cmd, &err);
	}
	Cells__V1__ImageBundle *ib = cells__v1__image_bundle__unpack(NULL, bn, b);
	cleanup_free uint8_t *sm = NULL;
	size_t smn = 0;
	int r = ib && ib->manifest ? manifest_unpack(ib->manifest, &mf, &err)
				   : cells_err_set(&err, EBADMSG, "%s: not an image bundle", bp);
	if (r == 0)
		r = pol_signed_pack(ib->manifest, &sm, &smn, &err);
	if (ib)
		cells__v1__image_bundle__free_unpacked(ib, NULL);
	if (r < 0)
		return fail(cmd, &err);
	/* the file is the one the manifest names */
	uint8_t h[32];
	uint64_t size;
	if (file_sha256(img, &size, h, &err) < 0)
		return fail(cmd, &err);
	if (size != mf.size || memcmp(h, mf.sha256, 32)) {
		fprintf(stderr,
			"cells-mdm: image push: %s does not match its signed manifest (size or "
			"SHA-256): build and sign it again\n",
			img);
		return 1;
	}
	if (mf.expires_at <= time(NULL)) {
		fprintf(stderr, "cells-mdm: image push: the manifest of %s expired\n", img);
		return 1;
	}
	char hex[65], ref[IMAGE_NAME_MAX + 24];
	cells_hex(mf.sha256, 32, hex);
	snprintf(ref, sizeof ref, "%s@%llu", mf.name, (unsigned long long)mf.version);
	struct mdm_store *s = mdm_open_store(m, "image push");
	if (!s)
		return 1;
	struct mdb *db = mdm_store_db(s);
	char **ids = NULL;
	size_t cnt = 0;
	uint64_t max;
	char prev[65];
	int rc = 1;
	json_object *out = json_object_new_array();
	if (mdm_targets(s, target, &ids, &cnt, &err) < 0 ||
	    image_versions(db, mf.name, mf.version, &max, prev, &err) < 0) {
		fail(cmd, &err);
		goto done;
	}
	bool known = prev[0] != 0;
	if (known && strcmp(prev, hex)) {
		fprintf(stderr,
			"cells-mdm: image push: %s was pushed already as another image (sha256 "
			"%.16s...): build a version above %llu\n",
			ref, prev, (unsigned long long)max);
		goto done;
	}
	if (mf.version < max || (!known && mf.version == max)) {
		fprintf(stderr,
			"cells-mdm: image push: %s: version %llu is not above version %llu already "
			"pushed for %s\n",
			ref, (unsigned long long)mf.version, (unsigned long long)max, mf.name);
		goto done;
	}
	/* our copy: the admin may delete theirs */
	char dir[PATH_MAX], name[80], path[PATH_MAX];
	mdm_path(m, "images", dir);
	snprintf(name, sizeof name, "images/%s.img", hex);
	mdm_path(m, name, path);
	struct stat st;
	if (cells_mkdir_p(dir, 0700, &err) < 0 ||
	    ((stat(path, &st) < 0 || (uint64_t)st.st_size != mf.size) &&
	     copy_checked(img, path, mf.sha256, &err) < 0)) {
		fail(cmd, &err);
		goto done;
	}
	char abs[PATH_MAX];
	if (!realpath(path, abs)) {
		cells_err_sys(&err, errno, "realpath %s", path);
		fail(cmd, &err);
		goto done;
	}
	if (mdm_store_begin(s, &err) < 0) {
		fail(cmd, &err);
		goto done;
	}
	if (!known) {
		cleanup_mdb_stmt struct mdb_stmt *ins = NULL;
		if (mdb_prepare(db,
				"INSERT INTO images(name, version, ref, sha256, size, fs_type, "
				"created, expires_at, manifest, path, pushed_at) "
				"VALUES(?,?,?,?,?,?,?,?,?,?,?)",
				&ins, &err) < 0)
			goto rollback;
		mdb_bind_text(ins, 1, mf.name);
		mdb_bind_int64(ins, 2, (int64_t)mf.version);
		mdb_bind_text(ins, 3, ref);
		mdb_bind_text(ins, 4, hex);
		mdb_bind_int64(ins, 5, (int64_t)mf.size);
		mdb_bind_text(ins, 6, mf.fs_type);
		mdb_bind_int64(ins, 7, mf.created);
		mdb_bind_int64(ins, 8, mf.expires_at);
		mdb_bind_blob(ins, 9, sm, smn);
		mdb_bind_text(ins, 10, abs);
		mdb_bind_int64(ins, 11, time(NULL));
		if (mdb_step_done(ins, "add image", &err) < 0)
			goto rollback;
	}
	for (size_t i = 0; i < cnt; i++) {
		struct mdm_qentry e = {0};
		snprintf(e.device, sizeof e.device, "%s", ids[i]);
		e.kind = MDM_QK_IMAGE;
		e.priority = PRIO_IMAGE;
		e.created = time(NULL);
		e.expires = mf.expires_at;
		snprintf(e.dedup, sizeof e.dedup, "image:%s", ref);
		snprintf(e.what, sizeof e.what, "image %s", ref);
		e.blob = malloc(smn);
		if (!e.blob) {
			cells_err_sys(&err, ENOMEM, "queue");
			goto rollback;
		}
		memcpy(e.blob, sm, smn);
		e.blob_len = smn;
		int k = mdm_store_queue_add(s, &e, false, &err);
		if (k >= 0) {
			json_object *o = json_object_new_object();
			json_object_object_add(o, "id", json_object_new_string(e.id));
			json_object_object_add(o, "device_id", json_object_new_string(e.device));
			json_object_object_add(o, "image", json_object_new_string(ref));
			json_object_object_add(o, "duplicate", json_object_new_boolean(k == 1));
			json_object_array_add(out, o);
			if (!m->json)
				printf("%s image %s for %s: %s\n",
				       k == 1 ? "already queued:" : "queued", ref, e.device, e.id);
		}
		mdm_qentry_clear(&e);
		if (k < 0)
			goto rollback;
	}
	if (mdm_store_commit(s, &err) < 0) {
		fail(cmd, &err);
		goto done;
	}
	if (m->json) {
		json_object *o = manifest_json(&mf);
		json_object_object_add(o, "path", json_object_new_string(abs));
		json_object_object_add(o, "queued", json_object_get(out));
		print_json(o);
		json_object_put(o);
	} else if (!cnt) {
		printf("image %s recorded (%s); no enrolled device: nothing queued\n", ref, hex);
	}
	rc = 0;
	goto done;
rollback:
	fail(cmd, &err);
	mdb_rollback(db);
done:
	json_object_put(out);
	mdm_store_free_ids(ids, cnt);
	mdm_store_close(s);
	return rc;
}

/* ---- image list ---- */

int mdm_images_json(struct mdm_store *s, json_object **out, cells_err_t *err)
{
	struct mdb *db = mdm_store_db(s);
	cleanup_mdb_stmt struct mdb_stmt *st = NULL;
	cleanup_mdb_stmt struct mdb_stmt *q = NULL;
	if (mdb_prepare(db,
			"SELECT name, version, ref, sha256, size, fs_type, created, expires_at, "
			"path, pushed_at FROM images ORDER BY name, version",
			&st, err) < 0 ||
	    mdb_prepare(db,
			"SELECT device, state, reason, id, done_at FROM queue WHERE kind=?1 AND "
			"dedup=?2 ORDER BY device, seq",
			&q, err) < 0)
		return -1;
	json_object *arr = json_object_new_array();
	int r;
	while ((r = mdb_step(st)) == MDB_ROW) {
		json_object *o = json_object_new_object();
		char dedup[96];
		snprintf(dedup, sizeof dedup, "image:%s", mdb_column_text(st, 2));
		json_object_object_add(o, "name", json_object_new_string(mdb_column_text(st, 0)));
		json_object_object_add(o, "version",
				       json_object_new_int64(mdb_column_int64(st, 1)));
		json_object_object_add(o, "sha256", json_object_new_string(mdb_column_text(st, 3)));
		json_object_object_add(o, "size", json_object_new_int64(mdb_column_int64(st, 4)));
		json_object_object_add(o, "fs_type",
				       json_object_new_string(mdb_column_text(st, 5)));
		json_object_object_add(o, "created",
				       json_object_new_int64(mdb_column_int64(st, 6)));
		json_object_object_add(o, "expires_at",
				       json_object_new_int64(mdb_column_int64(st, 7)));
		json_object_object_add(o, "path", json_object_new_string(mdb_column_text(st, 8)));
		json_object_object_add(o, "pushed_at",
				       json_object_new_int64(mdb_column_int64(st, 9)));
		json_object *devs = json_object_new_array();
		mdb_reset(q);
		mdb_bind_int64(q, 1, MDM_QK_IMAGE);
		mdb_bind_text(q, 2, dedup);
		int k;
		while ((k = mdb_step(q)) == MDB_ROW) {
			json_object *d = json_object_new_object();
			json_object_object_add(d, "device_id",
					       json_object_new_string(mdb_column_text(q, 0)));
			json_object_object_add(
			    d, "state",
			    json_object_new_string(image_state_name(mdb_column_int(q, 1))));
			json_object_object_add(d, "reason",
					       json_object_new_string(mdb_column_text(q, 2)));
			json_object_object_add(d, "queue_id",
					       json_object_new_string(mdb_column_text(q, 3)));
			json_object_object_add(d, "done_at",
					       json_object_new_int64(mdb_column_int64(q, 4)));
			json_object_array_add(devs, d);
		}
		json_object_object_add(o, "devices", devs);
		json_object_array_add(arr, o);
		if (k != MDB_DONE) {
			json_object_put(arr);
			return mdb_err(db, "image devices", err);
		}
	}
	if (r != MDB_DONE) {
		json_object_put(arr);
		return mdb_err(db, "images", err);
	}
	*out = arr;
	return 0;
}

int mdm_cmd_image_list(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	cells_err_t err = {0};
	(void)argv;
	if (argc)
		return mdm_usage(cmd);
	struct mdm_store *s = mdm_open_store(m, "image list");
	if (!s)
		return 1;
	json_object *arr = NULL;
	int r = mdm_images_json(s, &arr, &err);
	mdm_store_close(s);
	if (r < 0)
		return fail(cmd, &err);
	if (m->json) {
		print_json(arr);
		json_object_put(arr);
		return 0;
	}
	printf("%-24s %-9s %-16s %-12s %s\n", "IMAGE", "FS", "SHA256", "SIZE", "DEVICES");
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *o = json_object_array_get_idx(arr, i), *devs;
#define F(k) json_object_object_get(o, k)
		char ref[64];
		snprintf(ref, sizeof ref, "%s@%lld", json_object_get_string(F("name")),
			 (long long)json_object_get_int64(F("version")));
		devs = F("devices");
		printf("%-24s %-9s %-16.16s %-12lld %zu\n", ref,
		       json_object_get_string(F("fs_type")), json_object_get_string(F("sha256")),
		       (long long)json_object_get_int64(F("size")), json_object_array_length(devs));
		for (size_t k = 0; k < json_object_array_length(devs); k++) {
			json_object *d = json_object_array_get_idx(devs, k);
			const char *why =
			    json_object_get_string(json_object_object_get(d, "reason"));
			printf("  %-32s %-10s %s\n",
			       json_object_get_string(json_object_object_get(d, "device_id")),
			       json_object_get_string(json_object_object_get(d, "state")),
			       why && *why ? why : "");
		}
#undef F
	}
	json_object_put(arr);
	return 0;
}

/* ---- GET /v1/images/<sha256> on the serve listener ---- */

const char *mdm_image_uri_sha(const char *uri, uint8_t sha[32])
{
	static const char pre[] = "/v1/images/";
	const char *hex = !strncmp(uri, pre, sizeof pre - 1) ? uri + sizeof pre - 1 : NULL;
	return hex && hex_decode32(hex, sha) == 0 ? hex : NULL;
}

struct mdm_image_dl {
	int fd;	       /* the image file (-1: an error answer) */
	int status;    /* HTTP status */
	uint64_t size; /* of the file */
	uint64_t off;  /* next byte to send */
	uint64_t end;  /* one past the last byte to send */
	bool hdr_sent;
	bool close;    /* after the answer (a request whose body we do not read) */
	char msg[160]; /* the body of an error answer */
};

void mdm_image_http_free(struct mdm_image_dl **dl)
{
	if (!*dl)
		return;
	if ((*dl)->fd >= 0)
		close((*dl)->fd);
	free(*dl);
	*dl = NULL;
}

/* One range only (a list is not understood: the whole file). */
int mdm_image_range(const char *h, uint64_t size, uint64_t *from, uint64_t *to)
{
	if (strncmp(h, "bytes=", 6) || strchr(h, ','))
		return -1;
	h += 6;
	const char *dash = strchr(h, '-');
	if (!dash)
		return -1;
	char a[24] = "", b[24] = "";
	size_t al = (size_t)(dash - h), bl = strlen(dash + 1);
	if (al >= sizeof a || bl >= sizeof b || (!al && !bl))
		return -1;
	memcpy(a, h, al);
	memcpy(b, dash + 1, bl);
	uint64_t x = 0, y = 0;
	if ((al && parse_u64(a, 0, UINT64_MAX, &x) < 0) ||
	    (bl && parse_u64(b, 0, UINT64_MAX, &y) < 0))
		return -1;
	if (!al) { /* the last y bytes */
		if (!y || !size)
			return 1;
		*from = y >= size ? 0 : size - y;
		*to = size;
		return 0;
	}
	if (bl && y < x)
		return -1;
	if (x >= size)
		return 1;
	*from = x;
	*to = bl && y < size - 1 ? y + 1 : size; /* size > x >= 0 */
	return 0;
}

static int dl_error(struct lws *wsi, struct mdm_image_dl *d, int status, const char *why)
{
	d->status = status;
	snprintf(d->msg, sizeof d->msg, "%d %s\n", status, why);
	lws_callback_on_writable(wsi);
	return 0;
}

int mdm_image_http(struct lws *wsi, struct mdm_store *st, const char *uri, const char *device,
		   const char *why, struct mdm_image_dl **dlp)
{
	cells_err_t err = {0};
	mdm_image_http_free(dlp);
	struct mdm_image_dl *d = calloc(1, sizeof *d);
	if (!d)
		return -1;
	d->fd = -1;
	*dlp = d;
	uint8_t sha[32];
	const char *hex = mdm_image_uri_sha(uri, sha);
	if (!hex)
		return dl_error(wsi, d, 404, "not found");
	if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0) {
		/* HTTP/1.1: its body, if any, must not be read as the next request (HTTP/2
		 * frames it; a connection header is illegal there) */
		d->close = lws_get_network_wsi(wsi) == wsi;
		return dl_error(wsi, d, 405, "only GET");
	}
	if (!device) {
		log_warn("image download refused: %s", why ? why : "no device");
		return dl_error(wsi, d, 403,
				"a client certificate of an enrolled device is required");
	}
	struct mdb *db = mdm_store_db(st);
	cleanup_mdb_stmt struct mdb_stmt *q = NULL;
	/* the image, and whether it was offered to this device (a queue entry not cancelled) */
	if (mdb_prepare(
		db,
		"SELECT i.path, i.size, i.ref, CASE WHEN EXISTS(SELECT 1 FROM queue q WHERE "
		"q.device=?2 AND q.kind=?3 AND q.dedup='image:' || i.ref AND q.state<>5) "
		"THEN 1 ELSE 0 END FROM images i WHERE i.sha256=?1 ORDER BY 4 DESC, i.version DESC "
		"LIMIT 1",
		&q, &err) < 0)
		return dl_error(wsi, d, 500, "database");
	mdb_bind_text(q, 1, hex);
	mdb_bind_text(q, 2, device);
	mdb_bind_int64(q, 3, MDM_QK_IMAGE);
	int r = mdb_step(q);
	if (r == MDB_DONE)
		return dl_error(wsi, d, 404, "no such image");
	if (r != MDB_ROW) {
		mdb_err(db, "image", &err);
		log_warn("image download: %s", err.msg);
		return dl_error(wsi, d, 500, "database");
	}
	if (!mdb_column_int(q, 3)) {
		log_warn("device %s: image %s refused: not offered to this device", device,
			 mdb_column_text(q, 2));
		return dl_error(wsi, d, 403, "this image was not offered to this device");
	}
	d->size = (uint64_t)mdb_column_int64(q, 1);
	d->fd = open(mdb_column_text(q, 0), O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (d->fd < 0 || fstat(d->fd, &sb) < 0 || (uint64_t)sb.st_size != d->size) {
		log_error("image %s: %s: missing or of another size", mdb_column_text(q, 2),
			  mdb_column_text(q, 0));
		if (d->fd >= 0)
			close(d->fd);
		d->fd = -1;
		return dl_error(wsi, d, 500, "image file missing");
	}
	char range[64];
	d->off = 0;
	d->end = d->size;
	d->status = 200;
	int n = lws_hdr_copy(wsi, range, sizeof range, WSI_TOKEN_HTTP_RANGE);
	if (n > 0) {
		int k = mdm_image_range(range, d->size, &d->off, &d->end);
		if (k == 1) {
			close(d->fd);
			d->fd = -1;
			return dl_error(wsi, d, 416, "range not satisfiable");
		}
		if (k == 0)
			d->status = 206;
	}
	log_info("device %s: image %s: sending bytes %llu..%llu of %llu", device,
		 mdb_column_text(q, 2), (unsigned long long)d->off, (unsigned long long)d->end,
		 (unsigned long long)d->size);
	lws_callback_on_writable(wsi);
	return 0;
}

static int dl_headers(struct lws *wsi, struct mdm_image_dl *d)
{
	uint8_t buf[LWS_PRE + 1024], *start = buf + LWS_PRE, *p = start,
				     *end = buf + sizeof buf - 1;
	bool err = d->fd < 0;
	uint64_t len = err ? strlen(d->msg) : d->end - d->off;
	char cr[96];
	if (lws_add_http_common_headers(wsi, (unsigned)d->status,
					err ? "text/plain" : "application/octet-stream", len, &p,
					end))
		return -1;
	if (d->status == 206)
		snprintf(cr, sizeof cr, "bytes %llu-%llu/%llu", (unsigned long long)d->off,
			 (unsigned long long)d->end - 1, (unsigned long long)d->size);
	else if (d->status == 416)
		snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)d->size);
	if ((d->status == 206 || d->status == 416) &&
	    lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_RANGE, (unsigned char *)cr,
					 (int)strlen(cr), &p, end))
		return -1;
	if (!err && lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_ACCEPT_RANGES,
						 (const unsigned char *)"bytes", 5, &p, end))
		return -1;
	if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
					 (const unsigned char *)"no-store", 8, &p, end))
		return -1;
	if (d->close && lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION,
						     (const unsigned char *)"close", 5, &p, end))
		return -1;
	return lws_finalize_write_http_header(wsi, start, &p, end) ? -1 : 0;
}

int mdm_image_http_writeable(struct lws *wsi, struct mdm_image_dl **dlp)
{
	struct mdm_image_dl *d = *dlp;
	if (!d || !d->status)
		return 0;
	if (!d->hdr_sent) {
		if (dl_headers(wsi, d) < 0)
			return -1;
		d->hdr_sent = true;
		lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, DL_STALL_S);
		lws_callback_on_writable(wsi);
		return 0;
	}
	if (d->fd < 0) { /* an error answer: its one line */
		size_t n = strlen(d->msg);
		uint8_t buf[LWS_PRE + sizeof d->msg];
		memcpy(buf + LWS_PRE, d->msg, n);
		if (lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_HTTP_FINAL) < (int)n)
			return -1;
	} else if (d->off < d->end) {
		/* one chunk per WRITEABLE: a client that stops reading only stops its own */
		static uint8_t buf[LWS_PRE + DL_CHUNK];
		size_t n = d->end - d->off > DL_CHUNK ? DL_CHUNK : (size_t)(d->end - d->off);
		/* HTTP/2: no more than the stream's flow-control credit (-1: HTTP/1.1) */
		lws_fileofs_t credit = lws_get_peer_write_allowance(wsi);
		if (credit == 0) {
			lws_callback_on_writable(wsi);
			return 0;
		}
		if (credit > 0 && (uint64_t)credit < n)
			n = (size_t)credit;
		ssize_t r = pread(d->fd, buf + LWS_PRE, n, (off_t)d->off);
		if (r <= 0) {
			log_warn("image download: read: %s",
				 r < 0 ? strerror(errno) : "short file");
			return -1;
		}
		d->off += (uint64_t)r;
		bool last = d->off == d->end;
		if (lws_write(wsi, buf + LWS_PRE, (size_t)r,
			      last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) < (int)r)
			return -1;
		lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, DL_STALL_S);
		if (!last) {
			lws_callback_on_writable(wsi);
			return 0;
		}
	}
	bool close = d->close;
	mdm_image_http_free(dlp);
	lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
	if (close)
		return -1;
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}
