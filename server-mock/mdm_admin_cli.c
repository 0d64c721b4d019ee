/* mdm_admin_cli.c - `cells-mdm admin add|list|revoke|audit|audit-verify`: admin client
 * certificates with their roles, and the admin audit log (mdm_admin.h). */
#include "cleanup.h"
#include "cleanup_ssl.h"
#include "mdm.h"
#include "mdm_admin.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>

int mdm_admin_cert_serial(X509 *c, char out[80])
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(c), NULL);
	char *h = bn ? BN_bn2hex(bn) : NULL;
	BN_free(bn);
	if (!h || strlen(h) >= 80) {
		OPENSSL_free(h);
		return -1;
	}
	for (size_t i = 0; h[i]; i++)
		out[i] = (char)(h[i] >= 'A' && h[i] <= 'F' ? h[i] - 'A' + 'a' : h[i]);
	out[strlen(h)] = 0;
	OPENSSL_free(h);
	return 0;
}

static int open_admin_store(struct mdm *m, const char *what, struct mdm_admin_store **s)
{
	cells_err_t err = {0};
	char p[PATH_MAX];
	mdm_path(m, "mdm.db", p);
	if (access(p, F_OK) != 0) {
		fprintf(stderr, "cells-mdm: %s: %s is missing (run 'cells-mdm init' first)\n", what,
			p);
		return -1;
	}
	if (mdm_admin_store_open(m->state_dir, s, &err) < 0) {
		fprintf(stderr, "cells-mdm: %s: %s\n", what, err.msg);
		return -1;
	}
	return 0;
}

static int write_bio(BIO *b, const char *path, mode_t mode, cells_err_t *err)
{
	char *data;
	long n = BIO_get_mem_data(b, &data);
	int r = cells_write_file_atomic(path, data, (size_t)n, mode, err);
	OPENSSL_cleanse(data, (size_t)n);
	return r;
}

/* NAME.pem, NAME.key (0600) and NAME.p12 (0600; password pass, may be "") in dir. */
static int write_admin_files(const char *dir, const char *name, EVP_PKEY *k, X509 *c, X509 *ca,
			     const char *pass, cells_err_t *err)
{
	char p[PATH_MAX];
	cleanup_bio BIO *bc = BIO_new(BIO_s_mem());
	cleanup_bio BIO *bk = BIO_new(BIO_s_mem());
	cleanup_bio BIO *bp = BIO_new(BIO_s_mem());
	if (!bc || !bk || !bp || !PEM_write_bio_X509(bc, c) ||
	    !PEM_write_bio_PrivateKey(bk, k, NULL, NULL, 0, NULL, NULL))
		return cells_err_ssl(err, "PEM");
	STACK_OF(X509) *chain = sk_X509_new_null();
	if (!chain || !sk_X509_push(chain, ca)) {
		sk_X509_free(chain);
		return cells_err_ssl(err, "PKCS#12 chain");
	}
	PKCS12 *p12 = PKCS12_create(pass, name, k, c, chain, 0, 0, 0, 0, 0);
	sk_X509_free(chain);
	if (!p12 || !i2d_PKCS12_bio(bp, p12)) {
		PKCS12_free(p12);
		return cells_err_ssl(err, "PKCS#12");
	}
	PKCS12_free(p12);
	if (cells_mkdir_p(dir, 0700, err) < 0)
		return -1;
	snprintf(p, sizeof p, "%s/%s.key", dir, name);
	if (write_bio(bk, p, 0600, err) < 0)
		return -1;
	snprintf(p, sizeof p, "%s/%s.p12", dir, name);
	if (write_bio(bp, p, 0600, err) < 0)
		return -1;
	snprintf(p, sizeof p, "%s/%s.pem", dir, name);
	return write_bio(bc, p, 0644, err);
}

static void cli_audit(struct mdm_admin_store *s, const char *action, const char *target,
		      const char *detail, const char *outcome)
{
	cells_err_t err = {0};
	struct mdm_admin_event ev = {"(cli)", "operator", action, target, detail, outcome};
	if (mdm_admin_audit_append(s, &ev, time(NULL), &err) < 0)
		fprintf(stderr, "cells-mdm: admin audit: %s\n", err.msg);
}

