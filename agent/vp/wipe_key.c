#include "wipe_key.h"
#include "cleanup.h"
#include "cleanup_ssl.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define KEY_LEN 64
#define NONCE_LEN 12
#define TAG_LEN 16
#define AAD_DOMAIN "cells.v1.wipe-key"

int wipe_secret_alloc(struct wipe_secret *s, size_t len, cells_err_t *err)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t sz = ((len + (size_t)page - 1) / (size_t)page) * (size_t)page;
	void *p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return cells_err_sys(err, errno, "mmap secret");
	if (mlock(p, sz) < 0) {
		int e = errno;
		munmap(p, sz);
		return cells_err_sys(err, e, "mlock secret");
	}
	madvise(p, sz, MADV_DONTDUMP);
	madvise(p, sz, MADV_WIPEONFORK);
	s->p = p;
	s->len = len;
	return 0;
}

void wipe_secret_free(struct wipe_secret *s)
{
	if (!s->p)
		return;
	long page = sysconf(_SC_PAGESIZE);
	size_t sz = ((s->len + (size_t)page - 1) / (size_t)page) * (size_t)page;
	OPENSSL_cleanse(s->p, sz);
	munlock(s->p, sz);
	munmap(s->p, sz);
	s->p = NULL;
	s->len = 0;
}

/* Write all of buf at off, then fdatasync: the bytes are on the disk when this returns. */
static int pwrite_sync(int fd, const void *buf, size_t n, off_t off, const char *what,
		       cells_err_t *err)
{
	size_t done = 0;
	while (done < n) {
		ssize_t w = pwrite(fd, (const uint8_t *)buf + done, n - done, off + (off_t)done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return cells_err_sys(err, w < 0 ? errno : EIO, "write %s", what);
		done += (size_t)w;
	}
	if (fdatasync(fd) < 0)
		return cells_err_sys(err, errno, "fdatasync %s", what);
	return 0;
}

static int pread_all(int fd, void *buf, size_t n, off_t off, const char *what, cells_err_t *err)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = pread(fd, (uint8_t *)buf + got, n - got, off + (off_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return cells_err_sys(err, r < 0 ? errno : EIO, "read %s", what);
		got += (size_t)r;
	}
	return 0;
}

static void fsync_parent(const char *state_dir)
{
	int dfd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
}

/* Open a private file of the state dir for in-place writes; created (empty) when absent
 * (*created set). Refuses anything but a regular file without group/other bits. */
static int open_private(const char *path, bool *created, off_t *size, cells_err_t *err)
{
	*created = false;
	int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT) {
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		*created = fd >= 0;
	}
	if (fd < 0)
		return cells_err_sys(err, errno, "open %s", path);
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077)) {
		close(fd);
		return cells_err_set(err, EPERM, "%s: not a private regular file", path);
	}
	*size = st.st_size;
	return fd;
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

void wipe_kek_free(struct wipe_kek *k)
{
	wipe_secret_free(&k->key[0]);
	wipe_secret_free(&k->key[1]);
	k->gen[0] = k->gen[1] = 0;
}

/* Overwrite entry idx of the open KEK file in place (key NULL: zeros). */
static int kek_entry_write(int fd, int idx, uint64_t gen, const uint8_t *key, cells_err_t *err)
{
	uint8_t e[WIPE_KEK_ENTRY_LEN];
	memset(e, 0, sizeof e);
	if (key) {
		put_le64(e, gen);
		memcpy(e + 8, key, WIPE_KEK_LEN);
	}
	int r = pwrite_sync(fd, e, sizeof e, (off_t)idx * WIPE_KEK_ENTRY_LEN, "wipe.kek", err);
	OPENSSL_cleanse(e, sizeof e);
	return r;
}

