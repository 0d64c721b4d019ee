/* wipe.h - per-VP storage and the crash-safe, receipted wipe of a VP.
 *
 * Storage: this module alone decides where a VP's writable data lives
 * (wipe_prepare_vp_storage; the VP runtime puts its overlay upper and work dirs inside).
 * An encrypted VP (`vp create --encrypted`, else the policy's `encrypted`, else cellsd
 * --encrypted-vps, default "work") keeps it in its own fscrypt v2 directory AREA/vp/NAME,
 * under a random per-VP data key stored only wrapped by the device KEK in a fixed-size
 * key-slot file overwritten in place (agent/vp/wipe_key.h). AREA is STATE_DIR/wipe/data
 * when the state directory's filesystem can encrypt, else an ext4 image
 * STATE_DIR/wipe/vpdata.img (made with `mkfs.ext4 -O encrypt`) loop-mounted on
 * RUN_DIR/wipe/mnt. An unencrypted VP keeps it in STATE_DIR/vpdata/NAME (data an older
 * version left in STATE_DIR/vp/NAME/{upper,work} is moved there, and wiped from there).
 * Environment (read at use): CELLS_WIPE_STORAGE=auto|image|host (fixed at first use),
 * CELLS_WIPE_IMAGE_MB (image size, default 4096, sparse).
 *
 * Wipe: a state machine whose every step is idempotent and recorded (wipe_ops.step,
 * synchronous=FULL) and audited ("wipe.step"):
 *   0 intent  1 stop (hook + SIGKILL every process using the VP's data)
 *   2 remove-key (FS_IOC_REMOVE_ENCRYPTION_KEY_ALL_USERS, then key status must be absent)
 *   3 destroy-wrapped-key (its key slot zeroed in place; rows of older versions deleted
 *     under secure_delete, WAL checkpoint(TRUNCATE), VACUUM)
 *   4 rotate-kek (fresh KEK, surviving keys rewrapped, old KEK overwritten in place)
 *   5 delete-data (files counted, then removed; syncfs, FITRIM)  6 recreate | leave-absent
 *   7 receipt (WipeReceipt signed with the device key, SIGNED_WIPE_RECEIPT, stored in
 *     wipe_receipts until the MDM acknowledges it). The receipt states the method as
 *     measured: "crypto-erase" (the key is gone), "delete" (files_removed files and
 *     bytes_removed bytes deleted), or "nothing" (no data existed).
 * A wipe interrupted at any point is finished by wipe_init() at the next start. A
 * command id seen before is acknowledged and not repeated.
 * Test hook (test builds only, testhook.h): `cellsd --test-crash-at wipe-step-N` makes
 * cellsd SIGKILL itself right after carrying out step N and before recording it. */
#ifndef CELLS_WIPE_H
#define CELLS_WIPE_H

#include <limits.h>
#include <stdbool.h>

#include <json-c/json.h>

#include "cellsd.h"
#include "err.h"
#include "wire.h"

/* What the VP runtime does for a wipe (all optional; set by the lead's wiring). stop
 * must leave no process of the VP running and its mounts of the data gone; remove
 * forgets the VP's definition (recreate=false); recreate makes it again, empty. */
struct wipe_vp_hooks {
	int (*stop)(struct cellsd *d, const char *vp, void *data, cells_err_t *err);
	int (*remove)(struct cellsd *d, const char *vp, void *data, cells_err_t *err);
	int (*recreate)(struct cellsd *d, const char *vp, void *data, cells_err_t *err);
	void *data;
};

/* Migrate the module's tables and finish any interrupted wipe. Call after the VP runtime
 * is initialised and its hooks are set. */
int wipe_init(struct cellsd *d, cells_err_t *err);
void wipe_fini(struct cellsd *d);
void wipe_set_vp_hooks(struct cellsd *d, const struct wipe_vp_hooks *h);

/* The daemon-level default list of encrypted VPs (cellsd --encrypted-vps, comma list of
 * VP names, "" for none). */
