/* test_wire.c - every management message packs and unpacks; over-limit input is
 * refused before unpacking; a signed payload with one flipped bit fails to verify. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "cleanup_ssl.h"
#include "pol_policy.h"
#include "pol_sig.h"
#include "wire.h"

/* A Signed of the right shape (one 32-byte key id, one 64-byte signature), not verified:
 * what the decoders check before any signature is. The storage is static. */
static uint8_t fake_kid[32], fake_sig[64];
static Cells__V1__Signature fake_g = {
    PROTOBUF_C_MESSAGE_INIT(&cells__v1__signature__descriptor), {32, fake_kid}, {64, fake_sig}};
static Cells__V1__Signature *fake_gs[] = {&fake_g};

static void shaped(Cells__V1__Signed *s, Cells__V1__SignedKind kind, uint8_t *payload, size_t len)
{
	cells__v1__signed__init(s);
	s->kind = kind;
	s->payload.data = payload;
	s->payload.len = len;
	s->signatures = fake_gs;
	s->n_signatures = 1;
}

static Cells__V1__Envelope *roundtrip(Cells__V1__Envelope *e)
{
	uint8_t *b;
	size_t n;
	cells_err_t err;
	e->message_id = "m-1";
	assert_int_equal(cells_envelope_encode(e, &b, &n, &err), 0);
	Cells__V1__Envelope *out = NULL;
	assert_int_equal(cells_envelope_decode(b, n, &out, &err), 0);
	free(b);
	assert_int_equal(out->body_case, e->body_case);
	assert_string_equal(out->message_id, "m-1");
	return out;
}

static void test_every_body_roundtrips(void **state)
{
	Cells__V1__DeviceHello hello = CELLS__V1__DEVICE_HELLO__INIT;
	Cells__V1__ServerHello sh = CELLS__V1__SERVER_HELLO__INIT;
	Cells__V1__EnrollRequest er = CELLS__V1__ENROLL_REQUEST__INIT;
	Cells__V1__EnrollResponse ers = CELLS__V1__ENROLL_RESPONSE__INIT;
	Cells__V1__Signed sg, sc;
	Cells__V1__CommandResult cr = CELLS__V1__COMMAND_RESULT__INIT;
	Cells__V1__Ack ack = CELLS__V1__ACK__INIT;
	Cells__V1__AuditBatch ab = CELLS__V1__AUDIT_BATCH__INIT;
	Cells__V1__Error er2 = CELLS__V1__ERROR__INIT;
	Cells__V1__TrustUpdate tu = CELLS__V1__TRUST_UPDATE__INIT;
	hello.device_id = "dev";
	hello.policy_version = 42;
	er.token = "tok";
	cr.command_id = "c1";
	cr.status = CELLS__V1__RESULT_STATUS__RESULT_DONE;
	er2.reason = "nope";
	shaped(&sg, CELLS__V1__SIGNED_KIND__SIGNED_POLICY, (uint8_t *)"p", 1);
	shaped(&sc, CELLS__V1__SIGNED_KIND__SIGNED_COMMAND, (uint8_t *)"c", 1);
	struct {
		Cells__V1__Envelope__BodyCase c;
		void *p;
	} bodies[] = {
	    {CELLS__V1__ENVELOPE__BODY_HELLO, &hello},
	    {CELLS__V1__ENVELOPE__BODY_SERVER_HELLO, &sh},
	    {CELLS__V1__ENVELOPE__BODY_ENROLL_REQUEST, &er},
	    {CELLS__V1__ENVELOPE__BODY_ENROLL_RESPONSE, &ers},
	    {CELLS__V1__ENVELOPE__BODY_POLICY, &sg},
	    {CELLS__V1__ENVELOPE__BODY_COMMAND, &sc},
	    {CELLS__V1__ENVELOPE__BODY_RESULT, &cr},
	    {CELLS__V1__ENVELOPE__BODY_ACK, &ack},
	    {CELLS__V1__ENVELOPE__BODY_AUDIT_BATCH, &ab},
	    {CELLS__V1__ENVELOPE__BODY_ERROR, &er2},
	    {CELLS__V1__ENVELOPE__BODY_TRUST_UPDATE, &tu},
	    {CELLS__V1__ENVELOPE__BODY_STATUS, &hello},
	};
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(bodies); i++) {
		Cells__V1__Envelope e = CELLS__V1__ENVELOPE__INIT;
		e.body_case = bodies[i].c;
		e.hello = bodies[i].p; /* the body is a union: any member sets it */
		Cells__V1__Envelope *out = roundtrip(&e);
		if (bodies[i].c == CELLS__V1__ENVELOPE__BODY_HELLO) {
			assert_string_equal(out->hello->device_id, "dev");
			assert_int_equal(out->hello->policy_version, 42);
		}
		if (bodies[i].c == CELLS__V1__ENVELOPE__BODY_RESULT)
			assert_int_equal(out->result->status,
					 CELLS__V1__RESULT_STATUS__RESULT_DONE);
		cells__v1__envelope__free_unpacked(out, NULL);
	}
}

