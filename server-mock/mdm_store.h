/* mdm_store.h - the MDM's state behind a small storage interface: devices, enrollment
 * tokens, the per-device command queue and its states. Everything lives in the
 * database, never only in memory, so several stateless front ends share one backend:
 * sqlite is the embedded default (STATE_DIR/mdm.db), PostgreSQL the production one
 * (cells-mdm --db postgresql://...), both through mdm_db.h with the same migrations.
 * On PostgreSQL a queue entry added notifies MDM_QUEUE_CHANNEL with its device id at
 * commit: the front end holding that device's connection LISTENs and sends it.
 *
 * Queue entry states: queued -> delivered (sent on a session) -> acknowledged (the
 * device reported it done) | failed (the device refused or failed it); queued or
 * delivered -> expired (past its expiry) | cancelled (by the admin). A delivered entry
 * whose session ends goes back to queued and is sent again: the device de-duplicates
 * by id. */
#ifndef CELLS_MDM_STORE_H
#define CELLS_MDM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "err.h"

enum mdm_qstate {
	MDM_Q_QUEUED = 0,
	MDM_Q_DELIVERED = 1,
	MDM_Q_ACKNOWLEDGED = 2,
	MDM_Q_FAILED = 3,
	MDM_Q_EXPIRED = 4,
	MDM_Q_CANCELLED = 5,
};

enum mdm_qkind {
	MDM_QK_POLICY = 1,  /* blob: a Signed SIGNED_POLICY */
	MDM_QK_COMMAND = 2, /* blob: a Signed SIGNED_COMMAND */
	MDM_QK_TRUST = 3,   /* blob: a TrustUpdate (mdm_keyring.c), dedup key "trust" */
	MDM_QK_IMAGE = 4,   /* blob: a Signed SIGNED_IMAGE_MANIFEST (mdm_image.c), sent as
			     * Envelope.image; dedup key "image:NAME@VERSION" */
};

#define MDM_QID_LEN 40

struct mdm_qentry {
	int64_t seq;
	char id[MDM_QID_LEN + 1]; /* the Envelope message_id it is sent with */
	char device[64];
	int kind; /* MDM_QK_* */
	int priority;
	int state;
	int64_t created, expires; /* unix seconds; expires 0 = never */
	char dedup[96];		  /* at most one live entry per (device, dedup key) */
	char what[128];		  /* human summary: "policy v3", "wipe work" */
	uint8_t *blob;		  /* owned */
	size_t blob_len;
};

struct mdm_store;

#define MDM_QUEUE_CHANNEL "cells_mdm_queue"
/* The payload of a fan-out's one notification (more than MDM_NOTIFY_EACH entries queued
 * in one transaction): "* LO HI", the first and last seq the transaction's entries got;
 * every front end looks for queued entries in that range of the devices it holds. The
 * range, not a cursor: PostgreSQL's sequence hands out seqs in the order of the inserts,
 * not of the commits, so a cursor moved past a later commit would skip this one. */
#define MDM_QUEUE_ALL "*"
#define MDM_NOTIFY_EACH 64

/* where: a state directory (sqlite STATE_DIR/mdm.db) or a PostgreSQL conninfo
 * (postgresql://...; mdm_db.h). Migrates the schema. */
int mdm_store_open(const char *where, struct mdm_store **out, cells_err_t *err);
void mdm_store_close(struct mdm_store *s);
/* The connection under the store (serve listens on it for MDM_QUEUE_CHANNEL). */
struct mdb *mdm_store_db(struct mdm_store *s);

/* Enrollment tokens (stored as SHA-256 hashes). consume: 0 ok; -1 with EACCES for an
 * unknown or used token, ETIME for an expired one. Single use, atomic. */
int mdm_store_token_add(struct mdm_store *s, const char *token, int64_t expires, cells_err_t *err);
int mdm_store_token_consume(struct mdm_store *s, const char *token, int64_t now, cells_err_t *err);

/* Devices. */
int mdm_store_device_enroll(struct mdm_store *s, const char *id, const char *cert_serial,
			    int64_t now, cells_err_t *err);
/* The device's identity key (device id = its hash; what its receipts, checkpoints and
 * results are verified with) and the TLS key of its certificate, stored at enrollment.
 * keys: 1 found, 0 none (a device enrolled before identity binding), -1 error. */
int mdm_store_device_keys_set(struct mdm_store *s, const char *id, const uint8_t identity[32],
			      const uint8_t tls[32], cells_err_t *err);
int mdm_store_device_keys(struct mdm_store *s, const char *id, uint8_t identity[32],
			  uint8_t tls[32], cells_err_t *err);
