/* audit_chain.h - the audit log's hash chain and signed checkpoints, pure code on
 * buffers (docs/PROTOCOL.md "Audit chain" is the normative description).
 *
 *   canonical(r) = u64be seq || i64be time_us
 *                  || u16be len || vp || u16be len || actor
 *                  || u16be len || event || u16be len || outcome
 *                  || details_hash (32 bytes: SHA-256 of the details JSON text)
 *   hash(r)      = SHA-256("cells.v1.audit-record" || 0x00 || prev_hash || canonical(r))
 *
 * prev_hash of record 1 is 32 zero bytes; of record n it is hash(n-1). Checkpoints are
 * AuditCheckpoint messages signed (SIGNED_AUDIT_CHECKPOINT) with the device key.
 * Because the chain covers details only through their hash, details can be withheld
 * from an upload (details_withheld, details_hash) and the chain still verifies.
 *
 * A verifier (struct audit_verifier) is fed records in sequence order and checkpoints
 * as they come; it stops at the first break and names the record. Used by the agent
 * (cellctl audit verify), by cells-mdm (export bundles, uploaded AuditBatch messages)
 * and by the tests. */
#ifndef CELLS_AUDIT_CHAIN_H
#define CELLS_AUDIT_CHAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "wire.h"

#define AUDIT_HASH_LEN 32
#define AUDIT_FIELD_MAX 255	/* vp, actor, event, outcome: bytes */
#define AUDIT_DETAILS_MAX 16384 /* details JSON text: bytes */
#define AUDIT_CANONICAL_MAX (8 + 8 + 4 * (2 + AUDIT_FIELD_MAX) + AUDIT_HASH_LEN)
#define AUDIT_RECORD_DOMAIN "cells.v1.audit-record"
#define AUDIT_BUNDLE_MAGIC "CELLS-AUDIT-EXPORT-1\n" /* 21 bytes */
#define AUDIT_BUNDLE_MAGIC_LEN 21
#define AUDIT_BUNDLE_HEADER_LEN (AUDIT_BUNDLE_MAGIC_LEN + 32)
#define AUDIT_DEVICE_ID_LEN 32 /* hex chars */

/* One record; strings are borrowed and NUL-terminated. */
struct audit_rec {
	uint64_t seq;
	int64_t time_us;
	const char *vp, *actor, *event, *outcome;
	const char *details; /* JSON object text; ignored when details_withheld */
	bool details_withheld;
	uint8_t details_hash[AUDIT_HASH_LEN]; /* used when withheld (else computed) */
	uint8_t prev_hash[AUDIT_HASH_LEN];
	uint8_t hash[AUDIT_HASH_LEN];
};

/* SHA-256 of the details text (NULL counts as "{}"). */
void audit_details_hash(const char *details, uint8_t out[AUDIT_HASH_LEN]);
/* Check field sizes (and that nothing is NUL-embedded); -1 with a reason. */
int audit_rec_check(const struct audit_rec *r, cells_err_t *err);
/* Canonical bytes into out (AUDIT_CANONICAL_MAX bytes); returns the length or -1. */
int audit_canonical(const struct audit_rec *r, uint8_t out[AUDIT_CANONICAL_MAX], cells_err_t *err);
/* hash(r) over prev (not r->prev_hash) into out. */
int audit_rec_hash(const struct audit_rec *r, const uint8_t prev[AUDIT_HASH_LEN],
		   uint8_t out[AUDIT_HASH_LEN], cells_err_t *err);

/* Device id of a raw Ed25519 public key: hex of the first 16 bytes of its SHA-256. */
void audit_device_id(const uint8_t pub[32], char out[AUDIT_DEVICE_ID_LEN + 1]);

/* A verified checkpoint. */
struct audit_cp {
	uint64_t seq;
	uint8_t head_hash[AUDIT_HASH_LEN];
	int64_t time_us;
	uint64_t pruned_below;
	char device_id[AUDIT_DEVICE_ID_LEN + 1];
};

