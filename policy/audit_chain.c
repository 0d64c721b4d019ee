/* audit_chain.c - canonical record bytes, record hashes, checkpoint signatures and chain
 * verification (see audit_chain.h and docs/PROTOCOL.md "Audit chain"). */
#include "audit_chain.h"
#include "cleanup.h"
#include "pol_sig.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

static const uint8_t zero_hash[AUDIT_HASH_LEN];

/* SHA-256 with the algorithm fetched once per thread (the one-shot SHA256() fetches it
 * on every call in OpenSSL 3, which dominates the cost of hashing small records). */
static void sha256(const void *p, size_t n, uint8_t out[AUDIT_HASH_LEN])
{
	static __thread EVP_MD *md;
	static __thread EVP_MD_CTX *ctx;
	if (!md) {
		md = EVP_MD_fetch(NULL, "SHA256", NULL);
		ctx = EVP_MD_CTX_new();
	}
	if (md && ctx && EVP_DigestInit_ex(ctx, md, NULL) == 1 &&
	    EVP_DigestUpdate(ctx, p, n) == 1 && EVP_DigestFinal_ex(ctx, out, NULL) == 1)
		return;
	SHA256(p, n, out);
}

void audit_details_hash(const char *details, uint8_t out[AUDIT_HASH_LEN])
{
	if (!details)
		details = "{}";
	sha256(details, strlen(details), out);
}

static int check_field(const char *s, const char *what, uint64_t seq, cells_err_t *err)
{
	if (!s)
		return cells_err_set(err, EBADMSG, "record %" PRIu64 ": %s is missing", seq, what);
	if (strlen(s) > AUDIT_FIELD_MAX)
		return cells_err_set(err, EBADMSG, "record %" PRIu64 ": %s is over %d bytes", seq,
				     what, AUDIT_FIELD_MAX);
	return 0;
}

int audit_rec_check(const struct audit_rec *r, cells_err_t *err)
{
	if (r->seq == 0)
		return cells_err_set(err, EBADMSG, "record with sequence number 0");
	if (check_field(r->vp, "vp", r->seq, err) < 0 ||
	    check_field(r->actor, "actor", r->seq, err) < 0 ||
	    check_field(r->event, "event", r->seq, err) < 0 ||
	    check_field(r->outcome, "outcome", r->seq, err) < 0)
		return -1;
	if (!r->details_withheld && r->details && strlen(r->details) > AUDIT_DETAILS_MAX)
		return cells_err_set(err, EBADMSG, "record %" PRIu64 ": details over %d bytes",
				     r->seq, AUDIT_DETAILS_MAX);
	return 0;
}

static size_t put_str(uint8_t *p, const char *s)
{
	size_t n = strlen(s);
	p[0] = (uint8_t)(n >> 8);
	p[1] = (uint8_t)n;
	memcpy(p + 2, s, n);
	return 2 + n;
}

int audit_canonical(const struct audit_rec *r, uint8_t out[AUDIT_CANONICAL_MAX], cells_err_t *err)
{
	if (audit_rec_check(r, err) < 0)
		return -1;
	size_t o = 0;
	uint64_t t = (uint64_t)r->time_us;
	for (int i = 7; i >= 0; i--)
		out[o++] = (uint8_t)(r->seq >> (8 * i));
	for (int i = 7; i >= 0; i--)
		out[o++] = (uint8_t)(t >> (8 * i));
	o += put_str(out + o, r->vp);
	o += put_str(out + o, r->actor);
	o += put_str(out + o, r->event);
	o += put_str(out + o, r->outcome);
	if (r->details_withheld)
		memcpy(out + o, r->details_hash, AUDIT_HASH_LEN);
	else
		audit_details_hash(r->details, out + o);
	o += AUDIT_HASH_LEN;
	return (int)o;
}

