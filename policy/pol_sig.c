#include "pol_sig.h"
#include "cleanup.h"
#include "cleanup_ssl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/err.h>

EVP_PKEY *pol_key_generate(cells_err_t *err)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (!k)
		cells_err_ssl(err, "generate Ed25519 key");
	return k;
}

EVP_PKEY *pol_key_from_pem(const uint8_t *pem, size_t len, bool want_private, cells_err_t *err)
{
	cleanup_bio BIO *b = BIO_new_mem_buf(pem, (int)len);
	if (!b) {
		cells_err_ssl(err, "read PEM");
		return NULL;
	}
	EVP_PKEY *k = want_private ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL)
				   : PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
	if (!k) {
		cells_err_ssl(err, "not a PEM %s key", want_private ? "private" : "public");
		return NULL;
	}
	if (EVP_PKEY_get_id(k) != EVP_PKEY_ED25519) {
		EVP_PKEY_free(k);
		cells_err_set(err, EINVAL, "key is not an Ed25519 key");
		return NULL;
	}
	return k;
}

int pol_key_to_pem(EVP_PKEY *key, bool private_part, char **pem, cells_err_t *err)
{
	cleanup_bio BIO *b = BIO_new(BIO_s_mem());
	if (!b)
		return cells_err_ssl(err, "write PEM");
	int ok = private_part ? PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL)
			      : PEM_write_bio_PUBKEY(b, key);
	if (!ok)
		return cells_err_ssl(err, "write PEM");
	char *data;
	long n = BIO_get_mem_data(b, &data);
	char *s = malloc((size_t)n + 1);
	if (!s)
		return cells_err_sys(err, ENOMEM, "write PEM");
	memcpy(s, data, (size_t)n);
	s[n] = 0;
	*pem = s;
	return 0;
}

int pol_key_raw_public(EVP_PKEY *key, uint8_t out[POL_PUBKEY_LEN], cells_err_t *err)
{
	size_t n = POL_PUBKEY_LEN;
	if (EVP_PKEY_get_raw_public_key(key, out, &n) != 1 || n != POL_PUBKEY_LEN)
		return cells_err_ssl(err, "raw public key");
	return 0;
}