static void test_payload_messages_roundtrip(void **state)
{
	Cells__V1__Policy p = CELLS__V1__POLICY__INIT;
	Cells__V1__VpRule vr = CELLS__V1__VP_RULE__INIT;
	Cells__V1__VpRule *vrs[] = {&vr};
	Cells__V1__DeviceRule dr = CELLS__V1__DEVICE_RULE__INIT;
	Cells__V1__DeviceRule *drs[] = {&dr};
	dr.device_class = "camera";
	dr.mode = CELLS__V1__ACCESS_MODE__ACCESS_EXCLUSIVE;
	vr.vp = "work";
	vr.devices = drs;
	vr.n_devices = 1;
	p.version = 7;
	p.device_id = "d";
	p.vps = vrs;
	p.n_vps = 1;
	uint8_t buf[1024];
	size_t n = cells__v1__policy__pack(&p, buf);
	Cells__V1__Policy *q = cells__v1__policy__unpack(NULL, n, buf);
	assert_non_null(q);
	assert_int_equal(q->version, 7);
	assert_string_equal(q->vps[0]->devices[0]->device_class, "camera");
	assert_int_equal(q->vps[0]->devices[0]->mode, CELLS__V1__ACCESS_MODE__ACCESS_EXCLUSIVE);
	cells__v1__policy__free_unpacked(q, NULL);

	Cells__V1__Command c = CELLS__V1__COMMAND__INIT;
	Cells__V1__WipeVp w = CELLS__V1__WIPE_VP__INIT;
	w.vp = "work";
	c.command_id = "cmd-1";
	c.action_case = CELLS__V1__COMMAND__ACTION_WIPE;
	c.wipe = &w;
	n = cells__v1__command__pack(&c, buf);
	Cells__V1__Command *c2 = cells__v1__command__unpack(NULL, n, buf);
	assert_non_null(c2);
	assert_int_equal(c2->action_case, CELLS__V1__COMMAND__ACTION_WIPE);
	assert_string_equal(c2->wipe->vp, "work");
	cells__v1__command__free_unpacked(c2, NULL);

	Cells__V1__WipeReceipt r = CELLS__V1__WIPE_RECEIPT__INIT;
	r.vp = "work";
	r.key_status = CELLS__V1__KEY_STATUS__KEY_ABSENT;
	n = cells__v1__wipe_receipt__pack(&r, buf);
	Cells__V1__WipeReceipt *r2 = cells__v1__wipe_receipt__unpack(NULL, n, buf);
	assert_int_equal(r2->key_status, CELLS__V1__KEY_STATUS__KEY_ABSENT);
	cells__v1__wipe_receipt__free_unpacked(r2, NULL);
}

