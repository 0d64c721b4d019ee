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
#include <openssl/x509v3.h>

#define CA_LIFETIME_DAYS 3650
#define SERVER_LIFETIME_DAYS 825
#define DEVICE_LIFETIME_DAYS 365
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
	if (mdm_store_open(m->state_dir, &s, err) < 0)
		return -1;
	mdm_store_close(s);
	return 0;
}

int mdm_ca_issue(const struct mdm *m, const uint8_t *csr_der, size_t n, char device_id[33],
		 char serial_hex[33], uint8_t **cert_der, size_t *cert_len, uint8_t **ca_der,
		 size_t *ca_len, cells_err_t *err)
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
	pol_key_id(raw, h);
	cells_hex(h, 16, device_id);
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
	char tok[2 * sizeof b + 1];
	if (RAND_bytes(b, sizeof b) != 1) {
		fprintf(stderr, "cells-mdm: enroll-token: no randomness\n");
		return 1;
	}
	cells_hex(b, sizeof b, tok);
	struct mdm_store *s = NULL;
	int64_t exp = time(NULL) + ttl;
	if (mdm_store_open(m->state_dir, &s, &err) < 0 ||
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