int wipe_set_default_encrypted(const char *list, cells_err_t *err);
/* cellsd's wipe options: --encrypted-vps LIST, --wipe-storage auto|image|host (where the
 * encrypted area lives: the state dir's own ext4 with `encrypt`, or a loop-mounted image),
 * --wipe-image-mb N (the image's size when it is created). */
int wipe_option(const char *name, const char *value, cells_err_t *err);
/* Whether vp's data is encrypted (a stored key, table wipe_vps, the policy, else the
 * default list). */
bool wipe_vp_encrypted(struct cellsd *d, const char *vp);
/* Whether vp has storage (a stored wrapped key, or an unencrypted data directory):
 * destroying such a VP is a wipe (vpm_destroy), so that a later VP of the same name never
 * sees the old data and the removal has a receipt. */
bool wipe_vp_has_storage(struct cellsd *d, const char *vp);
/* Configure it (before the VP's storage is first prepared). */
int wipe_set_encrypted(struct cellsd *d, const char *vp, bool encrypted, cells_err_t *err);

/* Make sure the VP's storage exists and, when encrypted, is unlocked (key added); the
 * VP runtime puts its overlay upper and work dirs inside upper_dir_out. The one place
 * that says where a VP's data lives, encrypted or not. */
int wipe_prepare_vp_storage(struct cellsd *d, const char *vp, char upper_dir_out[PATH_MAX],
			    cells_err_t *err);
/* Lock an encrypted VP's storage (VP stopped or locked): remove its fscrypt key from the
 * kernel (all users) until the key status is absent; the wrapped key stays, the files
 * are ciphertext (encrypted names, ENOKEY on open) until wipe_prepare_vp_storage adds
 * the key again. 0 also when vp has no encrypted storage; with wait, EBUSY when files
 * stay open; without (a frozen, locked VP), one removal: the master key is wiped and the
 * inodes not in use are evicted (ENOKEY for them), those open stay until closed. */
int wipe_vp_storage_lock(struct cellsd *d, const char *vp, bool wait, cells_err_t *err);

/* Wipe vp now. reason_or_command_id: a command id (replays are acknowledged, not run
 * again) or a bare reason such as "local" or "password-limit", to which ":<time>" is
 * appended. actor for the audit records is derived from it. */
int wipe_start(struct cellsd *d, const char *vp, const char *reason_or_command_id, bool recreate,
	       cells_err_t *err);
/* Same, as a verified MDM command (action wipe) for the mgmt command table. The caller
 * has verified the signature (policy_verify_command). */
int wipe_cmd(struct cellsd *d, const Cells__V1__Command *cmd, cells_err_t *err);

/* The mgmt command table's wipe row (agent/mgmt/mgmt_commands.c): run wipe_cmd, then attach
 * the stored signed receipt to res (res->receipt: owned by the caller afterwards, free
 * it with cells__v1__signed__free_unpacked). The receipt of an MDM-ordered wipe travels
 * only in this result; wipes of other origins queue their own (docs/PROTOCOL.md §14). */
int wipe_cmd_result(struct cellsd *d, const Cells__V1__Command *cmd, Cells__V1__CommandResult *res,
		    cells_err_t *err);
/* A wipe command answered before: attach the stored receipt, carry nothing out. */
int wipe_cmd_replay(struct cellsd *d, const Cells__V1__Command *cmd, Cells__V1__CommandResult *res,
		    cells_err_t *err);
/* The stored signed receipt of command_id: 1 (*out owned by the caller), 0 none, -1. */
int wipe_receipt_get(struct cellsd *d, const char *command_id, Cells__V1__Signed **out,
		     cells_err_t *err);

/* The MDM acknowledged the receipt of this command: stop resending it. */
int wipe_receipt_acked(struct cellsd *d, const char *command_id, cells_err_t *err);
/* Status: {"storage":..., "vps":[...], "ops":[...], "receipts":[...]}; vp may be NULL. */
int wipe_status_json(struct cellsd *d, const char *vp, json_object *out, cells_err_t *err);

#endif
