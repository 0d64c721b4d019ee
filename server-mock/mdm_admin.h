/* mdm_admin.h - admins and their roles, the admin HTTPS+JSON API and web console
 * (docs/openapi.yaml), and the hash-chained admin audit log.
 *
 * An admin is a client certificate issued by the MDM's CA (`cells-mdm admin add NAME
 * --role ROLE`): CN = NAME, OU = ROLE, EKU clientAuth, P-256 key. The certificate's
 * serial and role are recorded in the database (table admins); every request looks the
 * serial up again, so a revocation (`cells-mdm admin revoke NAME`) holds from the next
 * request on, and a certificate whose OU disagrees with the recorded role is refused.
 *
 * Roles: admin (everything), helpdesk (read, lock/unlock, re-enroll token), auditor
 * (read only). Every call that changes something (and every refused attempt to) is
 * appended to the admin audit log: entry i carries
 *   hash_i = SHA-256("cells.v1.admin-audit" 0x00 || hash_{i-1} || u64be(seq) ||
 *            i64be(at) || for admin, role, action, target, detail, outcome:
 *            u32be(len) || bytes)
 * with hash_0 = 32 zero bytes, so an edited, inserted or removed entry breaks the chain
 * (mdm_admin_audit_verify); STATE_DIR/admin-audit.head ("SEQ HASH") names the newest
 * entry, so removing entries from the end is caught too. */
#ifndef CELLS_MDM_ADMIN_H
#define CELLS_MDM_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>
#include <openssl/x509.h>

#include "err.h"

struct mdm;
struct mdm_cmd;
struct mdm_store;
struct mdm_audit_store;
struct lws_context;

enum mdm_role {
	MDM_ROLE_NONE = 0,
	MDM_ROLE_ADMIN = 1,
	MDM_ROLE_HELPDESK = 2,
	MDM_ROLE_AUDITOR = 4,
};
#define MDM_ROLES_ALL (MDM_ROLE_ADMIN | MDM_ROLE_HELPDESK | MDM_ROLE_AUDITOR)

/* "admin"/"helpdesk"/"auditor" <-> MDM_ROLE_*; NONE / NULL for anything else. */
enum mdm_role mdm_role_parse(const char *s);
const char *mdm_role_name(enum mdm_role r);

/* mdm_admin_store.c: the admin tables (admins, admin_audit) in STATE_DIR/admin.db, and the searches
 * of the uploaded audit records (audit.db). A second backend (PostgreSQL) implements these same
 * functions. */
struct mdm_admin_store;
int mdm_admin_store_open(const char *state_dir, struct mdm_admin_store **out, cells_err_t *err);
void mdm_admin_store_close(struct mdm_admin_store *s);
/* Record an admin certificate (serial hex, lower case). */
int mdm_admin_store_add(struct mdm_admin_store *s, const char *name, enum mdm_role role,
			const char *serial, int64_t now, cells_err_t *err);
/* 1 when name has an active (not revoked) certificate, 0 not, -1 error. */
int mdm_admin_store_active(struct mdm_admin_store *s, const char *name, cells_err_t *err);
/* Revoke every certificate of name: the number revoked (0: none active). */
int mdm_admin_store_revoke(struct mdm_admin_store *s, const char *name, int64_t now,
			   cells_err_t *err);
/* The admin a certificate serial belongs to: 1 active (name, *role filled), 0 unknown or
 * revoked, -1 error. */
int mdm_admin_store_lookup(struct mdm_admin_store *s, const char *serial, char name[64],
			   enum mdm_role *role, cells_err_t *err);
/* [{name, role, serial, created, revoked}] */
int mdm_admin_store_list(struct mdm_admin_store *s, json_object **out, cells_err_t *err);

/* Append one entry to the admin audit log (atomically, chained to the last). */
struct mdm_admin_event {
	const char *admin, *role, *action, *target, *detail, *outcome;
};
int mdm_admin_audit_append(struct mdm_admin_store *s, const struct mdm_admin_event *ev, int64_t now,
			   cells_err_t *err);
/* The log's entries, newest last: [{seq, at, admin, role, action, target, detail, outcome,
 * hash}]; limit 0 = all. */
int mdm_admin_audit_json(struct mdm_admin_store *s, long limit, json_object **out,
			 cells_err_t *err);
/* Verify the chain: 0 when it could read it; *ok, and report {ok, entries, head, problem,
 * bad_seq} (owned). */
int mdm_admin_audit_verify(struct mdm_admin_store *s, bool *ok, json_object **report,
			   cells_err_t *err);
/* Hash of one entry (the chain's rule above). */
void mdm_admin_audit_hash(const uint8_t prev[32], uint64_t seq, int64_t at,
			  const struct mdm_admin_event *ev, uint8_t out[32]);

/* A device's uploaded audit records (audit.db), filtered: all fields may be NULL/0. */
struct mdm_audit_filter {
	const char *vp, *type, *outcome, *grep;
	int64_t since_us, until_us;
	long limit;
};
int mdm_admin_audit_records(const char *state_dir, const char *device,
			    const struct mdm_audit_filter *f, json_object **out, cells_err_t *err);

/* mdm_admin_req.c: the request bodies of the admin API, parsed once into a validated
 * struct (untrusted bytes: size-checked first, a JSON object of known keys only, each of
 * its type; bounded nesting). */
#define MDM_ADMIN_BODY_MAX (64 * 1024)
enum mdm_admin_body {
	MDM_BODY_VP,	 /* {"vp": NAME} (lock, unlock) */
	MDM_BODY_WIPE,	 /* {"vp": NAME, "recreate": bool?} */
	MDM_BODY_POLICY, /* {"policy": {...}} (the policy JSON of `policy example`) */
	MDM_BODY_TOKEN,	 /* {"ttl": 1..2592000?} */
};
struct mdm_admin_req {
	char vp[33];
	bool recreate;
	long ttl;
	char *policy_json; /* owned: the "policy" member re-serialised */
};
int mdm_admin_req_parse(enum mdm_admin_body kind, const char *body, size_t n,
			struct mdm_admin_req *out, cells_err_t *err);
void mdm_admin_req_clear(struct mdm_admin_req *r);

/* mdm_admin_http.c: the admin listener on the serve loop's context: HTTPS on host:port
 * with a mandatory client certificate of our CA. */
struct mdm_admin_srv_opts {
	const char *host; /* numeric IPv4 address */
	int port;
	struct mdm *m;
	struct mdm_store *st;	       /* borrowed: the server's store */
	struct mdm_audit_store *audit; /* borrowed: the server's audit store */
};
int mdm_admin_listen(struct lws_context *ctx, const struct mdm_admin_srv_opts *o, cells_err_t *err);
void mdm_admin_stop(void);

/* mdm_admin_cli.c */
/* The certificate's serial as lower-case hex without leading zeros (the admins key). */
int mdm_admin_cert_serial(X509 *c, char out[80]);
int mdm_cmd_admin_add(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_admin_list(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_admin_revoke(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_admin_audit(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_admin_audit_verify(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);

#endif