int audit_rec_hash(const struct audit_rec *r, const uint8_t prev[AUDIT_HASH_LEN],
		   uint8_t out[AUDIT_HASH_LEN], cells_err_t *err)
{
	uint8_t buf[sizeof AUDIT_RECORD_DOMAIN + AUDIT_HASH_LEN + AUDIT_CANONICAL_MAX];
	size_t o = sizeof AUDIT_RECORD_DOMAIN; /* includes the 0x00 separator */
	memcpy(buf, AUDIT_RECORD_DOMAIN, o);
	memcpy(buf + o, prev, AUDIT_HASH_LEN);
	o += AUDIT_HASH_LEN;
	int n = audit_canonical(r, buf + o, err);
	if (n < 0)
		return -1;
	sha256(buf, o + (size_t)n, out);
	return 0;
}

void audit_device_id(const uint8_t pub[32], char out[AUDIT_DEVICE_ID_LEN + 1])
{
	uint8_t h[SHA256_DIGEST_LENGTH];
	SHA256(pub, 32, h);
	cells_hex(h, AUDIT_DEVICE_ID_LEN / 2, out);
}

int audit_cp_payload(const struct audit_cp *cp, uint8_t **out, size_t *len, cells_err_t *err)
{
	Cells__V1__AuditCheckpoint c = CELLS__V1__AUDIT_CHECKPOINT__INIT;
	c.device_id = (char *)cp->device_id;
	c.seq = cp->seq;
	c.head_hash.data = (uint8_t *)cp->head_hash;
	c.head_hash.len = AUDIT_HASH_LEN;
	c.time_us = cp->time_us;
	c.pruned_below = cp->pruned_below;
	size_t n = cells__v1__audit_checkpoint__get_packed_size(&c);
	uint8_t *b = malloc(n ? n : 1);
	if (!b)
		return cells_err_sys(err, ENOMEM, "checkpoint");
	cells__v1__audit_checkpoint__pack(&c, b);
	*out = b;
	*len = n;
	return 0;
}

int audit_cp_open(const Cells__V1__Signed *s, const uint8_t pub[32], struct audit_cp *out,
		  cells_err_t *err)
{
	if (cells_signed_check(s, CELLS__V1__SIGNED_KIND__SIGNED_AUDIT_CHECKPOINT, err) < 0)
		return cells_err_prefix(err, "checkpoint");
	uint8_t kid[POL_KEYID_LEN];
	pol_key_id(pub, kid);
	const Cells__V1__Signature *g = NULL;
	for (size_t i = 0; i < s->n_signatures; i++)
		if (!memcmp(s->signatures[i]->key_id.data, kid, POL_KEYID_LEN))
			g = s->signatures[i];
	if (!g)
		return cells_err_set(err, EBADMSG, "checkpoint is not signed by the device key");
	if (pol_verify_raw(pub, s->kind, s->payload.data, s->payload.len, g->signature.data, err) <
	    0)
		return cells_err_prefix(err, "checkpoint");
	Cells__V1__AuditCheckpoint *c =
	    cells__v1__audit_checkpoint__unpack(NULL, s->payload.len, s->payload.data);
	if (!c)
		return cells_err_set(err, EBADMSG, "checkpoint payload is not a valid message");
	int rc = 0;
	char id[AUDIT_DEVICE_ID_LEN + 1];
	audit_device_id(pub, id);
	if (c->head_hash.len != AUDIT_HASH_LEN || c->seq == 0)
		rc = cells_err_set(err, EBADMSG, "checkpoint has a malformed head hash or seq 0");
	else if (strcmp(c->device_id, id))
		rc = cells_err_set(err, EBADMSG, "checkpoint names device %.40s, not %s",
				   c->device_id, id);
	if (rc == 0) {
		memset(out, 0, sizeof *out);
		out->seq = c->seq;
		memcpy(out->head_hash, c->head_hash.data, AUDIT_HASH_LEN);
		out->time_us = c->time_us;
		out->pruned_below = c->pruned_below;
		memcpy(out->device_id, id, sizeof id);
	}
	cells__v1__audit_checkpoint__free_unpacked(c, NULL);
	return rc;
}