int mdm_cmd_admin_add(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	cells_err_t err = {0};
	const char *name = NULL, *rolename = NULL, *dir = NULL, *pass = "";
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--role") && i + 1 < argc)
			rolename = argv[++i];
		else if (!strcmp(argv[i], "--out") && i + 1 < argc)
			dir = argv[++i];
		else if (!strcmp(argv[i], "--p12-password-env") && i + 1 < argc) {
			/* the password comes from the environment, never argv (ps shows it) */
			pass = getenv(argv[++i]);
			if (!pass) {
				fprintf(stderr, "cells-mdm: admin add: $%s is not set\n", argv[i]);
				return 2;
			}
		} else if (argv[i][0] != '-' && !name)
			name = argv[i];
		else
			return mdm_usage(cmd);
	}
	if (!name || !rolename)
		return mdm_usage(cmd);
	enum mdm_role role = mdm_role_parse(rolename);
	if (!role) {
		fprintf(stderr, "cells-mdm: admin add: --role takes admin, helpdesk or auditor\n");
		return 2;
	}
	if (cells_valid_name(name, &err) < 0) {
		fprintf(stderr, "cells-mdm: admin add: %s\n", err.msg);
		return 2;
	}
	char outdir[PATH_MAX];
	if (dir)
		snprintf(outdir, sizeof outdir, "%s", dir);
	else
		mdm_path(m, "admins", outdir);
	struct mdm_admin_store *s = NULL;
	if (open_admin_store(m, "admin add", &s) < 0)
		return 1;
	int a = mdm_admin_store_active(s, name, &err);
	if (a != 0) {
		fprintf(stderr, "cells-mdm: admin add: %s\n",
			a < 0 ? err.msg : "an admin of that name exists (revoke it first)");
		mdm_admin_store_close(s);
		return 1;
	}
	cleanup_pkey EVP_PKEY *k = NULL;
	cleanup_x509 X509 *c = NULL;
	cleanup_x509 X509 *ca = NULL;
	char serial[80], ignored[33];
	int rc = 1;
	if (mdm_ca_issue_admin(m, name, mdm_role_name(role), &k, &c, ignored, &err) < 0 ||
	    !(ca = mdm_load_cert(m, "ca.pem", &err)))
		;
	else if (mdm_admin_cert_serial(c, serial) < 0)
		cells_err_set(&err, EINVAL, "certificate serial");
	else if (write_admin_files(outdir, name, k, c, ca, pass, &err) < 0 ||
		 mdm_admin_store_add(s, name, role, serial, time(NULL), &err) < 0)
		;
	else
		rc = 0;
	char detail[160];
	snprintf(detail, sizeof detail, "{\"role\":\"%s\",\"serial\":\"%s\"}", mdm_role_name(role),
		 rc ? "" : serial);
	cli_audit(s, "admin.add", name, detail, rc ? "failed" : "ok");
	mdm_admin_store_close(s);
	if (rc) {
		fprintf(stderr, "cells-mdm: admin add: %s\n", err.msg);
		return 1;
	}
	if (m->json)
		printf("{\"name\":\"%s\",\"role\":\"%s\",\"serial\":\"%s\",\"cert\":\"%s/%s.pem\","
		       "\"key\":\"%s/%s.key\",\"p12\":\"%s/%s.p12\"}\n",
		       name, mdm_role_name(role), serial, outdir, name, outdir, name, outdir, name);
	else
		printf("admin %s (%s): %s/%s.pem, %s/%s.key, %s/%s.p12\n", name,
		       mdm_role_name(role), outdir, name, outdir, name, outdir, name);
	return 0;
}

