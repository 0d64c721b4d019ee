#include "wire.h"
#include "cleanup.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static const struct {
	Cells__V1__SignedKind kind;
	const char *domain;
	size_t max;
} signed_kinds[] = {
    {CELLS__V1__SIGNED_KIND__SIGNED_POLICY, "cells.v1.policy", CELLS_MAX_POLICY},
    {CELLS__V1__SIGNED_KIND__SIGNED_COMMAND, "cells.v1.command", CELLS_MAX_COMMAND},
    {CELLS__V1__SIGNED_KIND__SIGNED_KEY_DELEGATION, "cells.v1.key-delegation",
     CELLS_MAX_DELEGATION},
    {CELLS__V1__SIGNED_KIND__SIGNED_ROOT_ROTATION, "cells.v1.root-rotation", CELLS_MAX_TRUST_ROOT},
    {CELLS__V1__SIGNED_KIND__SIGNED_WIPE_RECEIPT, "cells.v1.wipe-receipt", CELLS_MAX_RECEIPT},
    {CELLS__V1__SIGNED_KIND__SIGNED_AUDIT_CHECKPOINT, "cells.v1.audit-checkpoint",
     CELLS_MAX_CHECKPOINT},
    {CELLS__V1__SIGNED_KIND__SIGNED_COMMAND_RESULT, "cells.v1.command-result",
     CELLS_MAX_COMMAND_RESULT},
    {CELLS__V1__SIGNED_KIND__SIGNED_ENROLL_BINDING, "cells.v1.enroll-binding",
     CELLS_MAX_ENROLL_BINDING},
    {CELLS__V1__SIGNED_KIND__SIGNED_AUDIT_ACK, "cells.v1.audit-ack", CELLS_MAX_AUDIT_ACK},
    {CELLS__V1__SIGNED_KIND__SIGNED_IMAGE_MANIFEST, "cells.v1.image-manifest",
     CELLS_MAX_IMAGE_MANIFEST},
};

const char *cells_signed_domain(Cells__V1__SignedKind kind)
{
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(signed_kinds); i++)
		if (signed_kinds[i].kind == kind)
			return signed_kinds[i].domain;
	return NULL;
}

size_t cells_signed_payload_max(Cells__V1__SignedKind kind)
{
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(signed_kinds); i++)
		if (signed_kinds[i].kind == kind)
			return signed_kinds[i].max;
	return 0;
}

int cells_signed_message(Cells__V1__SignedKind kind, const uint8_t *payload, size_t len,
			 uint8_t **out, size_t *out_len, cells_err_t *err)
{
	const char *d = cells_signed_domain(kind);
	if (!d)
		return cells_err_set(err, EINVAL, "unknown signed kind %d", (int)kind);
	if (len > cells_signed_payload_max(kind))
		return cells_err_set(err, EMSGSIZE,
				     "%s payload of %zu bytes is over the limit of %zu", d, len,
				     cells_signed_payload_max(kind));
	size_t dl = strlen(d);
	uint8_t *m = malloc(dl + 1 + len + 1);
	if (!m)
		return cells_err_sys(err, ENOMEM, "signed message");
	memcpy(m, d, dl);
	m[dl] = 0;
	if (len)
		memcpy(m + dl + 1, payload, len);
	*out = m;
	*out_len = dl + 1 + len;
	return 0;
}

static int check_id(const char *id, bool required, const char *what, cells_err_t *err)
{
	size_t n = id ? strlen(id) : 0;
	if (n == 0)
		return required ? cells_err_set(err, EBADMSG, "%s is missing", what) : 0;
	if (n > CELLS_MAX_ID_LEN)
		return cells_err_set(err, EBADMSG, "%s is over %d bytes", what, CELLS_MAX_ID_LEN);
	for (size_t i = 0; i < n; i++)
		if (id[i] < 0x21 || id[i] > 0x7e)
			return cells_err_set(err, EBADMSG, "%s holds a non-printable byte", what);
	return 0;
}

/* One Signed found at `where` inside an envelope: required or optional, of kind `want`. */
static int check_body_signed(const Cells__V1__Signed *s, bool required, Cells__V1__SignedKind want,
			     const char *where, cells_err_t *err)
{
	if (!s)
		return required ? cells_err_set(err, EBADMSG, "%s is missing", where) : 0;
	if (cells_signed_check(s, want, err) < 0)
		return cells_err_prefix(err, "%s", where);
	return 0;
}

static int check_signed_list(Cells__V1__Signed *const *v, size_t n, Cells__V1__SignedKind want,
			     const char *where, cells_err_t *err)
{
	if (n > CELLS_MAX_SIGNED_LIST)
		return cells_err_set(err, EBADMSG, "%s lists %zu signed objects (at most %d)",
				     where, n, CELLS_MAX_SIGNED_LIST);
	for (size_t i = 0; i < n; i++)
		if (check_body_signed(v[i], true, want, where, err) < 0)
			return -1;
	return 0;
}