void audit_verifier_init(struct audit_verifier *v)
{
	memset(v, 0, sizeof *v);
}

static int chain_break(struct audit_verifier *v, uint64_t seq, cells_err_t *err, const char *fmt,
		       ...) __attribute__((format(printf, 4, 5)));
static int chain_break(struct audit_verifier *v, uint64_t seq, cells_err_t *err, const char *fmt,
		       ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(v->reason, sizeof v->reason, fmt, ap);
	va_end(ap);
	v->broken = true;
	v->bad_seq = seq;
	return cells_err_set(err, EBADMSG, "%s", v->reason);
}

int audit_verifier_record(struct audit_verifier *v, const struct audit_rec *r, cells_err_t *err)
{
	if (v->broken)
		return cells_err_set(err, EBADMSG, "%s", v->reason);
	cells_err_t e2;
	if (audit_rec_check(r, &e2) < 0)
		return chain_break(v, r->seq, err, "%s", e2.msg);
	const uint8_t *prev;
	if (!v->started) {
		if (v->have_anchor) {
			if (r->seq != v->anchor_seq + 1)
				return chain_break(v, v->anchor_seq + 1, err,
						   "record %" PRIu64
						   " is missing: the log starts at %" PRIu64
						   " after the checkpoint at %" PRIu64,
						   v->anchor_seq + 1, r->seq, v->anchor_seq);
			prev = v->anchor_hash;
		} else if (r->seq == 1) {
			prev = zero_hash;
		} else if (v->allow_any_start) {
			prev = r->prev_hash;
		} else {
			return chain_break(v, r->seq, err,
					   "record %" PRIu64
					   ": the log starts here but no signed checkpoint "
					   "covers the records before it (records 1..%" PRIu64
					   " deleted or pruned without a checkpoint)",
					   r->seq, r->seq - 1);
		}
	} else {
		if (r->seq <= v->last_seq)
			return chain_break(v, r->seq, err,
					   "record %" PRIu64 ": out of order after record %" PRIu64
					   " (reordered or duplicated)",
					   r->seq, v->last_seq);
		if (r->seq != v->last_seq + 1)
			return chain_break(v, v->last_seq + 1, err,
					   "record %" PRIu64
					   " is missing (the log jumps from %" PRIu64 " to %" PRIu64
					   ")",
					   v->last_seq + 1, v->last_seq, r->seq);
		prev = v->head;
	}
	if (memcmp(r->prev_hash, prev, AUDIT_HASH_LEN))
		return chain_break(v, r->seq, err,
				   "record %" PRIu64
				   ": does not link to the record before it (its prev_hash"
				   " differs: inserted, reordered, or a predecessor was changed)",
				   r->seq);
	uint8_t h[AUDIT_HASH_LEN];
	if (audit_rec_hash(r, prev, h, &e2) < 0)
		return chain_break(v, r->seq, err, "%s", e2.msg);
	if (memcmp(h, r->hash, AUDIT_HASH_LEN))
		return chain_break(
		    v, r->seq, err,
		    "record %" PRIu64 ": its contents do not match its hash (edited)", r->seq);
	if (!v->started)
		v->first_seq = r->seq;
	v->started = true;
	v->last_seq = r->seq;
	memcpy(v->head, h, AUDIT_HASH_LEN);
	v->records++;
	return 0;
}