int mdm_cmd_admin_list(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	cells_err_t err = {0};
	if (argc)
		return mdm_usage(cmd);
	struct mdm_admin_store *s = NULL;
	if (open_admin_store(m, "admin list", &s) < 0)
		return 1;
	json_object *arr = NULL;
	int r = mdm_admin_store_list(s, &arr, &err);
	mdm_admin_store_close(s);
	if (r < 0) {
		fprintf(stderr, "cells-mdm: admin list: %s\n", err.msg);
		return 1;
	}
	if (m->json) {
		printf("%s\n", json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN));
	} else {
		printf("%-20s %-9s %-8s %s\n", "NAME", "ROLE", "STATE", "SERIAL");
		for (size_t i = 0; i < json_object_array_length(arr); i++) {
			json_object *o = json_object_array_get_idx(arr, i), *v;
#define F(k) (json_object_object_get_ex(o, k, &v) ? json_object_get_string(v) : "")
			printf("%-20s %-9s %-8s %s\n", F("name"), F("role"),
			       json_object_object_get_ex(o, "revoked", &v) &&
				       json_object_get_int64(v)
				   ? "revoked"
				   : "active",
			       F("serial"));
#undef F
		}
	}
	json_object_put(arr);
	return 0;
}

int mdm_cmd_admin_revoke(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	cells_err_t err = {0};
	if (argc != 1)
		return mdm_usage(cmd);
	if (cells_valid_name(argv[0], &err) < 0) {
		fprintf(stderr, "cells-mdm: admin revoke: %s\n", err.msg);
		return 2;
	}
	struct mdm_admin_store *s = NULL;
	if (open_admin_store(m, "admin revoke", &s) < 0)
		return 1;
	int n = mdm_admin_store_revoke(s, argv[0], time(NULL), &err);
	if (n > 0)
		cli_audit(s, "admin.revoke", argv[0], "{}", "ok");
	mdm_admin_store_close(s);
	if (n <= 0) {
		fprintf(stderr, "cells-mdm: admin revoke: %s\n",
			n < 0 ? err.msg : "no active admin of that name");
		return 1;
	}
	if (m->json)
		printf("{\"name\":\"%s\",\"revoked\":%d}\n", argv[0], n);
	else
		printf("revoked %s (%d certificate%s)\n", argv[0], n, n == 1 ? "" : "s");
	return 0;
}

int mdm_cmd_admin_audit(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	cells_err_t err = {0};
	if (argc)
		return mdm_usage(cmd);
	struct mdm_admin_store *s = NULL;
	if (open_admin_store(m, "admin audit", &s) < 0)
		return 1;
	json_object *arr = NULL;
	int r = mdm_admin_audit_json(s, 0, &arr, &err);
	mdm_admin_store_close(s);
	if (r < 0) {
		fprintf(stderr, "cells-mdm: admin audit: %s\n", err.msg);
		return 1;
	}
	if (m->json) {
		printf("%s\n", json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN));
	} else {
		for (size_t i = 0; i < json_object_array_length(arr); i++) {
			json_object *o = json_object_array_get_idx(arr, i), *v;
#define F(k) (json_object_object_get_ex(o, k, &v) ? json_object_get_string(v) : "")
			printf("%s %s %s(%s) %s %s %s %s\n", F("seq"), F("at"), F("admin"),
			       F("role"), F("action"), F("target"), F("outcome"), F("detail"));
#undef F
		}
	}
	json_object_put(arr);
	return 0;
}

int mdm_cmd_admin_audit_verify(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	cells_err_t err = {0};
	if (argc)
		return mdm_usage(cmd);
	struct mdm_admin_store *s = NULL;
	if (open_admin_store(m, "admin audit-verify", &s) < 0)
		return 1;
	json_object *rep = NULL;
	bool ok = false;
	int r = mdm_admin_audit_verify(s, &ok, &rep, &err);
	mdm_admin_store_close(s);
	if (r < 0) {
		fprintf(stderr, "cells-mdm: admin audit-verify: %s\n", err.msg);
		return 1;
	}
	json_object *v;
	if (m->json)
		printf("%s\n", json_object_to_json_string_ext(rep, JSON_C_TO_STRING_PLAIN));
	else if (ok)
		printf("admin audit log verifies: %lld entries, head %s\n",
		       (long long)(json_object_object_get_ex(rep, "entries", &v)
				       ? json_object_get_int64(v)
				       : 0),
		       json_object_object_get_ex(rep, "head", &v) ? json_object_get_string(v) : "");
	if (!ok)
		fprintf(stderr, "cells-mdm: admin audit-verify: %s\n",
			json_object_object_get_ex(rep, "problem", &v) ? json_object_get_string(v)
								      : "broken");
	json_object_put(rep);
	return ok ? 0 : 1;
}
