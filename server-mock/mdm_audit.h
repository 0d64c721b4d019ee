/* mdm_audit.h - the server side of the audit log: storage of uploaded AuditBatch
 * messages with continuity verification, and offline verification of export bundles.
 *
 * Storage is a small interface over the MDM's SQL layer (mdm_db.h; tables mdm_audit_*):
 * open it on its own sqlite file or on the PostgreSQL database, or attach it to a
 * database handle. mdm_audit_store_batch() is what
 * the management transport calls for every AuditBatch a device uploads: it checks the
 * batch (shape, hash chain, the device's checkpoint signature) and its continuity with
 * what the server already holds. A batch that contradicts earlier uploads (a record or
 * checkpoint rewritten, a checkpoint signed later that covers less: the device log was
 * truncated) is refused and leaves an alert that `cells-mdm audit verify DEVICE` reports. */
#ifndef CELLS_MDM_AUDIT_H
#define CELLS_MDM_AUDIT_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "audit_chain.h"
#include "err.h"

struct mdm_audit_store;

struct mdb;

/* Open (create) the store at where: a sqlite file path or a PostgreSQL conninfo
 * (mdm_db.h); owned, close with mdm_audit_store_close. */
int mdm_audit_store_open(const char *where, struct mdm_audit_store **out, cells_err_t *err);
/* Use an existing database handle (borrowed: it must outlive the store). */
int mdm_audit_store_attach(struct mdb *db, struct mdm_audit_store **out, cells_err_t *err);
void mdm_audit_store_close(struct mdm_audit_store *s);

struct mdm_audit_store_result {
	uint64_t stored;	      /* new records stored */
	uint64_t first_seq, last_seq; /* of the batch's records (0 when none) */
	uint64_t checkpoint_seq;      /* of its checkpoint (0 when none) */
	bool alert;		      /* a continuity break was recorded */
};
/* Verify and store one batch from device_id whose raw Ed25519 public key is pub (from
 * its enrollment). All or nothing. Returns 0 when stored (a re-upload of what is held
 * already is fine), -1 with err when refused (res->alert tells whether it was a
 * continuity break, recorded as an alert). */
int mdm_audit_store_batch(struct mdm_audit_store *s, const char *device_id, const uint8_t pub[32],
			  const Cells__V1__AuditBatch *b, struct mdm_audit_store_result *res,
			  cells_err_t *err);

/* Verify everything stored for a device. Returns 0 when it could read the store;
 * *ok says whether it verifies; the report (owned JSON object) has records, gaps,
 * checkpoints, alerts and the first problem. */
int mdm_audit_verify_device(struct mdm_audit_store *s, const char *device_id, bool *ok,
			    json_object **report, cells_err_t *err);

#endif