/* Record a DeviceHello's compliance reasons and VPs (JSON array texts) and audit seqs. flag gets a
 * one-line description when the audit head went backwards (below a head reported before
 * or below what was uploaded; "" otherwise); the flag is kept for `cells-mdm devices`. */
int mdm_store_device_report(struct mdm_store *s, const char *id, const char *reasons_json,
			    const char *vps_json, uint64_t head, uint64_t uploaded, int64_t now,
			    char flag[200], cells_err_t *err);
/* The policy version the device reported installed, and the blob of the newest policy
 * entry queued, delivered or acknowledged for it: 1 with *blob (owned), 0 none, -1. */
int mdm_store_latest_policy_blob(struct mdm_store *s, const char *id, uint64_t *installed,
				 uint8_t **blob, size_t *len, cells_err_t *err);
/* 1 known and active, 0 unknown, -1 error. */
int mdm_store_device_known(struct mdm_store *s, const char *id, cells_err_t *err);
int mdm_store_device_seen(struct mdm_store *s, const char *id, bool online, int64_t now,
			  uint64_t policy_version, const char *agent_version, int compliance,
			  cells_err_t *err);
/* Front ends' leases. A serving front end has an id (unique per process) and a row in
 * table frontends whose lease it refreshes every MDM_FRONTEND_REFRESH_S; the devices it
 * holds carry its id (mdm_store_device_seen). A device counts as online only while that
 * lease is fresh, so the devices of a front end killed with SIGKILL show offline within
 * MDM_FRONTEND_LEASE_S, before they reconnect elsewhere. start: takes the id for this
 * store, removes the rows of front ends whose lease ran out and clears the online flag
 * of their devices, and writes ours. stop: our devices offline, our row removed. */
#define MDM_FRONTEND_ID_LEN 40
#define MDM_FRONTEND_LEASE_S 6
#define MDM_FRONTEND_REFRESH_S 2
int mdm_store_frontend_start(struct mdm_store *s, const char *id, int64_t now, cells_err_t *err);
int mdm_store_frontend_refresh(struct mdm_store *s, int64_t now, cells_err_t *err);
int mdm_store_frontend_stop(struct mdm_store *s, cells_err_t *err);
/* Mark every device offline (server start). */
int mdm_store_devices_reset_online(struct mdm_store *s, cells_err_t *err);
/* Array of {device_id, enrolled_at, last_seen, online, policy_version, compliance,
 * compliance_reasons, audit_head_seq, audit_uploaded_seq, audit_flag, pending, ...,
 * vps: [{name, running, foreground, locked, number, image}]}. */
int mdm_store_devices_json(struct mdm_store *s, json_object **out, cells_err_t *err);
/* Ids of every active device (NULL-terminated array of owned strings). */
int mdm_store_device_ids(struct mdm_store *s, char ***ids, size_t *n, cells_err_t *err);
void mdm_store_free_ids(char **ids, size_t n);

/* Queue. add: fills e->seq and e->id; when a live entry with the same dedup key exists
 * it is returned in e (1) instead of adding (0). replace=true cancels that entry first. */
int mdm_store_queue_add(struct mdm_store *s, struct mdm_qentry *e, bool replace, cells_err_t *err);
/* Queue n entries (a fan-out): as mdm_store_queue_add(replace=false) each; dup[i] (when
 * dup is not NULL) 1 for an entry de-duplicated (e[i] then the live one), else 0. On
 * PostgreSQL the inserts go in pipeline mode (a few hundred per round trip). */
int mdm_store_queue_add_many(struct mdm_store *s, struct mdm_qentry *e, size_t n, int *dup,
			     cells_err_t *err);
/* The next entry to send to device: highest priority, then oldest, state queued and not
 * expired. 1 found, 0 none. e->blob owned. */
int mdm_store_queue_next(struct mdm_store *s, const char *device, int64_t now, struct mdm_qentry *e,
			 cells_err_t *err);
int mdm_store_queue_set_state(struct mdm_store *s, const char *id, const char *device, int state,
			      const char *reason, int64_t now, cells_err_t *err);
/* The same in the open transaction without waiting for it (mdb_step_later: on
 * PostgreSQL it travels with the next query; a failure fails the commit). Rows changed
 * are not reported. */
int mdm_store_queue_set_state_later(struct mdm_store *s, const char *id, const char *device,
				    int state, const char *reason, int64_t now, cells_err_t *err);
/* Deliver: up to max entries to send to device (mdm_store_queue_next's order) into
 * e[0..*n-1] (blobs owned), each marked delivered with mdm_store_queue_set_state_later.
 * *n < max: nothing else is queued for the device now. 0 or -1. */