/* Verify a SIGNED_AUDIT_CHECKPOINT with the device's raw public key (a signature by
 * that key must be present and valid), then parse the payload; when device_id is not
 * NULL it must match. */
int audit_cp_open(const Cells__V1__Signed *s, const uint8_t pub[32], struct audit_cp *out,
		  cells_err_t *err);
/* Build the AuditCheckpoint payload (packed) for signing; *out is malloc'd. */
int audit_cp_payload(const struct audit_cp *cp, uint8_t **out, size_t *len, cells_err_t *err);

struct audit_verifier {
	/* configuration */
	bool allow_any_start; /* the first record may start anywhere (server continuity) */
	/* an anchor: the hash of record anchor_seq (from a pruning checkpoint) */
	bool have_anchor;
	uint64_t anchor_seq;
	uint8_t anchor_hash[AUDIT_HASH_LEN];
	/* state */
	bool started;
	uint64_t first_seq, last_seq, records, checkpoints;
	uint8_t head[AUDIT_HASH_LEN];
	uint64_t max_cp_seq; /* highest checkpoint seen */
	/* the first break */
	bool broken;
	uint64_t bad_seq;
	char reason[CELLS_ERR_MSG_MAX];
};

void audit_verifier_init(struct audit_verifier *v);
/* Feed the next record. On a break: -1, v->broken, v->bad_seq and err name it. */
int audit_verifier_record(struct audit_verifier *v, const struct audit_rec *r, cells_err_t *err);
/* Feed a verified checkpoint: it must agree with the chain seen so far (if it covers a
 * record already fed), or becomes the anchor when no record was fed yet. A checkpoint
 * beyond the records fed is remembered and reported by audit_verifier_finish. */
int audit_verifier_checkpoint(struct audit_verifier *v, const struct audit_cp *cp,
			      cells_err_t *err);
/* At the end: the log must reach every checkpoint seen (else it was truncated). */
int audit_verifier_finish(struct audit_verifier *v, cells_err_t *err);

/* A record of an AuditBatch as a struct audit_rec (borrowed from the message); checks
 * sizes and hash lengths. */
int audit_rec_from_pb(const Cells__V1__AuditRecord *p, struct audit_rec *r, cells_err_t *err);
/* Decode an AuditBatch from untrusted bytes: size limit, unpack, at most
 * CELLS_MAX_AUDIT_BATCH_RECORDS records, every record well-formed, consecutive seqs,
 * the checkpoint (if any) well-shaped. Does not verify hashes or signatures. */
int audit_batch_decode(const uint8_t *p, size_t n, Cells__V1__AuditBatch **out, cells_err_t *err);
/* The same checks on an already unpacked batch (as found inside an Envelope). */
int audit_batch_check(const Cells__V1__AuditBatch *b, cells_err_t *err);
/* Feed a whole batch to v: records, then its checkpoint (verified with pub; its device
 * id must be device_id and the batch's). */
int audit_verifier_batch(struct audit_verifier *v, const Cells__V1__AuditBatch *b,
			 const uint8_t pub[32], cells_err_t *err);

/* Export bundle: header = magic || 32-byte device public key, then frames
 * u32be length || AuditBatch. Parse the header. */
int audit_bundle_header(const uint8_t *p, size_t n, uint8_t pub[32], cells_err_t *err);
/* Verify a whole bundle held in memory (the fuzz target and small bundles). On success
 * fills *v; on a break v->bad_seq names the record. */
int audit_bundle_verify_mem(const uint8_t *p, size_t n, struct audit_verifier *v, uint8_t pub[32],
			    cells_err_t *err);

CELLS_DEFINE_PB_CLEANUP(Cells__V1__AuditBatch, cells__v1__audit_batch__free_unpacked)
#define cleanup_audit_batch __attribute__((cleanup(cells_cells__v1__audit_batch__free_unpackedp)))

#endif