static int kek_open_fd(const char *state_dir, struct wipe_kek *k, int *fd_out, cells_err_t *err)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/wipe.kek", state_dir);
	memset(k, 0, sizeof *k);
	if (wipe_secret_alloc(&k->key[0], WIPE_KEK_LEN, err) < 0 ||
	    wipe_secret_alloc(&k->key[1], WIPE_KEK_LEN, err) < 0) {
		wipe_kek_free(k);
		return -1;
	}
	bool created;
	off_t size;
	int fd = open_private(path, &created, &size, err);
	if (fd < 0) {
		wipe_kek_free(k);
		return -1;
	}
	if (created || size == 0) {
		if (RAND_priv_bytes(k->key[0].p, WIPE_KEK_LEN) != 1) {
			close(fd);
			wipe_kek_free(k);
			return cells_err_ssl(err, "wipe kek: RAND_priv_bytes");
		}
		k->gen[0] = 1;
		if (kek_entry_write(fd, 0, 1, k->key[0].p, err) < 0 ||
		    kek_entry_write(fd, 1, 0, NULL, err) < 0) {
			close(fd);
			wipe_kek_free(k);
			return cells_err_prefix(err, "wipe kek");
		}
		fsync_parent(state_dir);
	} else if (size == WIPE_KEK_LEN) {
		/* an older version's bare KEK: becomes generation 1, in the same place */
		if (pread_all(fd, k->key[0].p, WIPE_KEK_LEN, 0, path, err) < 0 ||
		    kek_entry_write(fd, 0, 1, k->key[0].p, err) < 0 ||
		    kek_entry_write(fd, 1, 0, NULL, err) < 0) {
			close(fd);
			wipe_kek_free(k);
			return -1;
		}
		k->gen[0] = 1;
	} else if (size == WIPE_KEK_FILE_LEN) {
		uint8_t e[WIPE_KEK_FILE_LEN];
		if (pread_all(fd, e, sizeof e, 0, path, err) < 0) {
			close(fd);
			wipe_kek_free(k);
			return -1;
		}
		for (int i = 0; i < 2; i++) {
			k->gen[i] = get_le64(e + i * WIPE_KEK_ENTRY_LEN);
			memcpy(k->key[i].p, e + i * WIPE_KEK_ENTRY_LEN + 8, WIPE_KEK_LEN);
		}
		OPENSSL_cleanse(e, sizeof e);
	} else {
		close(fd);
		wipe_kek_free(k);
		return cells_err_set(err, EPERM, "%s: not a private %d-byte key file", path,
				     WIPE_KEK_FILE_LEN);
	}
	if (!k->gen[0] && !k->gen[1]) {
		close(fd);
		wipe_kek_free(k);
		return cells_err_set(err, EBADMSG, "%s holds no key", path);
	}
	*fd_out = fd;
	return 0;
}

int wipe_kek_open(const char *state_dir, struct wipe_kek *k, cells_err_t *err)
{
	int fd;
	if (kek_open_fd(state_dir, k, &fd, err) < 0)
		return -1;
	close(fd);
	return 0;
}

const struct wipe_secret *wipe_kek_get(const struct wipe_kek *k, uint64_t gen, uint64_t *gen_out)
{
	int i;
	if (gen == 0)
		i = k->gen[1] > k->gen[0] ? 1 : 0;
	else if (k->gen[0] == gen)
		i = 0;
	else if (k->gen[1] == gen)
		i = 1;
	else
		return NULL;
	if (!k->gen[i])
		return NULL;
	if (gen_out)
		*gen_out = k->gen[i];
	return &k->key[i];
}

/* ---- key slots -------------------------------------------------------------------- */

static int slots_open(const char *state_dir, char path[PATH_MAX], cells_err_t *err)
{
	snprintf(path, PATH_MAX, "%s/wipe.slots", state_dir);
	bool created;
	off_t size;
	int fd = open_private(path, &created, &size, err);
	if (fd < 0)
		return -1;
	if (size == 0) {
		static const uint8_t zero[WIPE_SLOTS * WIPE_SLOT_SIZE];
		if (pwrite_sync(fd, zero, sizeof zero, 0, path, err) < 0) {
			close(fd);
			return -1;
		}
		fsync_parent(state_dir);
	} else if (size != WIPE_SLOTS * WIPE_SLOT_SIZE) {
		close(fd);
		return cells_err_set(err, EBADMSG, "%s: %lld bytes, not %d", path, (long long)size,
				     WIPE_SLOTS * WIPE_SLOT_SIZE);
	}
	return fd;
}

int wipe_slots_read(const char *state_dir, struct wipe_slot slots[WIPE_SLOTS], cells_err_t *err)
{
	char path[PATH_MAX];
	cleanup_close int fd = slots_open(state_dir, path, err);
	if (fd < 0)
		return -1;
	static uint8_t buf[WIPE_SLOTS * WIPE_SLOT_SIZE];
	if (pread_all(fd, buf, sizeof buf, 0, path, err) < 0)
		return -1;
	for (int i = 0; i < WIPE_SLOTS; i++) {
		const uint8_t *b = buf + i * WIPE_SLOT_SIZE;
		struct wipe_slot *s = &slots[i];
		memset(s, 0, sizeof *s);
		if (b[0] != 1)
			continue;
		s->used = true;
		s->gen = get_le64(b + 1);
		memcpy(s->vp, b + 9, WIPE_SLOT_NAME_LEN);
		s->vp[WIPE_SLOT_NAME_LEN - 1] = 0;
		memcpy(s->id, b + 9 + WIPE_SLOT_NAME_LEN, WIPE_SLOT_ID_LEN);
		memcpy(s->wrapped, b + 9 + WIPE_SLOT_NAME_LEN + WIPE_SLOT_ID_LEN, WIPE_WRAPPED_LEN);
	}
	return 0;
}

