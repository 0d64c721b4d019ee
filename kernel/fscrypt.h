/* fscrypt.h - the kernel's filesystem encryption (fscrypt, v2 policies) through its
 * ioctls in <linux/fscrypt.h>: is a filesystem able to encrypt, add / remove a master
 * key to / from a filesystem, set and read a directory's policy, and ask whether a key
 * is present. Keys are raw bytes (FSCRYPT_KEY_LEN); the caller keeps them in locked
 * memory and wipes them (see agent/vp/wipe_key.h). Every fd is borrowed. */
#ifndef CELLS_FSCRYPT_H
#define CELLS_FSCRYPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define FSCRYPT_KEY_LEN 64	  /* master key size for AES-256-XTS + AES-256-CTS */
#define FSCRYPT_IDENTIFIER_LEN 16 /* FSCRYPT_KEY_IDENTIFIER_SIZE */

enum fscrypt_key_state {
	FSCRYPT_KEY_ABSENT_STATE = 1,	  /* FSCRYPT_KEY_STATUS_ABSENT */
	FSCRYPT_KEY_PRESENT_STATE = 2,	  /* FSCRYPT_KEY_STATUS_PRESENT */
	FSCRYPT_KEY_INCOMPLETE_STATE = 3, /* removed but files still in use */
};

/* 1 when the filesystem holding fd can encrypt (feature on), 0 when it cannot, -1 on
 * another error. */
int fscrypt_fs_supported(int fd, cells_err_t *err);
/* Add a v2 master key to the filesystem of fd; the kernel computes its identifier. */
int fscrypt_add_key(int fd, const uint8_t *key, size_t len,
		    uint8_t identifier[FSCRYPT_IDENTIFIER_LEN], cells_err_t *err);
/* Remove a key (for all users). *busy_out (may be NULL) is set when files using the
 * key are still open (status INCOMPLETE). A key that is already absent is not an error
 * (*was_absent set when non-NULL). */
int fscrypt_remove_key(int fd, const uint8_t identifier[FSCRYPT_IDENTIFIER_LEN], bool *busy_out,
		       bool *was_absent, cells_err_t *err);
/* The key's state (enum fscrypt_key_state) or -1. */
int fscrypt_key_status(int fd, const uint8_t identifier[FSCRYPT_IDENTIFIER_LEN], cells_err_t *err);
/* Set a v2 policy (AES-256-XTS contents, AES-256-CTS names, 32-byte name padding) on an
 * empty directory. */
int fscrypt_set_policy(int dirfd, const uint8_t identifier[FSCRYPT_IDENTIFIER_LEN],
		       cells_err_t *err);
/* The directory's v2 policy key identifier: 1 when encrypted (identifier filled), 0 when
 * not encrypted, -1 on error (also for a v1 policy). */
int fscrypt_get_policy(int dirfd, uint8_t identifier[FSCRYPT_IDENTIFIER_LEN], cells_err_t *err);

#endif
