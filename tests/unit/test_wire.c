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
#include "pol_sig.h"
#include "wire.h"

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
	Cells__V1__Signed sg = CELLS__V1__SIGNED__INIT;
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
	sg.kind = CELLS__V1__SIGNED_KIND__SIGNED_POLICY;
	struct {
		Cells__V1__Envelope__BodyCase c;
		void *p;
	} bodies[] = {
	    {CELLS__V1__ENVELOPE__BODY_HELLO, &hello},
	    {CELLS__V1__ENVELOPE__BODY_SERVER_HELLO, &sh},
	    {CELLS__V1__ENVELOPE__BODY_ENROLL_REQUEST, &er},
	    {CELLS__V1__ENVELOPE__BODY_ENROLL_RESPONSE, &ers},
	    {CELLS__V1__ENVELOPE__BODY_POLICY, &sg},
	    {CELLS__V1__ENVELOPE__BODY_COMMAND, &sg},
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_body_roundtrips),
	    cmocka_unit_test(test_payload_messages_roundtrip),
	    cmocka_unit_test(test_oversize_refused_before_unpack),
	    cmocka_unit_test(test_envelope_rules),
	    cmocka_unit_test(test_signature_bitflip),
	    cmocka_unit_test(test_signed_shape),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