int wipe_slot_write(const char *state_dir, int idx, const struct wipe_slot *s, cells_err_t *err)
{
	if (idx < 0 || idx >= WIPE_SLOTS)
		return cells_err_set(err, EINVAL, "key slot %d out of range", idx);
	char path[PATH_MAX];
	cleanup_close int fd = slots_open(state_dir, path, err);
	if (fd < 0)
		return -1;
	uint8_t b[WIPE_SLOT_SIZE];
	memset(b, 0, sizeof b);
	if (s && s->used) {
		if (strlen(s->vp) >= WIPE_SLOT_NAME_LEN)
			return cells_err_set(err, EINVAL, "key slot: vp name too long");
		b[0] = 1;
		put_le64(b + 1, s->gen);
		memcpy(b + 9, s->vp, strlen(s->vp));
		memcpy(b + 9 + WIPE_SLOT_NAME_LEN, s->id, WIPE_SLOT_ID_LEN);
		memcpy(b + 9 + WIPE_SLOT_NAME_LEN + WIPE_SLOT_ID_LEN, s->wrapped, WIPE_WRAPPED_LEN);
	}
	return pwrite_sync(fd, b, sizeof b, (off_t)idx * WIPE_SLOT_SIZE, path, err);
}

int wipe_slot_find(const struct wipe_slot slots[WIPE_SLOTS], const char *vp)
{
	for (int i = 0; i < WIPE_SLOTS; i++)
		if (slots[i].used && !strcmp(slots[i].vp, vp))
			return i;
	return -1;
}

/* Rewrap every used slot not of generation `to` (it must be of `from`) under `to`. */
static int rewrap_all(const char *state_dir, struct wipe_slot *slots,
		      const struct wipe_secret *from, uint64_t from_gen,
		      const struct wipe_secret *to, uint64_t to_gen, int *count, cells_err_t *err)
{
	for (int i = 0; i < WIPE_SLOTS; i++) {
		struct wipe_slot *s = &slots[i];
		if (!s->used || s->gen == to_gen)
			continue;
		if (!from || s->gen != from_gen)
			return cells_err_set(
			    err, EBADMSG, "key slot of %s names KEK generation %llu, which is gone",
			    s->vp, (unsigned long long)s->gen);
		cleanup_wipe_secret struct wipe_secret key = {0};
		if (wipe_key_unwrap(from, s->vp, s->wrapped, WIPE_WRAPPED_LEN, &key, err) < 0 ||
		    wipe_key_wrap(to, s->vp, &key, s->wrapped, err) < 0)
			return cells_err_prefix(err, "rewrap key of %s", s->vp);
		s->gen = to_gen;
		if (wipe_slot_write(state_dir, i, s, err) < 0)
			return -1;
		(*count)++;
	}
	return 0;
}

int wipe_kek_rotate(const char *state_dir, int *rewrapped_out, cells_err_t *err)
{
	cleanup_wipe_kek struct wipe_kek k = {0};
	int fd;
	if (kek_open_fd(state_dir, &k, &fd, err) < 0)
		return cells_err_prefix(err, "rotate KEK");
	cleanup_close int kfd = fd;
	static struct wipe_slot slots[WIPE_SLOTS];
	if (wipe_slots_read(state_dir, slots, err) < 0)
		return cells_err_prefix(err, "rotate KEK");
	int hi = k.gen[1] > k.gen[0] ? 1 : 0, lo = 1 - hi, count = 0;
	/* an interrupted rotation: finish moving every slot to the newest KEK first */
	if (rewrap_all(state_dir, slots, k.gen[lo] ? &k.key[lo] : NULL, k.gen[lo], &k.key[hi],
		       k.gen[hi], &count, err) < 0)
		return cells_err_prefix(err, "rotate KEK");
	if (k.gen[lo]) {
		if (kek_entry_write(kfd, lo, 0, NULL, err) < 0)
			return cells_err_prefix(err, "rotate KEK");
		OPENSSL_cleanse(k.key[lo].p, WIPE_KEK_LEN);
		k.gen[lo] = 0;
	}
	/* the fresh KEK goes into the empty entry; the slots follow; the old one is zeroed */
	uint64_t ng = k.gen[hi] + 1;
	if (RAND_priv_bytes(k.key[lo].p, WIPE_KEK_LEN) != 1)
		return cells_err_ssl(err, "rotate KEK: RAND_priv_bytes");
	k.gen[lo] = ng;
	if (kek_entry_write(kfd, lo, ng, k.key[lo].p, err) < 0 ||
	    rewrap_all(state_dir, slots, &k.key[hi], k.gen[hi], &k.key[lo], ng, &count, err) < 0 ||
	    kek_entry_write(kfd, hi, 0, NULL, err) < 0)
		return cells_err_prefix(err, "rotate KEK");
	if (rewrapped_out)
		*rewrapped_out = count;
	return 0;
}

