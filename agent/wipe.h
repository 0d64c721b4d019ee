/* wipe.h - per-VP encrypted storage and the crash-safe, receipted wipe of a VP.
 *
 * Storage: each encrypted VP (configurable; `work` by default) keeps its writable data
 * in its own fscrypt v2 directory AREA/vp/NAME, under a random per-VP data key that is
 * stored only wrapped by the device KEK (agent/wipe_key.h) in the state DB (module
 * "wipe"). AREA is STATE_DIR/wipe/data when the state directory's filesystem can
 * encrypt, else an ext4 image STATE_DIR/wipe/vpdata.img (made with `mkfs.ext4 -O
 * encrypt`) loop-mounted on RUN_DIR/wipe/mnt. Unencrypted VPs use STATE_DIR/vpdata/NAME.
 * Environment (read at use): CELLS_WIPE_STORAGE=auto|image|host (fixed at first use),
 * CELLS_WIPE_IMAGE_MB (image size, default 4096, sparse), CELLS_WIPE_ENCRYPTED_VPS
 * (comma list of VPs encrypted by default, default "work").
 *
 * Wipe: a state machine whose every step is idempotent and recorded (wipe_ops.step,
 * synchronous=FULL) and audited ("wipe.step"):
 *   0 intent  1 stop (hook + SIGKILL every process using the VP's data)
 *   2 remove-key (FS_IOC_REMOVE_ENCRYPTION_KEY_ALL_USERS, then key status must be absent)
 *   3 destroy-wrapped-key (DELETE under secure_delete, WAL checkpoint(TRUNCATE), VACUUM)
 *   4 delete-data (remove the tree, syncfs, FITRIM)  5 recreate | leave-absent
 *   6 receipt (WipeReceipt signed with the device key, SIGNED_WIPE_RECEIPT, stored in
 *     wipe_receipts until the MDM acknowledges it)
 * A wipe interrupted at any point is finished by wipe_init() at the next start. A
 * command id seen before is acknowledged and not repeated.
 * Test hook: CELLS_TEST_CRASH_AT=wipe-step-N makes cellsd SIGKILL itself right after
 * carrying out step N and before recording it (inert unless set). */
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

/* Whether vp's data is encrypted (table wipe_vps, else the default list). */
bool wipe_vp_encrypted(struct cellsd *d, const char *vp);
/* Whether vp has encrypted storage (a stored wrapped key): destroying such a VP is a
 * wipe (vpm_destroy), so that a later VP of the same name never sees the old data. */
bool wipe_vp_has_storage(struct cellsd *d, const char *vp);
/* Configure it (before the VP's storage is first prepared). */
int wipe_set_encrypted(struct cellsd *d, const char *vp, bool encrypted, cells_err_t *err);

/* Make sure the VP's storage exists and, when encrypted, is unlocked (key added); the
 * VP runtime puts its overlay upper and work dirs inside upper_dir_out. */
int wipe_prepare_vp_storage(struct cellsd *d, const char *vp, char upper_dir_out[PATH_MAX],
			    cells_err_t *err);

/* Wipe vp now. reason_or_command_id: a command id (replays are acknowledged, not run
 * again) or a bare reason such as "local" or "password-limit", to which ":<time>" is
 * appended. actor for the audit records is derived from it. */
int wipe_start(struct cellsd *d, const char *vp, const char *reason_or_command_id, bool recreate,
	       cells_err_t *err);
/* Same, as a verified MDM command (action wipe) for the mgmt command table. The caller
 * has verified the signature (policy_verify_command). */
int wipe_cmd(struct cellsd *d, const Cells__V1__Command *cmd, cells_err_t *err);

/* The mgmt command table's wipe row (agent/mgmt_commands.c): run wipe_cmd, then attach
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
