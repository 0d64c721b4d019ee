/* mdm_ca.c - the MDM's TLS certificate authority: an ECDSA P-256 CA, the server
 * certificate (SANs localhost and 127.0.0.1, plus any --server-name), device
 * certificates issued from the devices' CSRs at enrollment, and the one-time enrollment
 * tokens. Also creates the database at init. */
#include "cleanup.h"
#include "cleanup_ssl.h"
#include "mdm.h"
#include "mdm_store.h"
#include "pol_sig.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#define CA_LIFETIME_DAYS 3650
#define SERVER_LIFETIME_DAYS 825
#define DEVICE_LIFETIME_DAYS 365
#define ADMIN_LIFETIME_DAYS 365
#define TOKEN_DEFAULT_TTL 3600

static EVP_PKEY *ec_key(cells_err_t *err)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	if (!k)
		cells_err_ssl(err, "generate P-256 key");
	return k;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value, cells_err_t *err)
{
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ex)
		return cells_err_ssl(err, "extension %s", value);
	int r = X509_add_ext(cert, ex, -1);
	X509_EXTENSION_free(ex);
	return r == 1 ? 0 : cells_err_ssl(err, "add extension");
}

static int random_serial(X509 *c, char *hex_out, cells_err_t *err)
{
	uint8_t b[16];
	if (RAND_bytes(b, sizeof b) != 1)
		return cells_err_ssl(err, "random serial");
	b[0] &= 0x7f;
	BIGNUM *bn = BN_bin2bn(b, sizeof b, NULL);
	int ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c));
	BN_free(bn);
	if (hex_out)
		cells_hex(b, sizeof b, hex_out);
	return ok ? 0 : cells_err_ssl(err, "serial");
}

/* A certificate for pub, subject CN=cn, issued by (issuer, ikey) or self-signed. */
static X509 *make_cert(EVP_PKEY *pub, const char *cn, X509 *issuer, EVP_PKEY *ikey, int days,
		       char *serial_hex, cells_err_t *err)
{
	cleanup_x509 X509 *c = X509_new();
	if (!c) {
		cells_err_ssl(err, "X509_new");
		return NULL;
	}
	X509_set_version(c, 2);
	if (random_serial(c, serial_hex, err) < 0)
		return NULL;
	X509_gmtime_adj(X509_getm_notBefore(c), -300);
	X509_gmtime_adj(X509_getm_notAfter(c), (long)days * 24 * 3600);
	X509_set_pubkey(c, pub);
	X509_NAME *n = X509_get_subject_name(c);
	X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"Cells MDM", -1, -1,
				   0);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : n);
	if (add_ext(c, issuer ? issuer : c, NID_subject_key_identifier, "hash", err) < 0)
		return NULL;
	if (issuer && add_ext(c, issuer, NID_authority_key_identifier, "keyid:always", err) < 0)
		return NULL;
	return steal_pointer(&c);
}

static int sign_cert(X509 *c, EVP_PKEY *key, cells_err_t *err)
{
	if (!X509_sign(c, key, EVP_sha256()))
		return cells_err_ssl(err, "sign certificate");
	return 0;
}

static int write_pem_cert(const struct mdm *m, const char *name, X509 *c, cells_err_t *err)
{
	cleanup_bio BIO *b = BIO_new(BIO_s_mem());
	char *data;
	if (!b || !PEM_write_bio_X509(b, c))
		return cells_err_ssl(err, "PEM certificate");
	long n = BIO_get_mem_data(b, &data);
	char p[PATH_MAX];
	mdm_path(m, name, p);
	return cells_write_file_atomic(p, data, (size_t)n, 0644, err);
}

static int write_pem_key(const struct mdm *m, const char *name, EVP_PKEY *k, cells_err_t *err)
{
	cleanup_bio BIO *b = BIO_new(BIO_s_mem());
	char *data;
	if (!b || !PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL))
		return cells_err_ssl(err, "PEM key");
	long n = BIO_get_mem_data(b, &data);
	char p[PATH_MAX];
	mdm_path(m, name, p);
	int r = cells_write_file_atomic(p, data, (size_t)n, 0600, err);
	OPENSSL_cleanse(data, (size_t)n);
	return r;
}

