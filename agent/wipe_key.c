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

int wipe_kek_load(const char *state_dir, struct wipe_secret *kek, cells_err_t *err)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/wipe.kek", state_dir);
	if (wipe_secret_alloc(kek, WIPE_KEK_LEN, err) < 0)
		return -1;
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT) {
		if (RAND_priv_bytes(kek->p, WIPE_KEK_LEN) != 1) {
			wipe_secret_free(kek);
			return cells_err_ssl(err, "wipe kek: RAND_priv_bytes");
		}
		if (cells_write_file_atomic(path, kek->p, WIPE_KEK_LEN, 0600, err) < 0) {
			wipe_secret_free(kek);
			return cells_err_prefix(err, "wipe kek");
		}
		return 0;
	}
	if (fd < 0) {
		int e = errno;
		wipe_secret_free(kek);
		return cells_err_sys(err, e, "open %s", path);
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size != WIPE_KEK_LEN ||
	    (st.st_mode & 077)) {
		wipe_secret_free(kek);
		return cells_err_set(err, EPERM, "%s: not a private %d-byte key file", path,
				     WIPE_KEK_LEN);
	}
	size_t got = 0;
	while (got < WIPE_KEK_LEN) {
		ssize_t r = read(fd, kek->p + got, WIPE_KEK_LEN - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			wipe_secret_free(kek);
			return cells_err_sys(err, r < 0 ? errno : EIO, "read %s", path);
		}
		got += (size_t)r;
	}
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
