/* mdm.h - cells-mdm, the reference MDM server: shared state and subcommands.
 * Each subcommand lives in mdm_AREA.c and has a row in the table in mdm_main.c. */
#ifndef CELLS_MDM_H
#define CELLS_MDM_H

#include <limits.h>
#include <stdbool.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "err.h"

struct mdm {
	char state_dir[PATH_MAX];
	/* --db / CELLS_MDM_DB: a PostgreSQL conninfo (postgresql://...) for the store and
	 * the audit uploads; "" = sqlite files in the state dir (mdm_db.h) */
	char db[1024];
	bool json;
};

struct mdm_cmd {
	const char *words;
	const char *args;
	const char *summary;
	int (*run)(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
};

int mdm_usage(const struct mdm_cmd *cmd);
/* Write k's private key (PEM, 0600, atomically) as NAME under the state dir. */
int mdm_write_key(const struct mdm *m, const char *name, EVP_PKEY *k, cells_err_t *err);
struct mdm_store;
/* Set m->db (--db): a PostgreSQL conninfo; bad input is a one-line error, -1. */
int mdm_set_db(struct mdm *m, const char *db);
/* Where the store is (mdm_store_open): --db, else the state dir. */
static inline const char *mdm_db_where(const struct mdm *m)
{
	return m->db[0] ? m->db : m->state_dir;
}
/* The store of a command (what: its name in the one-line error on stderr); NULL when
 * it cannot be opened (or `cells-mdm init` was not run). */
struct mdm_store *mdm_open_store(const struct mdm *m, const char *what);
/* The devices a command addresses: every enrolled device for "--all" (none at all is
 * fine: *n is 0), else target when it is enrolled (ENOENT otherwise). *ids holds copies
 * (mdm_store_free_ids). */
int mdm_targets(struct mdm_store *s, const char *target, char ***ids, size_t *n, cells_err_t *err);
/* Paths of the server's key material under the state dir. */
void mdm_path(const struct mdm *m, const char *name, char out[PATH_MAX]);
/* Load a private key file of the state dir ("root.key", "signing.key"). */
EVP_PKEY *mdm_load_key(const struct mdm *m, const char *name, cells_err_t *err);

/* mdm_keys.c */
int mdm_cmd_init(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_export_root(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);

/* mdm_keyring.c: the key lifecycle (docs/PROTOCOL.md "Trust updates"). */
#include <stdint.h>
#include "pol_trust.h"
struct mdm_store;
struct mdm_qentry;
struct mdm_delegate_opts {
	bool new_key;	       /* a fresh signing key (else the current one again) */
	int64_t lifetime;      /* seconds; 0: that of the current delegation */
	uint32_t roles;	       /* bit (1u << KeyRole); 0: those of the current delegation */
	uint64_t revoke_below; /* 0: the new serial (it supersedes every earlier one) */
	const char *why;       /* for keys.log */
};
/* Take the lock of every change of the keys (flock on STATE_DIR/keys.lock; blocks):
 * the fd to close, or -1. The admin commands and serve's renewal hold it. */
int mdm_keys_lock(const struct mdm *m, cells_err_t *err);
/* The current root (trust_root.bin) and delegation (delegation.bin, verified). */
int mdm_keys_current(const struct mdm *m, struct pol_root *root, struct pol_delegation *d,
		     cells_err_t *err);
/* Delegate (the next serial) under the current root; out may be NULL. */
int mdm_keys_delegate(const struct mdm *m, const struct mdm_delegate_opts *o,
		      struct pol_delegation *out, cells_err_t *err);
/* A new root of version + 1 signed by the old and the new root key (rotation-N.bin), the
 * signing key delegated again under it. */
int mdm_keys_rotate_root(const struct mdm *m, struct pol_root *out, struct pol_delegation *del,
			 cells_err_t *err);
/* Revoke delegation serial (a new delegation with revoke_below = serial + 1; a new key
 * when serial is the current one). *already: it was revoked already, nothing done. */
int mdm_keys_revoke(const struct mdm *m, uint64_t serial, struct pol_delegation *out, bool *already,
		    cells_err_t *err);
/* The TrustUpdate of the current state: the last POL_TRUST_MAX_ROTATIONS rotations,
 * oldest first, and the current delegation (*out owned). */
int mdm_keys_update_blob(const struct mdm *m, uint8_t **out, size_t *len, struct pol_root *root_out,
			 struct pol_delegation *del_out, cells_err_t *err);
/* Queue a TrustUpdate blob for device (kind MDM_QK_TRUST; replaces a queued one). e is
 * filled (clear it with mdm_qentry_clear); 1 when an identical live entry existed. */
int mdm_keys_queue(struct mdm_store *s, const char *device, const uint8_t *blob, size_t n,
		   const char *what, struct mdm_qentry *e, cells_err_t *err);
/* Queue the current TrustUpdate for every active device. */
int mdm_keys_push_all(const struct mdm *m, struct mdm_store *s, size_t *count, cells_err_t *err);
/* Renew the signing key when it expires within renew_before seconds of now, and push it
 * (serve). *renewed tells. EINVAL when its lifetime is not longer than renew_before. */
int mdm_keys_renew_due(const struct mdm *m, struct mdm_store *s, int64_t renew_before, int64_t now,
		       bool *renewed, cells_err_t *err);
void mdm_keys_log(const struct mdm *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* mdm_keys.c: cells-mdm keys status|rotate-root|delegate|revoke|renew|push */
int mdm_cmd_keys_status(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_keys_rotate_root(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_keys_delegate(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_keys_revoke(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_keys_renew(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_keys_push(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);

/* sim_cli.c (telephony simulators, sim_modem.h) */
int mdm_cmd_modem_sim(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_call(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_modem_ctl(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_gateway_assign(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
/* mdm_policy.c */
#include "wire.h"
#include <stddef.h>
#include <stdint.h>
/* Sign payload, of kind SIGNED_POLICY or SIGNED_IMAGE_MANIFEST, with signing.key into a
 * PolicyBundle or ImageBundle (*out owned) carrying the current delegation and the root
 * rotations of the trust update (mdm_keys_update_blob). EKEYREJECTED: the signing key's
 * delegation does not hold the kind's role (policy, images). */
int mdm_sign_bundle(const struct mdm *m, Cells__V1__SignedKind kind, const uint8_t *payload,
		    size_t n, uint8_t **out, size_t *len, cells_err_t *err);
/* mdm_sign_bundle of a serialized Policy. */
int mdm_policy_bundle(const struct mdm *m, const uint8_t *payload, size_t n, uint8_t **out,
		      size_t *len, cells_err_t *err);
int mdm_cmd_policy_sign(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_policy_example(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
/* mdm_audit.c */
int mdm_cmd_audit_verify(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_audit_import(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_audit_query(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
/* mdm_ca.c: the TLS CA, server and device certificates, enrollment tokens. */
int mdm_ca_init(struct mdm *m, cells_err_t *err); /* part of init: CA, server cert, DB */
X509 *mdm_load_cert(const struct mdm *m, const char *name, cells_err_t *err);
/* Verify an Ed25519 CSR and issue the device certificate (DER, owned); also the CA. */
int mdm_ca_issue(const struct mdm *m, const uint8_t *csr_der, size_t n, char device_id[33],
		 char serial_hex[33], uint8_t **cert_der, size_t *cert_len, uint8_t **ca_der,
		 size_t *ca_len, cells_err_t *err);
/* The same for an enrollment: the certificate's CN is cn (the device id = hash of the
 * identity key the EnrollBinding proved), its key the CSR's (the TLS key, whose raw
 * form goes to tls_pub when not NULL). cn NULL: CN = hash of the CSR's key. */
int mdm_ca_issue_for(const struct mdm *m, const uint8_t *csr_der, size_t n, const char *cn,
		     char device_id[33], uint8_t tls_pub[32], char serial_hex[33],
		     uint8_t **cert_der, size_t *cert_len, uint8_t **ca_der, size_t *ca_len,
		     cells_err_t *err);
/* The trust-root digest enrollment tokens carry (docs/PROTOCOL.md): SHA-256 of
 * "cells.v1.root-digest" || 0x00 || u32be(threshold) || u32be(n) || key_1 .. key_n over
 * the serialized TrustRoot tr; and that of the server's trust_root.bin in hex. */
#define MDM_ROOT_DIGEST_LEN 32
int mdm_root_digest(const uint8_t *tr, size_t n, uint8_t out[MDM_ROOT_DIGEST_LEN],
		    cells_err_t *err);
int mdm_root_digest_hex(const struct mdm *m, char hex[2 * MDM_ROOT_DIGEST_LEN + 1],
			cells_err_t *err);
/* Verify an EnrollRequest's identity_binding: kind, the signature by the identity key it
 * names, the CSR's hash, its time within an hour of now. identity gets the key. */
#include "wire.h"
int mdm_enroll_binding_verify(const Cells__V1__Signed *b, const uint8_t *csr_der, size_t csr_len,
			      int64_t now, uint8_t identity[32], cells_err_t *err);
/* An admin client certificate from the CA: a new P-256 key, CN = name, OU = role, EKU
 * clientAuth (mdm_admin.h); *key and *cert owned. */
int mdm_ca_issue_admin(const struct mdm *m, const char *name, const char *role, EVP_PKEY **key,
		       X509 **cert, char serial_hex[33], cells_err_t *err);
int mdm_cmd_ca_cert(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_enroll_token(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);

/* mdm_queue.c: admin commands on the device registry and the command queue. */
/* A queue entry for command c to c->device_id: c is stamped (command id "c-" + 24 random
 * hex digits in cid, issued now, MDM_COMMAND_LIFETIME_S, priority prio) and signed with
 * the command key. e is filled (clear it with mdm_qentry_clear); the caller queues it.
 * Shared by the CLI and the admin API. */
/* Sign payload (a packed Policy) once per device ids[0..n): its device_id set to each
 * (a policy naming another device is refused), its issued_at to now when 0; on up to
 * MDM_SIGN_THREADS_MAX threads (as many as there are CPUs), each with its own copy of
 * key (borrowed) and its own signing context. e[i] (zeroed by the caller) gets the
 * entry to queue for ids[i]: blob owned, kind, priority, dedup "policy:VERSION". On
 * error every e[i] is cleared. Shared by `policy push` and tests/bench/bench_mgmt. */
#define MDM_SIGN_THREADS_MAX 16
int mdm_policy_sign_each(const uint8_t *payload, size_t plen, char *const *ids, size_t n,
			 EVP_PKEY *key, struct mdm_qentry *e, cells_err_t *err);
#define MDM_COMMAND_LIFETIME_S (7 * 24 * 3600)
int mdm_command_entry(const struct mdm *m, Cells__V1__Command *c, int prio, const char *dedup,
		      const char *what, char cid[32], struct mdm_qentry *e, cells_err_t *err);
int mdm_cmd_devices(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_policy_push(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_command_list(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_command_cancel(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_wipe(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_lock(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_unlock(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_voip_assign(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_voip_revoke(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_audit_request(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);

/* mdm_image.c: signed VP images (docs/IMAGES.md). */
int mdm_cmd_image_build(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_image_sign(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_image_push(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_image_list(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
/* The pushed images and the state of their offer per device (`image list --json`, GET
 * /api/v1/images): [{name, version, sha256, size, fs_type, created, expires_at, path,
 * pushed_at, devices: [{device_id, state, reason, queue_id, done_at}]}]; *out owned. */
#include <json-c/json.h>
int mdm_images_json(struct mdm_store *s, json_object **out, cells_err_t *err);
/* GET /v1/images/<sha256> on the serve listener. From LWS_CALLBACK_HTTP: uri the path,
 * device the enrolled device of the verified client certificate or NULL (why: the
 * reason). The answer (the image, a Range of it, or an error) is written from
 * mdm_image_http_writeable; *dl is the connection's state (owned; freed when the
 * answer is complete, or by mdm_image_http_free when the connection closes). <0: close. */
struct lws;
/* The parsers of a download request (untrusted; tests/fuzz/fuzz_image_request.c): the
 * SHA-256 of "/v1/images/<64 lowercase hex>" (its hex part, NULL: not such a path), and
 * a Range header "bytes=N-", "bytes=N-M" or "bytes=-N" of a file of size -> [*from, *to)
 * (0 ok, 1 not satisfiable, -1 not understood: the whole file, RFC 9110). */
const char *mdm_image_uri_sha(const char *uri, uint8_t sha[32]);
int mdm_image_range(const char *h, uint64_t size, uint64_t *from, uint64_t *to);
struct mdm_image_dl;
int mdm_image_http(struct lws *wsi, struct mdm_store *st, const char *uri, const char *device,
		   const char *why, struct mdm_image_dl **dl);
int mdm_image_http_writeable(struct lws *wsi, struct mdm_image_dl **dl);
void mdm_image_http_free(struct mdm_image_dl **dl);

/* mdm_serve.c: the websocket server. */
int mdm_cmd_serve(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);

/* mdm_wipe.c: verify a device's signed WipeReceipt (*out owned, only on success). */
#include "wire.h"
int mdm_wipe_receipt_verify(const uint8_t *blob, size_t n, const uint8_t devpub[32],
			    Cells__V1__WipeReceipt **out, cells_err_t *err);
int mdm_cmd_receipt_verify(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
/* Verify the receipt a device's CommandResult carries (key: the device certificate's
 * raw Ed25519 key pub; queue_id: the entry it answers, may be "") and store it; a wipe
 * reported done without one is refused. 0 accepted (or none needed), -2 refused with a
 * one-line reason (the refused receipt is kept as unverified), -1 storage error (the
 * result must not be acknowledged). mdm_receipts.c */
struct mdm_store;
int mdm_receipt_check(struct mdm_store *st, const char *device, const uint8_t pub[32],
		      const char *queue_id, const Cells__V1__CommandResult *r, cells_err_t *err);
int mdm_cmd_receipts(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);

#endif