int cells_envelope_check_signed(const Cells__V1__Envelope *env, cells_err_t *err)
{
	switch (env->body_case) {
	case CELLS__V1__ENVELOPE__BODY_POLICY:
		return check_body_signed(env->policy, true, CELLS__V1__SIGNED_KIND__SIGNED_POLICY,
					 "Envelope.policy", err);
	case CELLS__V1__ENVELOPE__BODY_COMMAND:
		return check_body_signed(env->command, true, CELLS__V1__SIGNED_KIND__SIGNED_COMMAND,
					 "Envelope.command", err);
	case CELLS__V1__ENVELOPE__BODY_IMAGE:
		return check_body_signed(env->image, true,
					 CELLS__V1__SIGNED_KIND__SIGNED_IMAGE_MANIFEST,
					 "Envelope.image", err);
	case CELLS__V1__ENVELOPE__BODY_RESULT:
		return env->result ? check_body_signed(env->result->receipt, false,
						       CELLS__V1__SIGNED_KIND__SIGNED_WIPE_RECEIPT,
						       "CommandResult.receipt", err)
				   : 0;
	case CELLS__V1__ENVELOPE__BODY_AUDIT_BATCH:
		return env->audit_batch
			   ? check_body_signed(env->audit_batch->checkpoint, false,
					       CELLS__V1__SIGNED_KIND__SIGNED_AUDIT_CHECKPOINT,
					       "AuditBatch.checkpoint", err)
			   : 0;
	case CELLS__V1__ENVELOPE__BODY_ACK:
		return env->ack ? check_body_signed(env->ack->audit_ack, false,
						    CELLS__V1__SIGNED_KIND__SIGNED_AUDIT_ACK,
						    "Ack.audit_ack", err)
				: 0;
	case CELLS__V1__ENVELOPE__BODY_ENROLL_REQUEST:
		return env->enroll_request
			   ? check_body_signed(env->enroll_request->identity_binding, false,
					       CELLS__V1__SIGNED_KIND__SIGNED_ENROLL_BINDING,
					       "EnrollRequest.identity_binding", err)
			   : 0;
	case CELLS__V1__ENVELOPE__BODY_ENROLL_RESPONSE:
		return env->enroll_response
			   ? check_signed_list(env->enroll_response->delegations,
					       env->enroll_response->n_delegations,
					       CELLS__V1__SIGNED_KIND__SIGNED_KEY_DELEGATION,
					       "EnrollResponse.delegations", err)
			   : 0;
	case CELLS__V1__ENVELOPE__BODY_TRUST_UPDATE:
		if (!env->trust_update)
			return 0;
		if (check_signed_list(env->trust_update->root_rotations,
				      env->trust_update->n_root_rotations,
				      CELLS__V1__SIGNED_KIND__SIGNED_ROOT_ROTATION,
				      "TrustUpdate.root_rotations", err) < 0)
			return -1;
		return check_signed_list(
		    env->trust_update->delegations, env->trust_update->n_delegations,
		    CELLS__V1__SIGNED_KIND__SIGNED_KEY_DELEGATION, "TrustUpdate.delegations", err);
	default:
		return 0; /* bodies without a Signed */
	}
}

int cells_envelope_decode(const uint8_t *p, size_t n, Cells__V1__Envelope **out, cells_err_t *err)
{
	if (n > CELLS_MAX_ENVELOPE)
		return cells_err_set(err, EMSGSIZE, "envelope of %zu bytes is over the limit of %d",
				     n, CELLS_MAX_ENVELOPE);
	Cells__V1__Envelope *e = cells__v1__envelope__unpack(NULL, n, p);
	if (!e)
		return cells_err_set(err, EBADMSG, "envelope is not a valid protobuf message");
	cleanup_envelope Cells__V1__Envelope *env = e;
	if (env->version != CELLS_PROTOCOL_VERSION)
		return cells_err_set(err, EPROTONOSUPPORT, "envelope version %u is not supported",
				     env->version);
	if (check_id(env->message_id, true, "message_id", err) < 0 ||
	    check_id(env->correlation_id, false, "correlation_id", err) < 0)
		return -1;
	if (env->body_case == CELLS__V1__ENVELOPE__BODY__NOT_SET)
		return cells_err_set(err, EBADMSG, "envelope has no body");
	if (cells_envelope_check_signed(env, err) < 0)
		return -1;
	*out = steal_pointer(&env);
	return 0;
}