static void test_oversize_refused_before_unpack(void **state)
{
	size_t n = CELLS_MAX_ENVELOPE + 1;
	uint8_t *b = calloc(1, n);
	cells_err_t err;
	Cells__V1__Envelope *e = NULL;
	assert_int_equal(cells_envelope_decode(b, n, &e, &err), -1);
	assert_int_equal(err.code, EMSGSIZE);
	assert_null(e);
	Cells__V1__Signed *s = NULL;
	assert_int_equal(cells_signed_decode(b, CELLS_MAX_SIGNED_BLOB + 1, &s, &err), -1);
	assert_int_equal(err.code, EMSGSIZE);
	Cells__Ctl__V1__CtlRequest *r = NULL;
	assert_int_equal(cells_ctl_request_decode(b, CELLS_MAX_CTL_REQUEST + 1, &r, &err), -1);
	assert_int_equal(err.code, EMSGSIZE);
	free(b);
}

static void test_envelope_rules(void **state)
{
	cells_err_t err;
	Cells__V1__Envelope e = CELLS__V1__ENVELOPE__INIT;
	Cells__V1__Ack ack = CELLS__V1__ACK__INIT;
	uint8_t buf[256];
	Cells__V1__Envelope *out = NULL;
	/* no body */
	e.version = 1;
	e.message_id = "x";
	size_t n = cells__v1__envelope__pack(&e, buf);
	assert_int_equal(cells_envelope_decode(buf, n, &out, &err), -1);
	assert_non_null(strstr(err.msg, "no body"));
	/* wrong version */
	e.body_case = CELLS__V1__ENVELOPE__BODY_ACK;
	e.ack = &ack;
	e.version = 2;
	n = cells__v1__envelope__pack(&e, buf);
	assert_int_equal(cells_envelope_decode(buf, n, &out, &err), -1);
	assert_int_equal(err.code, EPROTONOSUPPORT);
	/* missing message id */
	e.version = 1;
	e.message_id = "";
	n = cells__v1__envelope__pack(&e, buf);
	assert_int_equal(cells_envelope_decode(buf, n, &out, &err), -1);
	assert_non_null(strstr(err.msg, "message_id"));
	/* garbage */
	memset(buf, 0xff, 64);
	assert_int_equal(cells_envelope_decode(buf, 64, &out, &err), -1);
	assert_int_equal(err.code, EBADMSG);
}

static void test_signature_bitflip(void **state)
{
	cells_err_t err;
	cleanup_pkey EVP_PKEY *k = pol_key_generate(&err);
	assert_non_null(k);
	const uint8_t payload[] = "policy bytes exactly as signed";
	Cells__V1__Signed s = CELLS__V1__SIGNED__INIT;
	assert_int_equal(
	    pol_sign(&s, CELLS__V1__SIGNED_KIND__SIGNED_POLICY, payload, sizeof payload, k, &err),
	    0);
	uint8_t pub[32];
	assert_int_equal(pol_key_raw_public(k, pub, &err), 0);
	uint8_t kid[32];
	pol_key_id(pub, kid);
	assert_memory_equal(s.signatures[0]->key_id.data, kid, 32);
	/* the signed object survives packing and the shape check */
	uint8_t *packed;
	size_t plen;
	assert_int_equal(pol_signed_pack(&s, &packed, &plen, &err), 0);
	Cells__V1__Signed *d = NULL;
	assert_int_equal(cells_signed_decode(packed, plen, &d, &err), 0);
	assert_int_equal(pol_verify_raw(pub, d->kind, d->payload.data, d->payload.len,
					d->signatures[0]->signature.data, &err),
			 0);
	/* every single-bit flip of the payload fails */
	for (size_t i = 0; i < d->payload.len * 8; i++) {
		d->payload.data[i / 8] ^= (uint8_t)(1u << (i % 8));
		assert_int_equal(pol_verify_raw(pub, d->kind, d->payload.data, d->payload.len,
						d->signatures[0]->signature.data, &err),
				 -1);
		d->payload.data[i / 8] ^= (uint8_t)(1u << (i % 8));
	}
	/* the same bytes under another kind (domain separation) fail */
	assert_int_equal(pol_verify_raw(pub, CELLS__V1__SIGNED_KIND__SIGNED_COMMAND,
					d->payload.data, d->payload.len,
					d->signatures[0]->signature.data, &err),
			 -1);
	/* a flipped signature bit fails */
	d->signatures[0]->signature.data[5] ^= 1;
	assert_int_equal(pol_verify_raw(pub, d->kind, d->payload.data, d->payload.len,
					d->signatures[0]->signature.data, &err),
			 -1);
	cells__v1__signed__free_unpacked(d, NULL);
	free(packed);
	pol_signed_clear(&s);
}