int wipe_key_generate(struct wipe_secret *key, size_t len, cells_err_t *err)
{
	if (wipe_secret_alloc(key, len, err) < 0)
		return -1;
	if (RAND_priv_bytes(key->p, (int)len) != 1) {
		wipe_secret_free(key);
		return cells_err_ssl(err, "data key: RAND_priv_bytes");
	}
	return 0;
}

/* aad = domain || 0 || vp */
static int aad_of(const char *vp, uint8_t *aad, size_t cap, size_t *n)
{
	size_t d = sizeof AAD_DOMAIN, v = strlen(vp);
	if (d + v > cap)
		return -1;
	memcpy(aad, AAD_DOMAIN, d);
	memcpy(aad + d, vp, v);
	*n = d + v;
	return 0;
}

int wipe_key_wrap(const struct wipe_secret *kek, const char *vp, const struct wipe_secret *key,
		  uint8_t out[WIPE_WRAPPED_LEN], cells_err_t *err)
{
	if (kek->len != WIPE_KEK_LEN || key->len != KEY_LEN)
		return cells_err_set(err, EINVAL, "wrap: bad key sizes");
	uint8_t aad[128];
	size_t naad;
	if (aad_of(vp, aad, sizeof aad, &naad) < 0)
		return cells_err_set(err, EINVAL, "wrap: vp name too long");
	out[0] = 1;
	uint8_t *nonce = out + 1, *ct = out + 1 + NONCE_LEN, *tag = ct + KEY_LEN;
	if (RAND_bytes(nonce, NONCE_LEN) != 1)
		return cells_err_ssl(err, "wrap: RAND_bytes");
	cleanup_cipher_ctx EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int n = 0, f = 0;
	if (!c || EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
	    EVP_EncryptInit_ex(c, NULL, NULL, kek->p, nonce) != 1 ||
	    EVP_EncryptUpdate(c, NULL, &n, aad, (int)naad) != 1 ||
	    EVP_EncryptUpdate(c, ct, &n, key->p, KEY_LEN) != 1 || n != KEY_LEN ||
	    EVP_EncryptFinal_ex(c, ct + n, &f) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) != 1)
		return cells_err_ssl(err, "wrap: AES-256-GCM");
	return 0;
}

int wipe_key_unwrap(const struct wipe_secret *kek, const char *vp, const uint8_t *blob, size_t len,
		    struct wipe_secret *key, cells_err_t *err)
{
	if (kek->len != WIPE_KEK_LEN)
		return cells_err_set(err, EINVAL, "unwrap: bad kek");
	if (len != WIPE_WRAPPED_LEN || blob[0] != 1)
		return cells_err_set(err, EBADMSG, "unwrap: not a version-1 wrapped key");
	uint8_t aad[128];
	size_t naad;
	if (aad_of(vp, aad, sizeof aad, &naad) < 0)
		return cells_err_set(err, EINVAL, "unwrap: vp name too long");
	const uint8_t *nonce = blob + 1, *ct = blob + 1 + NONCE_LEN, *tag = ct + KEY_LEN;
	if (wipe_secret_alloc(key, KEY_LEN, err) < 0)
		return -1;
	cleanup_cipher_ctx EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int n = 0, f = 0;
	if (!c || EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
	    EVP_DecryptInit_ex(c, NULL, NULL, kek->p, nonce) != 1 ||
	    EVP_DecryptUpdate(c, NULL, &n, aad, (int)naad) != 1 ||
	    EVP_DecryptUpdate(c, key->p, &n, ct, KEY_LEN) != 1 || n != KEY_LEN ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, (void *)tag) != 1 ||
	    EVP_DecryptFinal_ex(c, key->p + n, &f) != 1) {
		wipe_secret_free(key);
		return cells_err_ssl(err, "unwrap: authentication failed");
	}
	return 0;
}
