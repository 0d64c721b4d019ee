/* audit.h - the tamper-evident audit log (STATE_DIR/audit.db).
 *
 * audit_append() returns only after the record is durable (sqlite WAL, synchronous=FULL:
 * the commit fsyncs the WAL, so an acknowledged record survives SIGKILL and power
 * loss); a caller that gets -1 must not carry out the security-relevant operation it
 * was about to log (fail closed). Nothing is ever dropped silently: a record is either
 * committed or the call fails.
 *
 * Record fields: vp ("" for device-wide), actor ("cellsd", "mdm", "uid:N", "vp:NAME"),
 * event (dotted type such as "policy.rejected"), outcome ("ok", "refused", "failed"),
 * details (a JSON object, borrowed, may be NULL). Records about a private VP (by
 * default "personal") keep only content-free detail keys (counts, classes, codes).
 *
 * Each record is hash-chained to the one before (policy/audit_chain.h); signed
 * checkpoints (seq, head hash, time) are made every AUDIT_CP_INTERVAL records, every
 * AUDIT_CP_PERIOD_S seconds (after audit_attach), on export, on upload and on demand.
 * When free space on the log's filesystem falls below the near-full threshold, one
 * "audit.near_full" record is written and every further append fails with ENOSPC. */
#ifndef CELLS_AUDIT_H
#define CELLS_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "audit_chain.h"
#include "err.h"
#include "loop.h"

#define AUDIT_CP_INTERVAL 1000		    /* records between automatic checkpoints */
#define AUDIT_CP_PERIOD_S 300		    /* seconds between timed checkpoints */
#define AUDIT_NEAR_FULL_DEFAULT (32u << 20) /* bytes free below which the log is "near full" */
#define AUDIT_RETAIN_DEFAULT 2000000	    /* records kept before rotation prunes */

struct audit;

/* Open (create) the log; *out is owned by the caller (audit_close). The environment
 * variable CELLS_AUDIT_NEAR_FULL_BYTES overrides the near-full threshold. */
int audit_open(const char *path, struct audit **out, cells_err_t *err);
void audit_close(struct audit *a);
int audit_append(struct audit *a, const char *vp, const char *actor, const char *event,
		 const char *outcome, json_object *details, uint64_t *seq, cells_err_t *err);

/* Several records in one transaction (one fsync); all or nothing. */
struct audit_entry {
	const char *vp, *actor, *event, *outcome;
	json_object *details; /* borrowed, may be NULL */
};
int audit_append_batch(struct audit *a, const struct audit_entry *e, size_t n, uint64_t *last_seq,
		       cells_err_t *err);

/* Sign checkpoints with key (ownership taken). Without a signer no checkpoints are made
 * and verification covers the chain only. */
int audit_set_signer(struct audit *a, EVP_PKEY *key, cells_err_t *err);
/* cellsd start-up: load the device key of state_dir as signer, log "audit.opened",
 * and schedule timed checkpoints and retention on the loop. */
int audit_attach(struct audit *a, struct loop *l, const char *state_dir, cells_err_t *err);
void audit_set_near_full(struct audit *a, uint64_t bytes);
void audit_set_retention(struct audit *a, uint64_t max_records); /* 0: keep all */
/* VPs whose records carry no content (default: "personal"). */
void audit_set_private_vp(struct audit *a, const char *vp);

/* Make (and store) a signed checkpoint of the current head now, unless the head is
 * already checkpointed; *seq gets the covered seq (0: empty log). */
int audit_checkpoint_now(struct audit *a, uint64_t *seq, cells_err_t *err);
/* Head of the log: last seq (0 when empty) and its hash. */
int audit_head(struct audit *a, uint64_t *seq, uint8_t hash[AUDIT_HASH_LEN], cells_err_t *err);

/* Query: records matching every given filter, the newest `limit` (default 100,
 * at most 100000) in sequence order, appended to arr as JSON objects. Returns 0, or 1
 * when fewer were returned to keep the result under 12 MiB (the oldest are left out). */
struct audit_filter {
	int64_t since_us, until_us;		/* 0: unbounded */
	const char *vp, *type, *outcome, *grep; /* NULL/"": any; type matches "T" and "T.*" */
	uint32_t limit;
};
int audit_query(struct audit *a, const struct audit_filter *f, json_object *arr, cells_err_t *err);

/* Verify the whole chain and every stored checkpoint. Returns 0 when it could read the
 * log (res says whether it verifies), -1 when the log cannot be read (corrupt DB). */
struct audit_verify_result {
	bool ok;
	uint64_t records, checkpoints, first_seq, last_seq, bad_seq;
	bool signed_checkpoints; /* checkpoints were checked against the device key */
	char reason[CELLS_ERR_MSG_MAX];
};
int audit_verify(struct audit *a, struct audit_verify_result *res, cells_err_t *err);

/* Write an export bundle (docs/PROTOCOL.md "Audit chain") to fd: a fresh checkpoint
 * covers the last record. Needs a signer. *records gets the record count. */
int audit_export(struct audit *a, int fd, uint64_t *records, cells_err_t *err);

/* Prune records below `below` (keeps at least the head): a signed checkpoint at
 * below-1 covers the pruned range, then an "audit.rotated" record is appended. */
int audit_prune(struct audit *a, uint64_t below, cells_err_t *err);

/* For the management channel: an AuditBatch of up to max records from since_seq on
 * (max 0: checkpoint only), details withheld per mode_fn(vp) (Cells__V1__AuditUpload:
 * FULL keeps details, anything else withholds them; records always carry metadata so
 * the chain verifies; mode_fn NULL: FULL), and a signed checkpoint of the current head
 * (its seq is >= the last record's). *out is freed with audit_batch_free. */
typedef int (*audit_upload_mode_fn)(const char *vp, void *data);
int audit_upload_batch(struct audit *a, uint64_t since_seq, size_t max,
		       audit_upload_mode_fn mode_fn, void *data, Cells__V1__AuditBatch **out,
		       cells_err_t *err);
void audit_batch_free(Cells__V1__AuditBatch *b);

/* The daemon's audit API, which every module calls: append a record to cellsd's log;
 * details may be NULL. A failure switches the daemon to CELLSD_ST_AUDIT_CLOSED (it
 * fails closed: only what that state permits is served) and returns -1. */
struct cellsd;
int cellsd_audit(struct cellsd *d, const char *vp, const char *actor, const char *event,
		 const char *outcome, json_object *details, cells_err_t *err);

#endif