static void test_signed_shape(void **state)
{
	cells_err_t err;
	Cells__V1__Signed s = CELLS__V1__SIGNED__INIT;
	s.kind = CELLS__V1__SIGNED_KIND__SIGNED_POLICY;
	assert_int_equal(cells_signed_check(&s, CELLS__V1__SIGNED_KIND__SIGNED_POLICY, &err), -1);
	assert_non_null(strstr(err.msg, "no signature"));
	s.kind = 99;
	assert_int_equal(cells_signed_check(&s, 0, &err), -1);
	assert_non_null(strstr(err.msg, "unknown kind"));
	assert_null(cells_signed_domain(99));
	assert_string_equal(cells_signed_domain(CELLS__V1__SIGNED_KIND__SIGNED_WIPE_RECEIPT),
			    "cells.v1.wipe-receipt");
}

/* Pack e, decode it, expect a refusal with code `code` whose one-line reason names `field`. */
static void expect_refused(Cells__V1__Envelope *e, int code, const char *field)
{
	uint8_t *b;
	size_t n;
	cells_err_t err;
	e->message_id = "m-kind";
	assert_int_equal(cells_envelope_encode(e, &b, &n, &err), 0);
	Cells__V1__Envelope *out = NULL;
	memset(&err, 0, sizeof err);
	int r = cells_envelope_decode(b, n, &out, &err);
	free(b);
	if (r == 0)
		cells__v1__envelope__free_unpacked(out, NULL);
	assert_int_equal(r, -1);
	assert_null(out);
	assert_int_equal(err.code, code);
	if (!strstr(err.msg, field))
		fail_msg("reason '%s' does not name %s", err.msg, field);
	assert_null(strchr(err.msg, '\n'));
}

static void expect_accepted(Cells__V1__Envelope *e)
{
	Cells__V1__Envelope *out = roundtrip(e);
	cells__v1__envelope__free_unpacked(out, NULL);
}

/* Every position that carries a Signed takes only its own kind, at decode (issue 13 item 4:
 * a wrong kind once reached pol_bundle_decode's use-after-free before any signature). */
