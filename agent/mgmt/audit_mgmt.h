/* audit_mgmt.h - uploads of the audit log to the MDM over the management channel.
 *
 * The device sends its audit records as Cells.v1.AuditBatch envelopes through the
 * durable outbox (outbox.h): after each connect, when AUDIT_UPLOAD_THRESHOLD new
 * records wait, and every policy.audit_upload_interval_s seconds (0: AUDIT_UPLOAD_PERIOD_S)
 * while records wait, and on a signed RequestAuditUpload command. One batch is in flight
 * at a time. The cursor (the last seq the server acknowledged) lives in the state DB
 * (module "audit_upload") and advances only on an Ack whose audit_ack (SIGNED_AUDIT_ACK
 * by a key the pinned root delegated for the command role) verifies and names the batch,
 * its last record and that record's hash; a bare or forged Ack moves nothing (audited
 * "audit.upload.ack_refused", the batch stays queued and is sent again); a
 * batch the server refuses (Error correlated to it) is dropped from the outbox, audited
 * as "audit.upload.refused" and tried again from the same cursor at the next period.
 *
 * Details per record follow the policy (audit_upload_batch): device-wide records ("" VP)
 * are sent in full, a VP's records per its AuditRule.upload (FULL: details; METADATA,
 * NONE, no rule: details withheld, the chain still verifies). */
#ifndef CELLS_AUDIT_MGMT_H
#define CELLS_AUDIT_MGMT_H

#include <json-c/json.h>

#include "cellsd.h"
#include "err.h"
#include "wire.h"

#define AUDIT_UPLOAD_PERIOD_S 300  /* default period (policy.audit_upload_interval_s 0) */
#define AUDIT_UPLOAD_THRESHOLD 100 /* this many new records upload at once */
#define AUDIT_UPLOAD_BATCH 500	   /* records per batch (at most) */
#define AUDIT_UPLOAD_POLL_MS 1000  /* how often the head is looked at */

/* Load the cursor (d->audit_up, owned) and register the policy hook. Run after
 * policy_engine_init() and before policy_engine_start(). */
int audit_mgmt_init(struct cellsd *d, cells_err_t *err);
void audit_mgmt_stop(struct cellsd *d);

/* Hooks of the management channel (agent/mgmt/mgmt.c). */
void audit_mgmt_on_connect(struct cellsd *d);
/* An Ack naming message_id: 0 when it is not the batch in flight (the caller handles it),
 * 1 when it acknowledged the batch (verified: the cursor moved; drop it from the
 * outbox), -1 when it was refused (keep the batch in the outbox). */
int audit_mgmt_on_ack(struct cellsd *d, const char *message_id, const Cells__V1__Signed *audit_ack);
/* The acknowledged cursor (DeviceHello.audit_uploaded_seq). */
uint64_t audit_mgmt_acked_seq(struct cellsd *d);
void audit_mgmt_on_error(struct cellsd *d, const char *correlation_id, unsigned code,
			 const char *reason);
/* Adds "audit_upload": {acked_seq, head_seq, inflight, batches, refused, last_error}. */
void audit_mgmt_status_json(struct cellsd *d, json_object *o);

/* Queue the next batch now, from since_seq (0: after the acknowledged cursor). Returns
 * 1 when a batch was queued, 0 when there was nothing to send or a batch is in flight
 * (the request is kept and served after it), -1 with err on failure. */
int audit_mgmt_upload_now(struct cellsd *d, uint64_t since_seq, cells_err_t *err);

/* Command handler (mgmt_commands.c): RequestAuditUpload. */
int audit_mgmt_cmd_upload(struct cellsd *d, const Cells__V1__Command *cmd,
			  Cells__V1__CommandResult *res, cells_err_t *err);

#endif