X509 *mdm_load_cert(const struct mdm *m, const char *name, cells_err_t *err)
{
	char p[PATH_MAX];
	mdm_path(m, name, p);
	cleanup_free uint8_t *pem = NULL;
	size_t n;
	if (cells_read_file(p, 65536, &pem, &n, err) < 0)
		return NULL;
	cleanup_bio BIO *b = BIO_new_mem_buf(pem, (int)n);
	X509 *c = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	if (!c)
		cells_err_ssl(err, "%s", p);
	return c;
}

static EVP_PKEY *load_any_key(const struct mdm *m, const char *name, cells_err_t *err)
{
	char p[PATH_MAX];
	mdm_path(m, name, p);
	cleanup_free uint8_t *pem = NULL;
	size_t n;
	if (cells_read_file(p, 65536, &pem, &n, err) < 0)
		return NULL;
	cleanup_bio BIO *b = BIO_new_mem_buf(pem, (int)n);
	EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
	OPENSSL_cleanse(pem, n);
	if (!k)
		cells_err_ssl(err, "%s", p);
	return k;
}

int mdm_ca_init(struct mdm *m, cells_err_t *err)
{
	cleanup_pkey EVP_PKEY *cakey = ec_key(err);
	cleanup_pkey EVP_PKEY *skey = cakey ? ec_key(err) : NULL;
	if (!skey)
		return -1;
	cleanup_x509 X509 *ca =
	    make_cert(cakey, "Cells MDM CA", NULL, NULL, CA_LIFETIME_DAYS, NULL, err);
	if (!ca || add_ext(ca, ca, NID_basic_constraints, "critical,CA:TRUE,pathlen:0", err) < 0 ||
	    add_ext(ca, ca, NID_key_usage, "critical,keyCertSign,cRLSign", err) < 0 ||
	    sign_cert(ca, cakey, err) < 0)
		return cells_err_prefix(err, "CA certificate");
	/* an extra DNS name for the server certificate: $CELLS_MDM_SERVER_NAME */
	const char *name = getenv("CELLS_MDM_SERVER_NAME");
	if (!name || !*name || strlen(name) > 200 ||
	    strspn(name, "abcdefghijklmnopqrstuvwxyz"
			 "0123456789.-") != strlen(name))
		name = "";
	char san[1024];
	snprintf(san, sizeof san, "DNS:localhost,IP:127.0.0.1%s%s", name[0] ? ",DNS:" : "", name);
	cleanup_x509 X509 *srv = make_cert(skey, name[0] ? name : "localhost", ca, cakey,
					   SERVER_LIFETIME_DAYS, NULL, err);
	if (!srv || add_ext(srv, ca, NID_basic_constraints, "critical,CA:FALSE", err) < 0 ||
	    add_ext(srv, ca, NID_key_usage, "critical,digitalSignature", err) < 0 ||
	    add_ext(srv, ca, NID_ext_key_usage, "serverAuth", err) < 0 ||
	    add_ext(srv, ca, NID_subject_alt_name, san, err) < 0 || sign_cert(srv, cakey, err) < 0)
		return cells_err_prefix(err, "server certificate");
	if (write_pem_key(m, "ca.key", cakey, err) < 0 ||
	    write_pem_cert(m, "ca.pem", ca, err) < 0 ||
	    write_pem_key(m, "server.key", skey, err) < 0 ||
	    write_pem_cert(m, "server.pem", srv, err) < 0)
		return -1;
	struct mdm_store *s = NULL;
	if (mdm_store_open(mdm_db_where(m), &s, err) < 0)
		return -1;
	mdm_store_close(s);
	return 0;
}