static void test_wrong_kind_refused_at_decode(void **state)
{
	static uint8_t pl[1] = {0x08};
	const Cells__V1__SignedKind all[] = {
	    CELLS__V1__SIGNED_KIND__SIGNED_POLICY,
	    CELLS__V1__SIGNED_KIND__SIGNED_COMMAND,
	    CELLS__V1__SIGNED_KIND__SIGNED_KEY_DELEGATION,
	    CELLS__V1__SIGNED_KIND__SIGNED_ROOT_ROTATION,
	    CELLS__V1__SIGNED_KIND__SIGNED_WIPE_RECEIPT,
	    CELLS__V1__SIGNED_KIND__SIGNED_AUDIT_CHECKPOINT,
	    CELLS__V1__SIGNED_KIND__SIGNED_COMMAND_RESULT,
	    CELLS__V1__SIGNED_KIND__SIGNED_ENROLL_BINDING,
	    CELLS__V1__SIGNED_KIND__SIGNED_AUDIT_ACK,
	    (Cells__V1__SignedKind)0,
	    (Cells__V1__SignedKind)99,
	};
	enum {
		P_POLICY,
		P_COMMAND,
		P_RECEIPT,
		P_CHECKPOINT,
		P_ACK,
		P_BINDING,
		P_ENROLL_DEL,
		P_TU_ROT,
		P_TU_DEL,
		NPOS
	};
	static const struct {
		Cells__V1__SignedKind want;
		const char *field;
	} pos[NPOS] = {
	    [P_POLICY] = {CELLS__V1__SIGNED_KIND__SIGNED_POLICY, "Envelope.policy"},
	    [P_COMMAND] = {CELLS__V1__SIGNED_KIND__SIGNED_COMMAND, "Envelope.command"},
	    [P_RECEIPT] = {CELLS__V1__SIGNED_KIND__SIGNED_WIPE_RECEIPT, "CommandResult.receipt"},
	    [P_CHECKPOINT] = {CELLS__V1__SIGNED_KIND__SIGNED_AUDIT_CHECKPOINT,
			      "AuditBatch.checkpoint"},
	    [P_ACK] = {CELLS__V1__SIGNED_KIND__SIGNED_AUDIT_ACK, "Ack.audit_ack"},
	    [P_BINDING] = {CELLS__V1__SIGNED_KIND__SIGNED_ENROLL_BINDING,
			   "EnrollRequest.identity_binding"},
	    [P_ENROLL_DEL] = {CELLS__V1__SIGNED_KIND__SIGNED_KEY_DELEGATION,
			      "EnrollResponse.delegations"},
	    [P_TU_ROT] = {CELLS__V1__SIGNED_KIND__SIGNED_ROOT_ROTATION,
			  "TrustUpdate.root_rotations"},
	    [P_TU_DEL] = {CELLS__V1__SIGNED_KIND__SIGNED_KEY_DELEGATION, "TrustUpdate.delegations"},
	};
	for (int p = 0; p < NPOS; p++) {
		for (size_t k = 0; k < CELLS_ARRAY_SIZE(all); k++) {
			Cells__V1__Signed s, good;
			shaped(&s, all[k], pl, sizeof pl);
			shaped(&good, pos[p].want, pl, sizeof pl);
			Cells__V1__Signed *list[2] = {&good, &s}; /* the bad one second */
			Cells__V1__Envelope e = CELLS__V1__ENVELOPE__INIT;
			Cells__V1__CommandResult cr = CELLS__V1__COMMAND_RESULT__INIT;
			Cells__V1__AuditBatch ab = CELLS__V1__AUDIT_BATCH__INIT;
			Cells__V1__Ack ack = CELLS__V1__ACK__INIT;
			Cells__V1__EnrollRequest er = CELLS__V1__ENROLL_REQUEST__INIT;
			Cells__V1__EnrollResponse ers = CELLS__V1__ENROLL_RESPONSE__INIT;
			Cells__V1__TrustUpdate tu = CELLS__V1__TRUST_UPDATE__INIT;
			switch (p) {
			case P_POLICY:
				e.body_case = CELLS__V1__ENVELOPE__BODY_POLICY, e.policy = &s;
				break;
			case P_COMMAND:
				e.body_case = CELLS__V1__ENVELOPE__BODY_COMMAND, e.command = &s;
				break;
			case P_RECEIPT:
				cr.receipt = &s;
				e.body_case = CELLS__V1__ENVELOPE__BODY_RESULT, e.result = &cr;
				break;
			case P_CHECKPOINT:
				ab.checkpoint = &s;
				e.body_case = CELLS__V1__ENVELOPE__BODY_AUDIT_BATCH,
				e.audit_batch = &ab;
				break;
			case P_ACK:
				ack.audit_ack = &s;
				e.body_case = CELLS__V1__ENVELOPE__BODY_ACK, e.ack = &ack;
				break;
			case P_BINDING:
				er.identity_binding = &s;
				e.body_case = CELLS__V1__ENVELOPE__BODY_ENROLL_REQUEST;
				e.enroll_request = &er;
				break;
			case P_ENROLL_DEL:
				ers.delegations = list, ers.n_delegations = 2;
				e.body_case = CELLS__V1__ENVELOPE__BODY_ENROLL_RESPONSE;
				e.enroll_response = &ers;
				break;
			case P_TU_ROT:
				tu.root_rotations = list, tu.n_root_rotations = 2;
				e.body_case = CELLS__V1__ENVELOPE__BODY_TRUST_UPDATE;
				e.trust_update = &tu;
				break;
			case P_TU_DEL:
				tu.delegations = list, tu.n_delegations = 2;
				e.body_case = CELLS__V1__ENVELOPE__BODY_TRUST_UPDATE;
				e.trust_update = &tu;
				break;
			}
			if (all[k] == pos[p].want)
				expect_accepted(&e);
			else
				expect_refused(&e, EBADMSG, pos[p].field);
		}
	}
}