int audit_verifier_checkpoint(struct audit_verifier *v, const struct audit_cp *cp, cells_err_t *err)
{
	if (v->broken)
		return cells_err_set(err, EBADMSG, "%s", v->reason);
	v->checkpoints++;
	if (cp->seq > v->max_cp_seq)
		v->max_cp_seq = cp->seq;
	if (!v->started) {
		if (!v->have_anchor || cp->seq > v->anchor_seq) {
			v->have_anchor = true;
			v->anchor_seq = cp->seq;
			memcpy(v->anchor_hash, cp->head_hash, AUDIT_HASH_LEN);
		}
		return 0;
	}
	if (cp->seq == v->last_seq) {
		if (memcmp(cp->head_hash, v->head, AUDIT_HASH_LEN))
			return chain_break(v, cp->seq, err,
					   "record %" PRIu64
					   ": differs from the signed checkpoint at %" PRIu64
					   " (the log was rewritten)",
					   cp->seq, cp->seq);
		return 0;
	}
	if (cp->seq < v->first_seq) {
		if (v->have_anchor && cp->seq == v->anchor_seq &&
		    memcmp(cp->head_hash, v->anchor_hash, AUDIT_HASH_LEN))
			return chain_break(v, cp->seq + 1, err,
					   "record %" PRIu64 ": two signed checkpoints at %" PRIu64
					   " disagree",
					   cp->seq + 1, cp->seq);
		return 0;
	}
	if (cp->seq < v->last_seq)
		return chain_break(v, cp->seq, err,
				   "checkpoint at %" PRIu64 " arrived after record %" PRIu64
				   " (checkpoints must be fed in order)",
				   cp->seq, v->last_seq);
	return 0; /* beyond: checked by finish */
}

int audit_verifier_finish(struct audit_verifier *v, cells_err_t *err)
{
	if (v->broken)
		return cells_err_set(err, EBADMSG, "%s", v->reason);
	uint64_t last = v->started ? v->last_seq : v->have_anchor ? v->anchor_seq : 0;
	if (v->max_cp_seq > last)
		return chain_break(v, last + 1, err,
				   "record %" PRIu64 " is missing: the log ends at %" PRIu64
				   " but a signed checkpoint covers up to %" PRIu64 " (truncated)",
				   last + 1, last, v->max_cp_seq);
	return 0;
}

static int hash_field(ProtobufCBinaryData b, uint8_t out[AUDIT_HASH_LEN], const char *what,
		      uint64_t seq, cells_err_t *err)
{
	if (b.len != AUDIT_HASH_LEN)
		return cells_err_set(err, EBADMSG, "record %" PRIu64 ": %s is not 32 bytes", seq,
				     what);
	memcpy(out, b.data, AUDIT_HASH_LEN);
	return 0;
}

int audit_rec_from_pb(const Cells__V1__AuditRecord *p, struct audit_rec *r, cells_err_t *err)
{
	memset(r, 0, sizeof *r);
	r->seq = p->seq;
	r->time_us = p->time_us;
	r->vp = p->vp;
	r->actor = p->actor;
	r->event = p->event;
	r->outcome = p->outcome;
	r->details = p->details;
	r->details_withheld = p->details_withheld;
	if (hash_field(p->prev_hash, r->prev_hash, "prev_hash", p->seq, err) < 0 ||
	    hash_field(p->hash, r->hash, "hash", p->seq, err) < 0)
		return -1;
	if (p->details_withheld &&
	    hash_field(p->details_hash, r->details_hash, "details_hash", p->seq, err) < 0)
		return -1;
	return audit_rec_check(r, err);
}

int audit_batch_check(const Cells__V1__AuditBatch *b, cells_err_t *err)
{
	if (b->n_records > CELLS_MAX_AUDIT_BATCH_RECORDS)
		return cells_err_set(err, EMSGSIZE,
				     "audit batch of %zu records is over the limit "
				     "of %d",
				     b->n_records, CELLS_MAX_AUDIT_BATCH_RECORDS);
	if (strlen(b->device_id) > CELLS_MAX_ID_LEN)
		return cells_err_set(err, EBADMSG, "audit batch device id is too long");
	for (size_t i = 0; i < b->n_records; i++) {
		struct audit_rec r;
		if (audit_rec_from_pb(b->records[i], &r, err) < 0)
			return cells_err_prefix(err, "audit batch");
		if (i && b->records[i]->seq != b->records[i - 1]->seq + 1)
			return cells_err_set(err, EBADMSG,
					     "audit batch: records are not consecutive at %" PRIu64,
					     b->records[i]->seq);
	}
	if (b->checkpoint &&
	    cells_signed_check(b->checkpoint, CELLS__V1__SIGNED_KIND__SIGNED_AUDIT_CHECKPOINT,
			       err) < 0)
		return cells_err_prefix(err, "audit batch");
	return 0;
}