int mdm_ca_issue(const struct mdm *m, const uint8_t *csr_der, size_t n, char device_id[33],
		 char serial_hex[33], uint8_t **cert_der, size_t *cert_len, uint8_t **ca_der,
		 size_t *ca_len, cells_err_t *err)
{
	return mdm_ca_issue_for(m, csr_der, n, NULL, device_id, NULL, serial_hex, cert_der,
				cert_len, ca_der, ca_len, err);
}

int mdm_ca_issue_for(const struct mdm *m, const uint8_t *csr_der, size_t n, const char *cn,
		     char device_id[33], uint8_t tls_pub[32], char serial_hex[33],
		     uint8_t **cert_der, size_t *cert_len, uint8_t **ca_der, size_t *ca_len,
		     cells_err_t *err)
{
	const unsigned char *p = csr_der;
	cleanup_x509_req X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)n);
	if (!req || p != csr_der + n)
		return cells_err_set(err, EBADMSG, "malformed CSR");
	EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
	if (!pub || EVP_PKEY_id(pub) != EVP_PKEY_ED25519)
		return cells_err_set(err, EBADMSG, "the CSR's key is not Ed25519");
	if (X509_REQ_verify(req, pub) != 1)
		return cells_err_set(err, EKEYREJECTED, "the CSR's signature does not verify");
	uint8_t raw[POL_PUBKEY_LEN], h[POL_KEYID_LEN];
	if (pol_key_raw_public(pub, raw, err) < 0)
		return -1;
	if (cn) {
		snprintf(device_id, 33, "%s", cn);
	} else {
		pol_key_id(raw, h);
		cells_hex(h, 16, device_id);
	}
	if (tls_pub)
		memcpy(tls_pub, raw, POL_PUBKEY_LEN);
	cleanup_pkey EVP_PKEY *cakey = load_any_key(m, "ca.key", err);
	cleanup_x509 X509 *ca = cakey ? mdm_load_cert(m, "ca.pem", err) : NULL;
	if (!ca)
		return -1;
	cleanup_x509 X509 *c =
	    make_cert(pub, device_id, ca, cakey, DEVICE_LIFETIME_DAYS, serial_hex, err);
	if (!c || add_ext(c, ca, NID_basic_constraints, "critical,CA:FALSE", err) < 0 ||
	    add_ext(c, ca, NID_key_usage, "critical,digitalSignature", err) < 0 ||
	    add_ext(c, ca, NID_ext_key_usage, "clientAuth", err) < 0 ||
	    sign_cert(c, cakey, err) < 0)
		return cells_err_prefix(err, "device certificate");
	unsigned char *d1 = NULL, *d2 = NULL;
	int l1 = i2d_X509(c, &d1);
	int l2 = i2d_X509(ca, &d2);
	if (l1 <= 0 || l2 <= 0) {
		OPENSSL_free(d1);
		OPENSSL_free(d2);
		return cells_err_ssl(err, "encode certificate");
	}
	*cert_der = malloc((size_t)l1);
	*ca_der = malloc((size_t)l2);
	if (!*cert_der || !*ca_der) {
		free(*cert_der);
		free(*ca_der);
		OPENSSL_free(d1);
		OPENSSL_free(d2);
		return cells_err_sys(err, ENOMEM, "certificate");
	}
	memcpy(*cert_der, d1, (size_t)l1);
	memcpy(*ca_der, d2, (size_t)l2);
	*cert_len = (size_t)l1;
	*ca_len = (size_t)l2;
	OPENSSL_free(d1);
	OPENSSL_free(d2);
	return 0;
}

int mdm_cmd_ca_cert(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	cells_err_t err = {0};
	if (argc)
		return mdm_usage(cmd);
	char p[PATH_MAX];
	mdm_path(m, "ca.pem", p);
	cleanup_free uint8_t *pem = NULL;
	size_t n;
	if (cells_read_file(p, 65536, &pem, &n, &err) < 0) {
		fprintf(stderr, "cells-mdm: ca-cert: %s\n", err.msg);
		return 1;
	}
	fwrite(pem, 1, n, stdout);
	return 0;
}