/* Each position's payload limit is its kind's (proto/wire.c's table), checked at decode. */
static void test_kind_size_limits_at_decode(void **state)
{
	size_t big = CELLS_MAX_POLICY + 1;
	uint8_t *pl = calloc(1, big);
	assert_non_null(pl);
	Cells__V1__Signed s;
	Cells__V1__Envelope e = CELLS__V1__ENVELOPE__INIT;
	/* a command payload one byte over its limit (well under the policy limit) */
	shaped(&s, CELLS__V1__SIGNED_KIND__SIGNED_COMMAND, pl, CELLS_MAX_COMMAND + 1);
	e.body_case = CELLS__V1__ENVELOPE__BODY_COMMAND, e.command = &s;
	expect_refused(&e, EMSGSIZE, "Envelope.command");
	s.payload.len = CELLS_MAX_COMMAND;
	expect_accepted(&e);
	/* a policy one byte over */
	shaped(&s, CELLS__V1__SIGNED_KIND__SIGNED_POLICY, pl, CELLS_MAX_POLICY + 1);
	e.body_case = CELLS__V1__ENVELOPE__BODY_POLICY, e.policy = &s;
	expect_refused(&e, EMSGSIZE, "Envelope.policy");
	/* receipt, checkpoint, audit ack, binding */
	Cells__V1__CommandResult cr = CELLS__V1__COMMAND_RESULT__INIT;
	shaped(&s, CELLS__V1__SIGNED_KIND__SIGNED_WIPE_RECEIPT, pl, CELLS_MAX_RECEIPT + 1);
	cr.receipt = &s;
	e.body_case = CELLS__V1__ENVELOPE__BODY_RESULT, e.result = &cr;
	expect_refused(&e, EMSGSIZE, "CommandResult.receipt");
	Cells__V1__AuditBatch ab = CELLS__V1__AUDIT_BATCH__INIT;
	shaped(&s, CELLS__V1__SIGNED_KIND__SIGNED_AUDIT_CHECKPOINT, pl, CELLS_MAX_CHECKPOINT + 1);
	ab.checkpoint = &s;
	e.body_case = CELLS__V1__ENVELOPE__BODY_AUDIT_BATCH, e.audit_batch = &ab;
	expect_refused(&e, EMSGSIZE, "AuditBatch.checkpoint");
	Cells__V1__Ack ack = CELLS__V1__ACK__INIT;
	shaped(&s, CELLS__V1__SIGNED_KIND__SIGNED_AUDIT_ACK, pl, CELLS_MAX_AUDIT_ACK + 1);
	ack.audit_ack = &s;
	e.body_case = CELLS__V1__ENVELOPE__BODY_ACK, e.ack = &ack;
	expect_refused(&e, EMSGSIZE, "Ack.audit_ack");
	Cells__V1__EnrollRequest er = CELLS__V1__ENROLL_REQUEST__INIT;
	shaped(&s, CELLS__V1__SIGNED_KIND__SIGNED_ENROLL_BINDING, pl, CELLS_MAX_ENROLL_BINDING + 1);
	er.identity_binding = &s;
	e.body_case = CELLS__V1__ENVELOPE__BODY_ENROLL_REQUEST, e.enroll_request = &er;
	expect_refused(&e, EMSGSIZE, "EnrollRequest.identity_binding");
	/* a delegation list over CELLS_MAX_SIGNED_LIST, and a Signed with no signature */
	Cells__V1__Signed d;
	shaped(&d, CELLS__V1__SIGNED_KIND__SIGNED_KEY_DELEGATION, pl, 1);
	Cells__V1__Signed *many[CELLS_MAX_SIGNED_LIST + 1];
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(many); i++)
		many[i] = &d;
	Cells__V1__TrustUpdate tu = CELLS__V1__TRUST_UPDATE__INIT;
	tu.delegations = many, tu.n_delegations = CELLS_ARRAY_SIZE(many);
	e.body_case = CELLS__V1__ENVELOPE__BODY_TRUST_UPDATE, e.trust_update = &tu;
	expect_refused(&e, EBADMSG, "TrustUpdate.delegations");
	tu.n_delegations = CELLS_MAX_SIGNED_LIST;
	expect_accepted(&e);
	shaped(&s, CELLS__V1__SIGNED_KIND__SIGNED_POLICY, pl, 1);
	s.n_signatures = 0;
	e.body_case = CELLS__V1__ENVELOPE__BODY_POLICY, e.policy = &s;
	expect_refused(&e, EBADMSG, "Envelope.policy");
	free(pl);
}