int cells_envelope_encode(Cells__V1__Envelope *env, uint8_t **out, size_t *out_len,
			  cells_err_t *err)
{
	env->version = CELLS_PROTOCOL_VERSION;
	size_t n = cells__v1__envelope__get_packed_size(env);
	if (n > CELLS_MAX_ENVELOPE)
		return cells_err_set(err, EMSGSIZE, "envelope of %zu bytes is over the limit of %d",
				     n, CELLS_MAX_ENVELOPE);
	uint8_t *b = malloc(n ? n : 1);
	if (!b)
		return cells_err_sys(err, ENOMEM, "encode envelope");
	cells__v1__envelope__pack(env, b);
	*out = b;
	*out_len = n;
	return 0;
}

int cells_signed_check(const Cells__V1__Signed *s, Cells__V1__SignedKind want, cells_err_t *err)
{
	if (!s)
		return cells_err_set(err, EBADMSG, "signed object is missing");
	const char *d = cells_signed_domain(s->kind);
	if (!d)
		return cells_err_set(err, EBADMSG, "signed object has unknown kind %d",
				     (int)s->kind);
	if (want != CELLS__V1__SIGNED_KIND__SIGNED_KIND_UNSPECIFIED && s->kind != want)
		return cells_err_set(err, EBADMSG, "signed object is a %s, expected a %s", d,
				     cells_signed_domain(want));
	if (s->payload.len > cells_signed_payload_max(s->kind))
		return cells_err_set(err, EMSGSIZE,
				     "%s payload of %zu bytes is over the limit of %zu", d,
				     s->payload.len, cells_signed_payload_max(s->kind));
	if (s->n_signatures == 0)
		return cells_err_set(err, EBADMSG, "%s carries no signature", d);
	if (s->n_signatures > CELLS_MAX_SIGNATURES)
		return cells_err_set(err, EBADMSG,
				     "%s carries %zu signatures, over the limit of %d", d,
				     s->n_signatures, CELLS_MAX_SIGNATURES);
	for (size_t i = 0; i < s->n_signatures; i++) {
		const Cells__V1__Signature *g = s->signatures[i];
		if (g->key_id.len != 32 || g->signature.len != 64)
			return cells_err_set(err, EBADMSG,
					     "%s signature %zu has a malformed key id or signature",
					     d, i);
	}
	return 0;
}

int cells_signed_decode(const uint8_t *p, size_t n, Cells__V1__Signed **out, cells_err_t *err)
{
	if (n > CELLS_MAX_SIGNED_BLOB)
		return cells_err_set(err, EMSGSIZE,
				     "signed object of %zu bytes is over the limit of %d", n,
				     CELLS_MAX_SIGNED_BLOB);
	Cells__V1__Signed *s0 = cells__v1__signed__unpack(NULL, n, p);
	if (!s0)
		return cells_err_set(err, EBADMSG, "signed object is not a valid protobuf message");
	cleanup_signed Cells__V1__Signed *s = s0;
	if (cells_signed_check(s, CELLS__V1__SIGNED_KIND__SIGNED_KIND_UNSPECIFIED, err) < 0)
		return -1;
	*out = steal_pointer(&s);
	return 0;
}

int cells_ctl_request_decode(const uint8_t *p, size_t n, Cells__Ctl__V1__CtlRequest **out,
			     cells_err_t *err)
{
	if (n > CELLS_MAX_CTL_REQUEST)
		return cells_err_set(err, EMSGSIZE, "request of %zu bytes is over the limit of %d",
				     n, CELLS_MAX_CTL_REQUEST);
	Cells__Ctl__V1__CtlRequest *r = cells__ctl__v1__ctl_request__unpack(NULL, n, p);
	if (!r)
		return cells_err_set(err, EBADMSG, "request is not a valid protobuf message");
	if (r->version != CELLS_PROTOCOL_VERSION ||
	    r->req_case == CELLS__CTL__V1__CTL_REQUEST__REQ__NOT_SET) {
		cells__ctl__v1__ctl_request__free_unpacked(r, NULL);
		return cells_err_set(err, EPROTONOSUPPORT, "request has no known body or version");
	}
	*out = r;
	return 0;
}

int cells_ctl_response_decode(const uint8_t *p, size_t n, Cells__Ctl__V1__CtlResponse **out,
			      cells_err_t *err)
{
	if (n > CELLS_MAX_CTL_RESPONSE)
		return cells_err_set(err, EMSGSIZE, "response of %zu bytes is over the limit of %d",
				     n, CELLS_MAX_CTL_RESPONSE);
	Cells__Ctl__V1__CtlResponse *r = cells__ctl__v1__ctl_response__unpack(NULL, n, p);
	if (!r)
		return cells_err_set(err, EBADMSG, "response is not a valid protobuf message");
	*out = r;
	return 0;
}