int mdm_cmd_enroll_token(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	cells_err_t err = {0};
	long ttl = TOKEN_DEFAULT_TTL;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--ttl") && i + 1 < argc) {
			char *end;
			ttl = strtol(argv[++i], &end, 10);
			if (*end || ttl <= 0 || ttl > 30L * 24 * 3600) {
				fprintf(stderr, "cells-mdm: enroll-token: --ttl takes 1..2592000 "
						"seconds\n");
				return 2;
			}
		} else {
			return mdm_usage(cmd);
		}
	}
	uint8_t b[24];
	char tok[2 * sizeof b + 1 + 2 * MDM_ROOT_DIGEST_LEN + 1], dg[2 * MDM_ROOT_DIGEST_LEN + 1];
	if (RAND_bytes(b, sizeof b) != 1) {
		fprintf(stderr, "cells-mdm: enroll-token: no randomness\n");
		return 1;
	}
	/* SECRET.ROOTDIGEST: the device pins only the root whose digest this is */
	if (mdm_root_digest_hex(m, dg, &err) < 0) {
		fprintf(stderr, "cells-mdm: enroll-token: %s\n", err.msg);
		return 1;
	}
	cells_hex(b, sizeof b, tok);
	tok[2 * sizeof b] = '.';
	memcpy(tok + 2 * sizeof b + 1, dg, sizeof dg);
	struct mdm_store *s = NULL;
	int64_t exp = time(NULL) + ttl;
	if (mdm_store_open(mdm_db_where(m), &s, &err) < 0 ||
	    mdm_store_token_add(s, tok, exp, &err) < 0) {
		mdm_store_close(s);
		fprintf(stderr, "cells-mdm: enroll-token: %s\n", err.msg);
		return 1;
	}
	mdm_store_close(s);
	if (m->json)
		printf("{\"token\":\"%s\",\"expires_at\":%lld}\n", tok, (long long)exp);
	else
		printf("one-time enrollment token, valid for %ld s:\n%s\n", ttl, tok);
	return 0;
}

int mdm_root_digest(const uint8_t *tr, size_t n, uint8_t out[MDM_ROOT_DIGEST_LEN], cells_err_t *err)
{
	cleanup_trust_root_pb Cells__V1__TrustRoot *r = cells__v1__trust_root__unpack(NULL, n, tr);
	if (!r || !r->n_root_keys || r->n_root_keys > 64)
		return cells_err_set(err, EBADMSG, "trust root: malformed or without keys");
	static const char domain[] = "cells.v1.root-digest";
	uint8_t buf[sizeof domain + 8 + 64 * POL_PUBKEY_LEN];
	size_t len = sizeof domain; /* with its NUL */
	memcpy(buf, domain, len);
	uint32_t t = r->threshold, k = (uint32_t)r->n_root_keys;
	for (int i = 0; i < 4; i++) {
		buf[len + (size_t)i] = (uint8_t)(t >> (24 - 8 * i));
		buf[len + 4 + (size_t)i] = (uint8_t)(k >> (24 - 8 * i));
	}
	len += 8;
	for (size_t i = 0; i < r->n_root_keys; i++) {
		if (r->root_keys[i].len != POL_PUBKEY_LEN)
			return cells_err_set(err, EBADMSG, "trust root key %zu is not 32 bytes", i);
		memcpy(buf + len, r->root_keys[i].data, POL_PUBKEY_LEN);
		len += POL_PUBKEY_LEN;
	}
	SHA256(buf, len, out);
	return 0;
}

int mdm_root_digest_hex(const struct mdm *m, char hex[2 * MDM_ROOT_DIGEST_LEN + 1],
			cells_err_t *err)
{
	char p[PATH_MAX];
	mdm_path(m, "trust_root.bin", p);
	cleanup_free uint8_t *tr = NULL;
	size_t n;
	uint8_t d[MDM_ROOT_DIGEST_LEN];
	if (cells_read_file(p, CELLS_MAX_TRUST_ROOT, &tr, &n, err) < 0 ||
	    mdm_root_digest(tr, n, d, err) < 0)
		return -1;
	cells_hex(d, sizeof d, hex);
	return 0;
}