int mdm_store_queue_take(struct mdm_store *s, const char *device, int64_t now, size_t max,
			 struct mdm_qentry *e, size_t *n, cells_err_t *err);
/* The same for n devices at once (a fan-out's wake-up): up to max[i] entries of
 * devices[i], each handed to fn(i, e, arg) (e and its blob borrowed for the call) and
 * marked delivered after all were read. PostgreSQL: the look-ups pipelined, a few
 * hundred devices per round trip. 0 or -1 (entries may have been handed out: the
 * transaction is then to be rolled back, or they are sent again by id). */
int mdm_store_queue_take_each(struct mdm_store *s, char *const *devices, const size_t *max,
			      size_t n, int64_t now,
			      void (*fn)(size_t i, struct mdm_qentry *e, void *arg), void *arg,
			      cells_err_t *err);
/* Mark queued entries past their expiry as expired. */
int mdm_store_queue_expire(struct mdm_store *s, int64_t now, cells_err_t *err);
/* Delivered entries of a device go back to queued (its session ended). */
int mdm_store_queue_requeue(struct mdm_store *s, const char *device, cells_err_t *err);
int mdm_store_queue_requeue_all(struct mdm_store *s, cells_err_t *err);
/* Cancel a queued or delivered entry: 0 ok, -1 ENOENT / EALREADY. */
int mdm_store_queue_cancel(struct mdm_store *s, const char *id, cells_err_t *err);
int mdm_store_queue_json(struct mdm_store *s, const char *device, json_object **out,
			 cells_err_t *err);
/* Devices with queued entries added after *since (a cursor); *since advances. Exact on
 * sqlite (one writer at a time: seqs commit in order); on PostgreSQL a fan-out's entries
 * are found by their notification's range (mdm_store_queue_in). */
int mdm_store_queue_changed(struct mdm_store *s, int64_t *since, char ***ids, size_t *n,
			    cells_err_t *err);
/* Devices with queued entries whose seq is in [lo, hi]. */
int mdm_store_queue_in(struct mdm_store *s, int64_t lo, int64_t hi, char ***ids, size_t *n,
		       cells_err_t *err);
/* The range of a fan-out's notification payload ("* LO HI"): 0, or -1 not one. */
int mdm_queue_all_parse(const char *payload, int64_t *lo, int64_t *hi);
void mdm_qentry_clear(struct mdm_qentry *e);
const char *mdm_qstate_name(int state);

/* The entry id of device (blob included): 1 found, 0 not, -1 error. */
int mdm_store_queue_get(struct mdm_store *s, const char *id, const char *device,
			struct mdm_qentry *e, cells_err_t *err);

/* A wipe receipt a device sent (table receipts, unique by device and command id). All
 * pointers borrowed. verified=false rows keep a refused receipt for the record: they
 * never replace a verified one, a verified one replaces them. */
struct mdm_receipt {
	const char *device, *command_id, *vp, *queue_id, *reason;
	int64_t wiped_at, received_at;
	int key_status;
	bool wrapped_key_destroyed, recreated, verified;
	const uint8_t *blob; /* the Signed receipt as received */
	size_t blob_len;
	const uint8_t *device_key; /* 32 bytes: the Ed25519 key it was checked with */
};
/* 1 stored, 0 already there (or a refused one where a verified one is), -1 error. */
int mdm_store_receipt_put(struct mdm_store *s, const struct mdm_receipt *r, cells_err_t *err);
/* [{device_id, vp, command_id, queue_id, wiped_at, key_status, wrapped_key_destroyed,
 * recreated, verified, reason, received_at, receipt (hex)}]; device NULL = all. */
int mdm_store_receipts_json(struct mdm_store *s, const char *device, json_object **out,
			    cells_err_t *err);

/* Batch several writes in one transaction (fan-out). On PostgreSQL the commit sends
 * the queue notifications of the entries added (one per device; MDM_QUEUE_ALL past
 * MDM_NOTIFY_EACH). */
int mdm_store_begin(struct mdm_store *s, cells_err_t *err);
int mdm_store_commit(struct mdm_store *s, cells_err_t *err);

/* Mark queue entry id of device acknowledged after its result's receipt verified:
 * like mdm_store_queue_set_state(MDM_Q_ACKNOWLEDGED) from queued/delivered, and also
 * from failed when it failed only because an earlier receipt was refused (reason
 * "receipt refused: ..."): the genuine receipt that follows completes it. Rows changed. */
int mdm_store_queue_receipt_verified(struct mdm_store *s, const char *id, const char *device,
				     int64_t now, cells_err_t *err);

#endif