bool pol_key_has_small_order(const uint8_t pub[POL_PUBKEY_LEN])
{
	static const uint8_t blocklist[7][POL_PUBKEY_LEN] = {
	    /* 0 (order 4) */
	    {0},
	    /* 1 (order 1) */
	    {0x01},
	    /* order 8 */
	    {0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4,
	     0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6,
	     0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05},
	    /* order 8 */
	    {0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b,
	     0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39,
	     0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a},
	    /* p - 1 (order 2) */
	    {0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
	    /* p (= 0, non-canonical) */
	    {0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
	    /* p + 1 (= 1, non-canonical) */
	    {0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
	};
	for (size_t j = 0; j < 7; j++) {
		uint8_t c = 0;
		for (size_t i = 0; i < 31; i++)
			c |= pub[i] ^ blocklist[j][i];
		c |= (pub[31] & 0x7f) ^ blocklist[j][31]; /* either sign of x */
		if (c == 0)
			return true;
	}
	return false;
}

EVP_PKEY *pol_key_from_raw_public(const uint8_t *raw, size_t len, cells_err_t *err)
{
	if (len != POL_PUBKEY_LEN) {
		cells_err_set(err, EINVAL, "public key is %zu bytes, not %d", len, POL_PUBKEY_LEN);
		return NULL;
	}
	if (pol_key_has_small_order(raw)) {
		cells_err_set(err, EKEYREJECTED, "public key is a small-order point (refused)");
		return NULL;
	}
	EVP_PKEY *k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, len);
	if (!k)
		cells_err_ssl(err, "Ed25519 public key");
	return k;
}

void pol_key_id(const uint8_t pub[POL_PUBKEY_LEN], uint8_t out[POL_KEYID_LEN])
{
	SHA256(pub, POL_PUBKEY_LEN, out);
}

int pol_sign(Cells__V1__Signed *s, Cells__V1__SignedKind kind, const uint8_t *payload, size_t len,
	     EVP_PKEY *key, cells_err_t *err)
{
	cleanup_free uint8_t *msg = NULL;
	size_t mlen;
	if (cells_signed_message(kind, payload, len, &msg, &mlen, err) < 0)
		return -1;
	uint8_t pub[POL_PUBKEY_LEN];
	if (pol_key_raw_public(key, pub, err) < 0)
		return -1;
	cleanup_md_ctx EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t sig[POL_SIG_LEN];
	size_t slen = sizeof sig;
	if (!ctx || EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) != 1 ||
	    EVP_DigestSign(ctx, sig, &slen, msg, mlen) != 1 || slen != POL_SIG_LEN)
		return cells_err_ssl(err, "Ed25519 sign");

	if (s->n_signatures == 0) {
		s->kind = kind;
		s->payload.data = malloc(len ? len : 1);
		if (!s->payload.data)
			return cells_err_sys(err, ENOMEM, "sign");
		memcpy(s->payload.data, payload, len);
		s->payload.len = len;
	} else if (s->kind != kind || s->payload.len != len ||
		   memcmp(s->payload.data, payload, len) != 0) {
		return cells_err_set(err, EINVAL, "co-signature over different bytes");
	}
	Cells__V1__Signature *g = malloc(sizeof *g);
	Cells__V1__Signature **arr = realloc(s->signatures, (s->n_signatures + 1) * sizeof *arr);
	uint8_t *kid = malloc(POL_KEYID_LEN), *sg = malloc(POL_SIG_LEN);
	if (arr)
		s->signatures = arr;
	if (!g || !arr || !kid || !sg) {
		free(g);
		free(kid);
		free(sg);
		return cells_err_sys(err, ENOMEM, "sign");
	}
	cells__v1__signature__init(g);
	pol_key_id(pub, kid);
	memcpy(sg, sig, POL_SIG_LEN);
	g->key_id.data = kid;
	g->key_id.len = POL_KEYID_LEN;
	g->signature.data = sg;
	g->signature.len = POL_SIG_LEN;
	s->signatures[s->n_signatures++] = g;
	return 0;
}

int pol_sign_packed(Cells__V1__SignedKind kind, const uint8_t *payload, size_t len, EVP_PKEY *key,
		    uint8_t **out, size_t *out_len, cells_err_t *err)
{
	Cells__V1__Signed s = CELLS__V1__SIGNED__INIT;
	int r = pol_sign(&s, kind, payload, len, key, err);
	if (r == 0)
		r = pol_signed_pack(&s, out, out_len, err);
	pol_signed_clear(&s);
	return r;
}

void pol_signed_clear(Cells__V1__Signed *s)
{
	for (size_t i = 0; i < s->n_signatures; i++) {
		free(s->signatures[i]->key_id.data);
		free(s->signatures[i]->signature.data);
		free(s->signatures[i]);
	}
	free(s->signatures);
	free(s->payload.data);
	s->signatures = NULL;
	s->n_signatures = 0;
	s->payload.data = NULL;
	s->payload.len = 0;
}

int pol_signed_pack(const Cells__V1__Signed *s, uint8_t **out, size_t *len, cells_err_t *err)
{
	size_t n = cells__v1__signed__get_packed_size(s);
	if (n > CELLS_MAX_SIGNED_BLOB)
		return cells_err_set(err, EMSGSIZE, "signed object of %zu bytes is over the limit",
				     n);
	uint8_t *b = malloc(n ? n : 1);
	if (!b)
		return cells_err_sys(err, ENOMEM, "pack signed object");
	cells__v1__signed__pack(s, b);
	*out = b;
	*len = n;
	return 0;
}

/* A few verification contexts, initialised once per public key and reused (what
 * `openssl speed` does): creating the key from raw bytes and fetching the provider's
 * signature implementation cost more than the verification itself. Per thread. */
#define VERIFY_CACHE 4
static _Thread_local struct verify_slot {
	uint8_t pub[POL_PUBKEY_LEN];
	EVP_PKEY *key;
	EVP_MD_CTX *ctx;
	unsigned long uses;
} verify_cache[VERIFY_CACHE];
static _Thread_local unsigned verify_next;

static void slot_clear(struct verify_slot *v)
{
	EVP_MD_CTX_free(v->ctx);
	EVP_PKEY_free(v->key);
	memset(v, 0, sizeof *v);
}

void pol_verify_cache_clear(void)
{
	for (size_t i = 0; i < VERIFY_CACHE; i++)
		slot_clear(&verify_cache[i]);
}

static __attribute__((destructor)) void verify_cache_fini(void)
{
	pol_verify_cache_clear();
}

static struct verify_slot *verify_slot(const uint8_t pub[POL_PUBKEY_LEN], cells_err_t *err)
{
	for (size_t i = 0; i < VERIFY_CACHE; i++)
		if (verify_cache[i].ctx && !memcmp(verify_cache[i].pub, pub, POL_PUBKEY_LEN))
			return &verify_cache[i];
	struct verify_slot *v = &verify_cache[verify_next++ % VERIFY_CACHE];
	slot_clear(v);
	v->key = pol_key_from_raw_public(pub, POL_PUBKEY_LEN, err);
	if (!v->key)
		return NULL;
	v->ctx = EVP_MD_CTX_new();
	if (!v->ctx || EVP_DigestVerifyInit(v->ctx, NULL, NULL, NULL, v->key) != 1) {
		slot_clear(v);
		cells_err_ssl(err, "Ed25519 verify init");
		return NULL;
	}
	memcpy(v->pub, pub, POL_PUBKEY_LEN);
	return v;
}

int pol_verify_raw(const uint8_t pub[POL_PUBKEY_LEN], Cells__V1__SignedKind kind,
		   const uint8_t *payload, size_t len, const uint8_t sig[POL_SIG_LEN],
		   cells_err_t *err)
{
	cleanup_free uint8_t *msg = NULL;
	size_t mlen;
	if (cells_signed_message(kind, payload, len, &msg, &mlen, err) < 0)
		return -1;
	int r = 0;
	/* a failure on a reused context is retried once on a fresh one, so that a library
	 * that refuses to reuse a one-shot context cannot turn into false rejections */
	for (int attempt = 0; attempt < 2 && r != 1; attempt++) {
		struct verify_slot *v = verify_slot(pub, err);
		if (!v)
			return -1;
		bool fresh = v->uses++ == 0;
		r = EVP_DigestVerify(v->ctx, sig, POL_SIG_LEN, msg, mlen);
		ERR_clear_error();
		if (r != 1)
			slot_clear(v); /* never reuse a context after a failure */
		if (fresh)
			break;
	}
	if (r != 1)
		return cells_err_set(err, EBADMSG, "%s signature does not verify",
				     cells_signed_domain(kind));
	return 0;
}
