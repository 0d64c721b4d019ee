/* wire.h - the management protocol's codec with its size limits and signing rules.
 *
 * Every decoder here checks the input size against the message's limit before it
 * unpacks anything, and checks the protocol version and required fields after.
 * The exact bytes that are signed are  domain(kind) || 0x00 || payload  (see
 * docs/PROTOCOL.md "Signatures"); cells_signed_message() builds them. */
#ifndef CELLS_WIRE_H
#define CELLS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "cells.pb-c.h"
#include "control.pb-c.h"
#include "err.h"

#define CELLS_PROTOCOL_VERSION 1
#define CELLS_WS_SUBPROTOCOL "cells.v1"

/* Size limits in bytes (docs/PROTOCOL.md "Size limits"). */
#define CELLS_MAX_ENVELOPE (1024 * 1024)
#define CELLS_MAX_POLICY (64 * 1024)
#define CELLS_MAX_COMMAND (4 * 1024)
#define CELLS_MAX_DELEGATION (1024)
#define CELLS_MAX_TRUST_ROOT (4 * 1024)
#define CELLS_MAX_RECEIPT (4 * 1024)
#define CELLS_MAX_CHECKPOINT (1024)
#define CELLS_MAX_COMMAND_RESULT (8 * 1024)
#define CELLS_MAX_ENROLL_BINDING (512)
#define CELLS_MAX_AUDIT_ACK (1024)
#define CELLS_MAX_IMAGE_MANIFEST (1024)
#define CELLS_MAX_SIGNED_BLOB (CELLS_MAX_POLICY + 16 * 1024) /* Signed wrapper of a policy */
#define CELLS_MAX_SIGNATURES 8
#define CELLS_MAX_SIGNED_LIST 16 /* Signed objects in one repeated field of an envelope */
#define CELLS_MAX_AUDIT_BATCH_RECORDS 1000
#define CELLS_MAX_ID_LEN 64
#define CELLS_MAX_CTL_REQUEST (1024 * 1024)
#define CELLS_MAX_CTL_RESPONSE (16 * 1024 * 1024)

/* Domain-separation string for a signed kind; NULL for an unknown kind. */
const char *cells_signed_domain(Cells__V1__SignedKind kind);
/* Largest payload accepted for a signed kind; 0 for an unknown kind. */
size_t cells_signed_payload_max(Cells__V1__SignedKind kind);

/* Build domain(kind) || 0x00 || payload into a new buffer (owned by the caller). */
int cells_signed_message(Cells__V1__SignedKind kind, const uint8_t *payload, size_t len,
			 uint8_t **out, size_t *out_len, cells_err_t *err);

/* Decode an Envelope from untrusted bytes: size limit, unpack, version 1, a message id
 * of 1..64 printable bytes, exactly one body, and every Signed the body carries of the
 * kind its position names and within that kind's limits (cells_envelope_check_signed).
 * Nothing inside a Signed's payload is parsed here. *out is owned by the caller
 * (cells__v1__envelope__free_unpacked). */
int cells_envelope_decode(const uint8_t *p, size_t n, Cells__V1__Envelope **out, cells_err_t *err);
/* The kind rules of an unpacked envelope's Signed objects (docs/PROTOCOL.md): policy is a
 * SIGNED_POLICY, command a SIGNED_COMMAND, CommandResult.receipt a SIGNED_WIPE_RECEIPT,
 * AuditBatch.checkpoint a SIGNED_AUDIT_CHECKPOINT, Ack.audit_ack a SIGNED_AUDIT_ACK,
 * EnrollRequest.identity_binding a SIGNED_ENROLL_BINDING, TrustUpdate's and
 * EnrollResponse's lists their kinds (at most CELLS_MAX_SIGNED_LIST each); each with a
 * payload within its kind's limit and well-formed signatures (cells_signed_check). The
 * error names the field. */
int cells_envelope_check_signed(const Cells__V1__Envelope *env, cells_err_t *err);
/* Encode an Envelope (version is set to 1); refuses to produce over-limit output. */
int cells_envelope_encode(Cells__V1__Envelope *env, uint8_t **out, size_t *out_len,
			  cells_err_t *err);

/* Decode a Signed wrapper from untrusted bytes (size limit, 1..8 signatures of 32-byte
 * key ids and 64-byte signatures, a known kind, payload within that kind's limit).
 * Does not verify: see policy/pol_sig.h. */
int cells_signed_decode(const uint8_t *p, size_t n, Cells__V1__Signed **out, cells_err_t *err);
/* Check an already unpacked Signed (as found inside an Envelope). */
int cells_signed_check(const Cells__V1__Signed *s, Cells__V1__SignedKind want, cells_err_t *err);

/* Control protocol framing limits are checked by the decoders below. */
int cells_ctl_request_decode(const uint8_t *p, size_t n, Cells__Ctl__V1__CtlRequest **out,
			     cells_err_t *err);
int cells_ctl_response_decode(const uint8_t *p, size_t n, Cells__Ctl__V1__CtlResponse **out,
			      cells_err_t *err);

/* cleanup attributes for the unpacked messages */
#define CELLS_DEFINE_PB_CLEANUP(T, fn)                                                             \
	static inline void cells_##fn##p(T **p)                                                    \
	{                                                                                          \
		if (*p)                                                                            \
			fn(*p, NULL);                                                              \
	}
CELLS_DEFINE_PB_CLEANUP(Cells__V1__Envelope, cells__v1__envelope__free_unpacked)
CELLS_DEFINE_PB_CLEANUP(Cells__V1__Signed, cells__v1__signed__free_unpacked)
CELLS_DEFINE_PB_CLEANUP(Cells__V1__Policy, cells__v1__policy__free_unpacked)
CELLS_DEFINE_PB_CLEANUP(Cells__V1__Command, cells__v1__command__free_unpacked)
CELLS_DEFINE_PB_CLEANUP(Cells__V1__KeyDelegation, cells__v1__key_delegation__free_unpacked)
CELLS_DEFINE_PB_CLEANUP(Cells__V1__TrustRoot, cells__v1__trust_root__free_unpacked)
CELLS_DEFINE_PB_CLEANUP(Cells__Ctl__V1__CtlRequest, cells__ctl__v1__ctl_request__free_unpacked)
CELLS_DEFINE_PB_CLEANUP(Cells__Ctl__V1__CtlResponse, cells__ctl__v1__ctl_response__free_unpacked)
#define cleanup_envelope __attribute__((cleanup(cells_cells__v1__envelope__free_unpackedp)))
#define cleanup_signed __attribute__((cleanup(cells_cells__v1__signed__free_unpackedp)))
#define cleanup_policy_pb __attribute__((cleanup(cells_cells__v1__policy__free_unpackedp)))
#define cleanup_command_pb __attribute__((cleanup(cells_cells__v1__command__free_unpackedp)))
#define cleanup_delegation_pb                                                                      \
	__attribute__((cleanup(cells_cells__v1__key_delegation__free_unpackedp)))
#define cleanup_trust_root_pb __attribute__((cleanup(cells_cells__v1__trust_root__free_unpackedp)))
#define cleanup_ctl_request                                                                        \
	__attribute__((cleanup(cells_cells__ctl__v1__ctl_request__free_unpackedp)))
#define cleanup_ctl_response                                                                       \
	__attribute__((cleanup(cells_cells__ctl__v1__ctl_response__free_unpackedp)))

#endif