int audit_batch_decode(const uint8_t *p, size_t n, Cells__V1__AuditBatch **out, cells_err_t *err)
{
	if (n > CELLS_MAX_ENVELOPE)
		return cells_err_set(err, EMSGSIZE,
				     "audit batch of %zu bytes is over the limit "
				     "of %d",
				     n, CELLS_MAX_ENVELOPE);
	Cells__V1__AuditBatch *b0 = cells__v1__audit_batch__unpack(NULL, n, p);
	if (!b0)
		return cells_err_set(err, EBADMSG, "audit batch is not a valid protobuf message");
	cleanup_audit_batch Cells__V1__AuditBatch *b = b0;
	if (audit_batch_check(b, err) < 0)
		return -1;
	*out = steal_pointer(&b);
	return 0;
}

int audit_verifier_batch(struct audit_verifier *v, const Cells__V1__AuditBatch *b,
			 const uint8_t pub[32], cells_err_t *err)
{
	char id[AUDIT_DEVICE_ID_LEN + 1];
	audit_device_id(pub, id);
	if (strcmp(b->device_id, id))
		return cells_err_set(err, EBADMSG, "audit batch names device %.40s, not %s",
				     b->device_id, id);
	for (size_t i = 0; i < b->n_records; i++) {
		struct audit_rec r;
		if (audit_rec_from_pb(b->records[i], &r, err) < 0)
			return chain_break(v, b->records[i]->seq, err, "%s",
					   err ? err->msg : "bad record");
		if (audit_verifier_record(v, &r, err) < 0)
			return -1;
	}
	if (b->checkpoint) {
		struct audit_cp cp;
		cells_err_t e2;
		if (audit_cp_open(b->checkpoint, pub, &cp, &e2) < 0)
			return chain_break(v, v->started ? v->last_seq : 0, err, "%s", e2.msg);
		if (audit_verifier_checkpoint(v, &cp, err) < 0)
			return -1;
	}
	return 0;
}

int audit_bundle_header(const uint8_t *p, size_t n, uint8_t pub[32], cells_err_t *err)
{
	if (n < AUDIT_BUNDLE_HEADER_LEN || memcmp(p, AUDIT_BUNDLE_MAGIC, AUDIT_BUNDLE_MAGIC_LEN))
		return cells_err_set(err, EBADMSG, "not a Cells audit export (bad header)");
	memcpy(pub, p + AUDIT_BUNDLE_MAGIC_LEN, 32);
	return 0;
}

int audit_bundle_verify_mem(const uint8_t *p, size_t n, struct audit_verifier *v, uint8_t pub[32],
			    cells_err_t *err)
{
	audit_verifier_init(v);
	if (audit_bundle_header(p, n, pub, err) < 0)
		return -1;
	size_t o = AUDIT_BUNDLE_HEADER_LEN;
	while (o < n) {
		if (n - o < 4)
			return cells_err_set(err, EBADMSG, "audit export: truncated frame header");
		size_t len =
		    (size_t)p[o] << 24 | (size_t)p[o + 1] << 16 | (size_t)p[o + 2] << 8 | p[o + 3];
		o += 4;
		if (len > CELLS_MAX_ENVELOPE)
			return cells_err_set(err, EMSGSIZE,
					     "audit export: frame of %zu bytes is "
					     "over the limit",
					     len);
		if (len > n - o)
			return cells_err_set(err, EBADMSG, "audit export: truncated frame");
		cleanup_audit_batch Cells__V1__AuditBatch *b = NULL;
		if (audit_batch_decode(p + o, len, &b, err) < 0)
			return cells_err_prefix(err, "audit export");
		o += len;
		if (audit_verifier_batch(v, b, pub, err) < 0)
			return -1;
	}
	return audit_verifier_finish(v, err);
}
