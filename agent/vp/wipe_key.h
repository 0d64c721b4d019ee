/* wipe_key.h - per-VP data keys for fscrypt, kept only wrapped, in a key-slot file.
 *
 * Secrets live in locked pages (mlock, MADV_DONTDUMP, MADV_WIPEONFORK) and are wiped
 * with OPENSSL_cleanse before the pages are released. A data key is FSCRYPT_KEY_LEN
 * random bytes (RAND_priv_bytes) and is stored as
 *   0x01 || nonce(12) || AES-256-GCM(KEK, nonce, key, aad) || tag(16)
 * with aad = "cells.v1.wipe-key" || 0x00 || vp name, so a blob cannot be moved to
 * another VP.
 *
 * Files (both mode 0600, fixed size, only ever overwritten in place with pwrite +
 * fdatasync, never replaced by a rename, so that no older copy is left in a free block
 * of the filesystem):
 *   STATE_DIR/wipe.kek    two KEK entries of 40 bytes: generation (u64 LE, 0 = empty)
 *                         || KEK(32). The current KEK is the entry of the highest
 *                         generation; the other is empty, or the previous KEK while a
 *                         rotation is in progress. (A 32-byte file of an older version
 *                         is converted in place to generation 1.)
 *   STATE_DIR/wipe.slots  WIPE_SLOTS slots of WIPE_SLOT_SIZE bytes: used(1) ||
 *                         KEK generation (u64 LE) || vp name (33, NUL padded) ||
 *                         fscrypt key identifier (16) || wrapped key (93) || zeros.
 * A wipe zeroes the VP's slot, then rotates the KEK (wipe_kek_rotate): a fresh KEK is
 * written to the empty entry, every surviving slot is rewrapped under it, and the old
 * entry is overwritten with zeros. After that, neither the old KEK nor the wiped VP's
 * wrapped key exists anywhere on the disk. Each write is followed by fdatasync; a
 * rotation interrupted at any point is completed by the next one (slots name the
 * generation that wraps them). */
#ifndef CELLS_WIPE_KEY_H
#define CELLS_WIPE_KEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define WIPE_KEK_LEN 32
#define WIPE_WRAPPED_LEN (1 + 12 + 64 + 16)
#define WIPE_KEK_ENTRY_LEN (8 + WIPE_KEK_LEN)
#define WIPE_KEK_FILE_LEN (2 * WIPE_KEK_ENTRY_LEN)
#define WIPE_SLOTS 64
#define WIPE_SLOT_SIZE 160
#define WIPE_SLOT_NAME_LEN 33
#define WIPE_SLOT_ID_LEN 16

/* A secret in locked memory (owned). */
struct wipe_secret {
	uint8_t *p;
	size_t len;
};

int wipe_secret_alloc(struct wipe_secret *s, size_t len, cells_err_t *err);
/* Wipe and release; accepts an unallocated (zeroed) secret. */
void wipe_secret_free(struct wipe_secret *s);
#define cleanup_wipe_secret __attribute__((cleanup(wipe_secret_free)))

/* Both entries of STATE_DIR/wipe.kek (owned; free with wipe_kek_free). */
struct wipe_kek {
	struct wipe_secret key[2]; /* WIPE_KEK_LEN each, locked memory */
	uint64_t gen[2];	   /* 0: entry empty */
};
/* Load STATE_DIR/wipe.kek (created with generation 1 when absent; a private regular file
 * of WIPE_KEK_FILE_LEN bytes, or a 32-byte one of an older version, converted in place). */
int wipe_kek_open(const char *state_dir, struct wipe_kek *k, cells_err_t *err);
void wipe_kek_free(struct wipe_kek *k);
#define cleanup_wipe_kek __attribute__((cleanup(wipe_kek_free)))
/* The entry holding generation gen (current: gen 0 means the highest), or NULL. */
const struct wipe_secret *wipe_kek_get(const struct wipe_kek *k, uint64_t gen, uint64_t *gen_out);

/* One key slot, in ordinary memory (it holds only wrapped material). */
struct wipe_slot {
	bool used;
	uint64_t gen;
	char vp[WIPE_SLOT_NAME_LEN];
	uint8_t id[WIPE_SLOT_ID_LEN];
	uint8_t wrapped[WIPE_WRAPPED_LEN];
};
/* Read every slot (the file is created, zeroed, when absent). */
int wipe_slots_read(const char *state_dir, struct wipe_slot slots[WIPE_SLOTS], cells_err_t *err);
/* Overwrite slot idx in place (s NULL: with zeros), then fdatasync. */
int wipe_slot_write(const char *state_dir, int idx, const struct wipe_slot *s, cells_err_t *err);
/* The slot of vp: its index, or -1 (none). */
int wipe_slot_find(const struct wipe_slot slots[WIPE_SLOTS], const char *vp);

/* Rotate the KEK: finish an interrupted rotation, write a fresh KEK of the next
 * generation into the empty entry, rewrap every used slot under it, zero the old entry.
 * Every write is fdatasync'd. *rewrapped_out (may be NULL): slots rewrapped. */
int wipe_kek_rotate(const char *state_dir, int *rewrapped_out, cells_err_t *err);
/* A new random data key of len bytes in locked memory. */
int wipe_key_generate(struct wipe_secret *key, size_t len, cells_err_t *err);
/* Wrap key (64 bytes) for vp into out[WIPE_WRAPPED_LEN]. */
int wipe_key_wrap(const struct wipe_secret *kek, const char *vp, const struct wipe_secret *key,
		  uint8_t out[WIPE_WRAPPED_LEN], cells_err_t *err);
/* Unwrap into a new locked secret; fails on any tampering or the wrong vp. */
int wipe_key_unwrap(const struct wipe_secret *kek, const char *vp, const uint8_t *blob, size_t len,
		    struct wipe_secret *key, cells_err_t *err);

#endif