int mdm_enroll_binding_verify(const Cells__V1__Signed *b, const uint8_t *csr_der, size_t csr_len,
			      int64_t now, uint8_t identity[POL_PUBKEY_LEN], cells_err_t *err)
{
	if (!b)
		return cells_err_set(err, EKEYREJECTED, "the request carries no identity binding");
	/* kind and size before anything is parsed; the signature before the fields are
	 * trusted (the key that signs is in the payload: self-certifying, like a CSR; what
	 * it proves is that the holder of the identity key asked for this CSR) */
	if (cells_signed_check(b, CELLS__V1__SIGNED_KIND__SIGNED_ENROLL_BINDING, err) < 0)
		return cells_err_prefix(err, "identity binding");
	Cells__V1__EnrollBinding *u =
	    cells__v1__enroll_binding__unpack(NULL, b->payload.len, b->payload.data);
	if (!u)
		return cells_err_set(err, EBADMSG, "identity binding: not a valid EnrollBinding");
	int r = 0;
	uint8_t h[SHA256_DIGEST_LENGTH];
	SHA256(csr_der, csr_len, h);
	if (u->identity_key.len != POL_PUBKEY_LEN || pol_key_has_small_order(u->identity_key.data))
		r = cells_err_set(err, EKEYREJECTED, "identity binding: bad identity key");
	else if (u->csr_sha256.len != sizeof h || CRYPTO_memcmp(u->csr_sha256.data, h, sizeof h))
		r = cells_err_set(err, EKEYREJECTED, "identity binding: it binds another CSR");
	else if (u->at < now - 3600 || u->at > now + 3600)
		r = cells_err_set(err, EKEYREJECTED, "identity binding: signed at %lld, not now",
				  (long long)u->at);
	else {
		bool ok = false;
		for (size_t i = 0; i < b->n_signatures && !ok; i++) {
			const Cells__V1__Signature *sg = b->signatures[i];
			ok = sg->signature.len == POL_SIG_LEN &&
			     pol_verify_raw(u->identity_key.data, b->kind, b->payload.data,
					    b->payload.len, sg->signature.data, NULL) == 0;
		}
		if (!ok)
			r = cells_err_set(err, EKEYREJECTED,
					  "identity binding: not signed by the identity key");
		else
			memcpy(identity, u->identity_key.data, POL_PUBKEY_LEN);
	}
	cells__v1__enroll_binding__free_unpacked(u, NULL);
	return r;
}

int mdm_ca_issue_admin(const struct mdm *m, const char *name, const char *role, EVP_PKEY **key,
		       X509 **cert, char serial_hex[33], cells_err_t *err)
{
	/* P-256 (what browsers take for client certificates); CN = name, OU = role */
	cleanup_pkey EVP_PKEY *k = ec_key(err);
	cleanup_pkey EVP_PKEY *cakey = k ? load_any_key(m, "ca.key", err) : NULL;
	cleanup_x509 X509 *ca = cakey ? mdm_load_cert(m, "ca.pem", err) : NULL;
	if (!ca)
		return -1;
	cleanup_x509 X509 *c = make_cert(k, name, ca, cakey, ADMIN_LIFETIME_DAYS, serial_hex, err);
	if (!c ||
	    !X509_NAME_add_entry_by_txt(X509_get_subject_name(c), "OU", MBSTRING_ASC,
					(const unsigned char *)role, -1, -1, 0) ||
	    add_ext(c, ca, NID_basic_constraints, "critical,CA:FALSE", err) < 0 ||
	    add_ext(c, ca, NID_key_usage, "critical,digitalSignature", err) < 0 ||
	    add_ext(c, ca, NID_ext_key_usage, "clientAuth", err) < 0 ||
	    sign_cert(c, cakey, err) < 0)
		return cells_err_prefix(err, "admin certificate");
	*key = steal_pointer(&k);
	*cert = steal_pointer(&c);
	return 0;
}