/* The bundle decoder given a bare Signed of another kind: one line, nothing read after
 * it is freed (ASan would stop here: the use-after-free of issue 13 item 4). */
static void test_bundle_wrong_kind(void **state)
{
	static uint8_t pl[4] = {1, 2, 3, 4};
	const Cells__V1__SignedKind kinds[] = {
	    CELLS__V1__SIGNED_KIND__SIGNED_COMMAND, CELLS__V1__SIGNED_KIND__SIGNED_KEY_DELEGATION,
	    CELLS__V1__SIGNED_KIND__SIGNED_ROOT_ROTATION,
	    CELLS__V1__SIGNED_KIND__SIGNED_WIPE_RECEIPT, CELLS__V1__SIGNED_KIND__SIGNED_AUDIT_ACK};
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(kinds); i++) {
		Cells__V1__Signed s;
		shaped(&s, kinds[i], pl, sizeof pl);
		uint8_t *b;
		size_t n;
		cells_err_t err;
		assert_int_equal(pol_signed_pack(&s, &b, &n, &err), 0);
		struct pol_bundle pb;
		memset(&err, 0, sizeof err);
		assert_int_equal(pol_bundle_decode(b, n, &pb, &err), -1);
		free(b);
		assert_int_equal(err.code, EBADMSG);
		if (!strstr(err.msg, cells_signed_domain(kinds[i])) ||
		    !strstr(err.msg, "not a policy"))
			fail_msg("reason '%s'", err.msg);
		assert_null(strchr(err.msg, '\n'));
		assert_null(pb.pb);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_body_roundtrips),
	    cmocka_unit_test(test_payload_messages_roundtrip),
	    cmocka_unit_test(test_oversize_refused_before_unpack),
	    cmocka_unit_test(test_envelope_rules),
	    cmocka_unit_test(test_signature_bitflip),
	    cmocka_unit_test(test_signed_shape),
	    cmocka_unit_test(test_wrong_kind_refused_at_decode),
	    cmocka_unit_test(test_kind_size_limits_at_decode),
	    cmocka_unit_test(test_bundle_wrong_kind),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
