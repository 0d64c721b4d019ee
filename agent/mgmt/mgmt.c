/* mgmt.c - the management channel, cellsd's side (see mgmt.h). */
#include "mgmt.h"
#include "outbox.h"
#include "offline.h"
#include "audit.h"
#include "audit_mgmt.h"
#include "cleanup.h"
#include "cleanup_sqlite.h"
#include "cleanup_ssl.h"
#include "compliance.h"
#include "ctl_server.h"
#include "device_key.h"
#include "log.h"
#include "mgmt_commands.h"
#include "mgmt_link.h"
#include "policy_engine.h"
#include "netipc.h"
#include "pol_sig.h"
#include "sqldb.h"
#include "util.h"
#include "fg.h"
#include "images.h"
#include "vplock.h"
#include "vpm.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#define ENROLL_TIMEOUT_MS 30000
#define COMPLIANCE_CHECK_MS 10000

static const char *const steps[] = {
    "CREATE TABLE mgmt_enrollment(id INTEGER PRIMARY KEY CHECK(id=1), url TEXT NOT NULL,"
    " ca_pem BLOB NOT NULL, cert_pem BLOB NOT NULL, device_id TEXT NOT NULL,"
    " enrolled_at INTEGER NOT NULL);"
    "CREATE TABLE mgmt_outbox(seq INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT UNIQUE"
    " NOT NULL, envelope BLOB NOT NULL, created INTEGER NOT NULL);"
    "CREATE TABLE mgmt_inbox(message_id TEXT PRIMARY KEY, result_id TEXT NOT NULL,"
    " at INTEGER NOT NULL);"
    "CREATE TABLE mgmt_commands(command_id TEXT PRIMARY KEY, status INTEGER NOT NULL,"
    " reason TEXT NOT NULL, at INTEGER NOT NULL);",
    /* compliance: whether the last policy the MDM sent was refused, and why */
    "CREATE TABLE mgmt_compliance(id INTEGER PRIMARY KEY CHECK(id=1),"
    " policy_refused INTEGER NOT NULL, reason TEXT NOT NULL);"
    "INSERT INTO mgmt_compliance VALUES(1, 0, '');",
};

/* ---- sending ---- */

static void send_hello(struct mgmt *g, bool status)
{
	char id[DEVICE_ID_LEN + 1], mid[40];
	cells_err_t err;
	if (device_key_load(g->d->state_dir, NULL, id, &err) < 0)
		return;
	Cells__V1__Envelope env = CELLS__V1__ENVELOPE__INIT;
	Cells__V1__DeviceHello h = CELLS__V1__DEVICE_HELLO__INIT;
	outbox_msg_id(mid, "h");
	env.message_id = mid;
	h.device_id = id;
	h.agent_version = CELLS_VERSION;
	h.policy_version = policy_installed_version(g->d);
	/* compliance from the real state, with its reasons (compliance.h) */
	struct compliance c;
	char *reasons[COMPLIANCE_MAX_REASONS];
	compliance_compute(g->d, &c);
	for (size_t i = 0; i < c.n; i++)
		reasons[i] = c.reasons[i];
	h.compliance = compliance_code(&c);
	h.compliance_reasons = reasons;
	h.n_compliance_reasons = c.n;
	/* the audit log's head and what the server acknowledged: the server sees a head
	 * that goes backwards (a cut tail) */
	uint64_t head = 0;
	if (audit_head(g->d->audit, &head, NULL, NULL) == 0)
		h.audit_head_seq = head;
	h.audit_uploaded_seq = audit_mgmt_acked_seq(g->d);
	/* the VPs and the signed image each runs: the admin sees which image the work VP
	 * runs (cells-mdm devices) */
	Cells__V1__VpStatus vs[POL_MAX_VPS], *vsp[POL_MAX_VPS];
	json_object *names = vpm_names(g->d);
	const char *fvp = fg_current(g->d);
	size_t nv = json_object_array_length(names);
	for (size_t i = 0; i < nv && i < POL_MAX_VPS; i++) {
		const char *vp = json_object_get_string(json_object_array_get_idx(names, i));
		const char *img = vpm_image_running(g->d, vp);
		cells__v1__vp_status__init(&vs[i]);
		vs[i].name = (char *)vp;
		vs[i].running = img != NULL;
		vs[i].foreground = fvp && !strcmp(fvp, vp);
		vs[i].locked = vplock_is_locked(g->d, vp);
		vs[i].image = (char *)(img ? img : "");
		vsp[i] = &vs[i];
		h.n_vps = i + 1;
	}
	h.vps = vsp;
	if (status) {
		env.body_case = CELLS__V1__ENVELOPE__BODY_STATUS;
		env.status = &h;
	} else {
		env.body_case = CELLS__V1__ENVELOPE__BODY_HELLO;
		env.hello = &h;
	}
	cleanup_free uint8_t *b = NULL;
	size_t n;
	int enc = cells_envelope_encode(&env, &b, &n, &err);
	json_object_put(names);
	if (enc == 0) {
		net_send_raw(g, b, n);
		if (g->state & MGMT_ST_ONLINE) {
			g->reported = c;
			g->reported_version = h.policy_version;
			g->reported_valid = true;
		}
	}
}

void mgmt_report_status(struct cellsd *d)
{
	struct mgmt *g = d->mgmt;
	if (!g || !(g->state & MGMT_ST_ONLINE))
		return;
	struct compliance c;
	compliance_compute(d, &c);
	if (g->reported_valid && compliance_equal(&c, &g->reported) &&
	    g->reported_version == policy_installed_version(d))
		return;
	log_info("mgmt: compliance changed: %s%s", c.n ? "non-compliant: " : "compliant",
		 c.n ? c.reasons[0] : "");
	send_hello(g, true);
}

static void on_compliance_timer(struct loop *l, void *data)
{
	struct mgmt *g = data;
	(void)l;
	mgmt_report_status(g->d);
	g->compliance_timer =
	    loop_add_timer(g->d->loop, COMPLIANCE_CHECK_MS, on_compliance_timer, g);
}

/* The channel's contribution to compliance: the last MDM policy was refused. */
static void compliance_source(struct cellsd *d, struct compliance *c)
{
	if (d->mgmt && d->mgmt->policy_refused)
		compliance_reason_add(c, "policy-refused");
}

static void set_policy_refused(struct mgmt *g, bool refused, const char *reason)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	cells_err_t err;
	g->policy_refused = refused;
	if (sqldb_prepare(g->d->db,
			  "UPDATE mgmt_compliance SET policy_refused=?, reason=? WHERE id=1", &st,
			  &err) == 0) {
		sqlite3_bind_int(st, 1, refused);
		sqlite3_bind_text(st, 2, reason ? reason : "", -1, SQLITE_TRANSIENT);
		if (sqldb_step_done(g->d->db, st, "compliance", &err) == 0)
			return;
	}
	log_warn("mgmt: the policy refusal is not persisted (reported until restart): %s", err.msg);
}

/* ---- inbound ---- */

static void handle_policy(struct mgmt *g, const Cells__V1__Envelope *env)
{
	cells_err_t err = {0};
	cleanup_free uint8_t *blob = NULL;
	size_t n;
	/* the delegations came with the enrollment (or a TrustUpdate): the engine has them.
	 * Nothing of the payload is read here: only the engine parses it, after verifying
	 * it; the version logged is the verified policy's */
	int r = pol_signed_pack(env->policy, &blob, &n, &err);
	if (r == 0)
		r = policy_install(g->d, blob, n, "mdm", &err);
	char cid[40] = "policy:?"; /* a refused policy: its unverified version is not read */
	if (r >= 0) {
		snprintf(cid, sizeof cid, "policy:%llu",
			 (unsigned long long)policy_installed_version(g->d));
		log_info("mgmt: %s %s", cid, r == 1 ? "was already installed" : "installed");
		if (g->policy_refused)
			set_policy_refused(g, false, NULL);
		if (r == 0) /* a newer policy, signed by the MDM: the device reached it */
			offline_contact(g->d);
	} else {
		log_warn("mgmt: a policy from the MDM was refused: %s", err.msg);
		set_policy_refused(g, true, err.msg);
	}
	mgmt_report_status(g->d); /* a status update when the version or compliance changed */
	finish_inbound(g, env->message_id, cid,
		       r >= 0 ? CELLS__V1__RESULT_STATUS__RESULT_DONE
			      : CELLS__V1__RESULT_STATUS__RESULT_REJECTED,
		       r > 0   ? "already installed"
		       : r < 0 ? err.msg
			       : "",
		       NULL, NULL);
}

/* A TrustUpdate (`cells-mdm keys push`): the policy engine walks the rotation chain from
 * the pinned root and takes the delegations, strictly (docs/PROTOCOL.md "Trust updates");
 * signatures are checked before any payload is read. Answered like a command: a
 * CommandResult "trust:vN" done, or rejected with the one-line reason (audited as
 * trust.update refused by the engine). */
static void handle_trust(struct mgmt *g, const Cells__V1__Envelope *env)
{
	cells_err_t err = {0};
	const Cells__V1__TrustUpdate *u = env->trust_update;
	int r = u ? policy_trust_update(g->d, u->root_rotations, u->n_root_rotations,
					u->delegations, u->n_delegations, true, "mdm", &err)
		  : cells_err_set(&err, EBADMSG, "empty trust update");
	char cid[40];
	snprintf(cid, sizeof cid, "trust:%s", env->message_id);
	if (r < 0)
		log_warn("mgmt: a trust update from the MDM was refused: %s", err.msg);
	else
		log_info("mgmt: trust update %s taken", env->message_id);
	finish_inbound(g, env->message_id, cid,
		       r == 0 ? CELLS__V1__RESULT_STATUS__RESULT_DONE
			      : CELLS__V1__RESULT_STATUS__RESULT_REJECTED,
		       r == 0 ? "" : err.msg, NULL, NULL);
}

static void handle_command(struct mgmt *g, const Cells__V1__Envelope *env)
{
	cells_err_t err = {0};
	cleanup_command_pb Cells__V1__Command *c = NULL;
	if (policy_verify_command(g->d, env->command, &c, &err) < 0) {
		json_object *det = json_object_new_object();
		json_object_object_add(det, "reason", json_object_new_string(err.msg));
		cellsd_audit(g->d, "", "mdm", "mgmt.command.rejected", "refused", det, NULL);
		json_object_put(det);
		finish_inbound(g, env->message_id, env->message_id,
			       CELLS__V1__RESULT_STATUS__RESULT_REJECTED, err.msg, NULL, NULL);
		return;
	}
	/* idempotent by command id: a replay is answered with the recorded outcome */
	cleanup_stmt sqlite3_stmt *q = NULL;
	if (sqldb_prepare(g->d->db, "SELECT status, reason FROM mgmt_commands WHERE command_id=?",
			  &q, &err) == 0) {
		sqlite3_bind_text(q, 1, c->command_id, -1, SQLITE_TRANSIENT);
		if (sqlite3_step(q) == SQLITE_ROW) {
			char reason[300];
			snprintf(reason, sizeof reason, "replay: %s",
				 (const char *)sqlite3_column_text(q, 1));
			const struct mgmt_command_handler *rh = mgmt_command_find(c->action_case);
			Cells__V1__CommandResult rr = CELLS__V1__COMMAND_RESULT__INIT;
			cells_err_t rerr;
			if (rh && rh->replay && rh->replay(g->d, c, &rr, &rerr) < 0)
				log_warn("mgmt: replay of %s: %s", c->command_id, rerr.msg);
			finish_inbound(g, env->message_id, c->command_id, sqlite3_column_int(q, 0),
				       reason, NULL, rr.receipt);
			if (rr.receipt)
				cells__v1__signed__free_unpacked(rr.receipt, NULL);
			log_info("mgmt: command %s is a replay: answered again, not run again",
				 c->command_id);
			return;
		}
	}
	const struct mgmt_command_handler *h = mgmt_command_find(c->action_case);
	json_object *det = json_object_new_object();
	json_object_object_add(det, "command_id", json_object_new_string(c->command_id));
	json_object_object_add(det, "action", json_object_new_string(h ? h->name : "unsupported"));
	int a =
	    cellsd_audit(g->d, "", "mdm", "mgmt.command.started", h ? "ok" : "failed", det, &err);
	json_object_put(det);
	if (a < 0) /* fail closed: not run, not recorded, the server sends it again */
		return;
	Cells__V1__CommandResult res = CELLS__V1__COMMAND_RESULT__INIT;
	int r = -1;
	if (!h)
		cells_err_set(&err, ENOTSUP, "not supported by this agent");
	else
		r = h->fn(g->d, c, &res, &err);
	finish_inbound(g, env->message_id, c->command_id,
		       r == 0 ? CELLS__V1__RESULT_STATUS__RESULT_DONE
			      : CELLS__V1__RESULT_STATUS__RESULT_FAILED,
		       r == 0 ? "" : err.msg, c->command_id, res.receipt);
	if (res.receipt)
		cells__v1__signed__free_unpacked(res.receipt, NULL);
	mgmt_report_status(g->d); /* a lock, a wipe: compliance may have changed */
}

static void handle_ack(struct mgmt *g, const Cells__V1__Ack *a)
{
	for (size_t i = 0; i < a->n_message_ids; i++) {
		/* the audit batch in flight leaves the outbox only on a verified audit_ack:
		 * a bare or forged Ack keeps it queued (it is sent again on reconnect) */
		if (audit_mgmt_on_ack(g->d, a->message_ids[i], a->audit_ack) < 0)
			continue;
		cleanup_envelope Cells__V1__Envelope *env = outbox_get(g->d, a->message_ids[i]);
		if (env && env->body_case == CELLS__V1__ENVELOPE__BODY_RESULT)
			mgmt_command_result_acked(g->d, env->result); /* hook: receipts */
		/* not removed: the message is sent again and the MDM acknowledges it by id */
		cells_err_t err;
		if (outbox_drop(g->d, a->message_ids[i], &err) < 0)
			log_warn("mgmt: ack of %s: %s", a->message_ids[i], err.msg);
	}
}

static int enroll_complete(struct mgmt *g, const uint8_t *p, size_t n, json_object *result,
			   cells_err_t *err);

static int on_enroll_result(struct mgmt *g, struct netipc_msg *m)
{
	cells_err_t err = {0};
	struct ctl_call *c = g->enroll_call;
	g->enroll_call = NULL;
	g->state &= ~MGMT_ST_ENROLLING;
	if (g->enroll_timer)
		loop_cancel_timer(g->d->loop, g->enroll_timer);
	g->enroll_timer = 0;
	int rc;
	if (m->enroll_result->status)
		rc = cells_err_set(&err, m->enroll_result->status, "enrollment failed: %s",
				   m->enroll_result->reason);
	else
		rc = enroll_complete(g, m->enroll_result->envelope.data,
				     m->enroll_result->envelope.len, c->result, &err);
	if (rc < 0) {
		audit_net(g, "mgmt.enroll", err.code == EKEYREJECTED ? "refused" : "failed",
			  err.msg);
		if (g->enrolled) {
			/* back to the existing identity's session */
			g->reconfigure = true;
			kill_net(g, "re-enrollment failed");
		}
	}
	ctl_call_finish(c, rc, &err);
	return 0;
}

static int load_enrollment(struct mgmt *g, cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(g->d->db, "SELECT url, ca_pem, cert_pem FROM mgmt_enrollment", &st, err) <
	    0)
		return -1;
	if (sqlite3_step(st) != SQLITE_ROW)
		return 0;
	snprintf(g->url, sizeof g->url, "%s", (const char *)sqlite3_column_text(st, 0));
	free(g->ca_pem);
	free(g->cert_pem);
	g->ca_len = (size_t)sqlite3_column_bytes(st, 1);
	g->cert_len = (size_t)sqlite3_column_bytes(st, 2);
	g->ca_pem = malloc(g->ca_len + 1);
	g->cert_pem = malloc(g->cert_len + 1);
	if (!g->ca_pem || !g->cert_pem)
		return cells_err_sys(err, ENOMEM, "enrollment");
	memcpy(g->ca_pem, sqlite3_column_blob(st, 1), g->ca_len);
	memcpy(g->cert_pem, sqlite3_column_blob(st, 2), g->cert_len);
	g->enrolled = true;
	return 0;
}

/* what the link (mgmt_link.c) calls back for the messages it routes */
static const struct mgmt_ops mgmt_ops = {
    .hello = send_hello,
    .policy = handle_policy,
    .command = handle_command,
    .trust = handle_trust,
    .ack = handle_ack,
    .enroll_result = on_enroll_result,
};

static void on_vps_timer(struct loop *l, void *data)
{
	struct mgmt *g = data;
	(void)l;
	g->vps_timer = 0;
	if (g->state & MGMT_ST_ONLINE)
		send_hello(g, true);
}

/* A VP started, stopped, was created or destroyed: report the VPs (and their images)
 * once things settle. */
static void on_vp_change(struct cellsd *d, const char *vp, void *data)
{
	struct mgmt *g = d->mgmt; /* NULL once mgmt stopped (the VPs stop after it) */
	(void)vp;
	(void)data;
	if (g && !g->vps_timer)
		g->vps_timer = loop_add_timer(d->loop, 200, on_vps_timer, g);
}

int mgmt_init(struct cellsd *d, cells_err_t *err)
{
	struct mgmt *g = calloc(1, sizeof *g);
	if (!g)
		return cells_err_sys(err, ENOMEM, "mgmt");
	g->d = d;
	d->mgmt = g;
	if (mgmt_link_init(g, &mgmt_ops, err) < 0)
		return -1;
	if (sqldb_migrate(d->db, "mgmt", steps, CELLS_ARRAY_SIZE(steps), err) < 0 ||
	    load_enrollment(g, err) < 0)
		return cells_err_prefix(err, "mgmt");
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db, "SELECT policy_refused FROM mgmt_compliance WHERE id=1", &st,
			  err) < 0)
		return cells_err_prefix(err, "mgmt");
	if (sqlite3_step(st) == SQLITE_ROW)
		g->policy_refused = sqlite3_column_int(st, 0) != 0;
	if (compliance_source_add("mgmt", compliance_source) < 0)
		return cells_err_set(err, ENOSPC, "mgmt: compliance sources full");
	g->compliance_timer = loop_add_timer(d->loop, COMPLIANCE_CHECK_MS, on_compliance_timer, g);
	struct vpm_listener vl = {
	    .on_start = on_vp_change, .on_stop = on_vp_change, .on_change = on_vp_change};
	if (vpm_add_listener(d, &vl) < 0)
		return cells_err_set(err, ENOSPC, "mgmt: VP listeners full");
	images_on_imported(d, mgmt_img_imported);
	mgmt_link_start(g);
	return 0;
}

void mgmt_stop(struct cellsd *d)
{
	struct mgmt *g = d->mgmt;
	if (!g)
		return;
	if (g->enroll_timer)
		loop_cancel_timer(d->loop, g->enroll_timer);
	if (g->compliance_timer)
		loop_cancel_timer(d->loop, g->compliance_timer);
	if (g->vps_timer)
		loop_cancel_timer(d->loop, g->vps_timer);
	mgmt_img_stop(g);
	mgmt_link_stop(g);
	EVP_PKEY_free(g->enroll_tls);
	free(g->ca_pem);
	free(g->cert_pem);
	free(g->enroll_ca);
	free(g->enroll_msg);
	free(g);
	d->mgmt = NULL;
}

void mgmt_status_json(struct cellsd *d, json_object *o)
{
	struct mgmt *g = d->mgmt;
	if (!g)
		return;
	json_object_object_add(o, "enrolled", json_object_new_boolean(g->enrolled));
	json_object_object_add(o, "url", json_object_new_string(g->url));
	json_object_object_add(o, "connected", json_object_new_boolean(g->state & MGMT_ST_ONLINE));
	json_object_object_add(o, "last_error", json_object_new_string(g->last_error));
	json_object_object_add(o, "net_pid", json_object_new_int(g->pid));
	json_object_object_add(o, "net_restarts", json_object_new_int((int)g->restarts));
	json_object_object_add(o, "policy_version",
			       json_object_new_int64((int64_t)policy_installed_version(d)));
	int64_t outbox = 0, cmds = 0;
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db,
			  "SELECT (SELECT count(*) FROM mgmt_outbox), (SELECT count(*) FROM "
			  "mgmt_commands)",
			  &st, NULL) == 0 &&
	    sqlite3_step(st) == SQLITE_ROW) {
		outbox = sqlite3_column_int64(st, 0);
		cmds = sqlite3_column_int64(st, 1);
	}
	json_object_object_add(o, "outbox", json_object_new_int64(outbox));
	json_object_object_add(o, "commands_done", json_object_new_int64(cmds));
	json_object_object_add(o, "received", json_object_new_int64((int64_t)g->received));
	json_object_object_add(o, "policy_refused", json_object_new_boolean(g->policy_refused));
	struct compliance c;
	compliance_compute(d, &c);
	compliance_json(&c, o);
	mgmt_link_status_json(g, o);
	audit_mgmt_status_json(d, o);
}

/* ---- enrollment ---- */

static void on_enroll_timeout(struct loop *l, void *data)
{
	struct mgmt *g = data;
	g->enroll_timer = 0;
	if (!g->enroll_call)
		return;
	cells_err_t e;
	cells_err_set(&e, ETIMEDOUT, "enrollment: no answer from the server");
	g->state &= ~MGMT_ST_ENROLLING;
	ctl_call_finish(g->enroll_call, -1, &e);
	g->enroll_call = NULL;
}

static X509 *pem_cert(const uint8_t *p, size_t n)
{
	cleanup_bio BIO *b = BIO_new_mem_buf(p, (int)n);
	return b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
}

int mgmt_enroll_start(struct cellsd *d, struct ctl_call *c, const char *url, const char *token,
		      const uint8_t *ca_pem, size_t ca_len, cells_err_t *err)
{
	struct mgmt *g = d->mgmt;
	if (!g || g->ipc_fd < 0)
		return cells_err_set(err, EAGAIN, "the network process is not running; retry");
	if (g->enroll_call)
		return cells_err_set(err, EBUSY, "an enrollment is already in progress");
	if (g->enrolled && (g->state & MGMT_ST_ONLINE))
		log_info("mgmt: re-enrolling (replaces the device certificate)");
	/* the trust root this device will pin is the one the token's digest names: the
	 * admin handed the token over out of band, cellsd-net cannot change it */
	uint8_t digest[ROOT_DIGEST_LEN];
	if (enroll_token_digest(token, digest, err) < 0)
		return -1;
	cleanup_x509 X509 *ca = pem_cert(ca_pem, ca_len);
	if (!ca)
		return cells_err_set(err, EINVAL, "--ca: not a PEM certificate");
	cleanup_pkey EVP_PKEY *key = NULL;
	char id[DEVICE_ID_LEN + 1];
	if (device_key_load(d->state_dir, &key, id, err) < 0)
		return -1;
	/* the CSR carries a new TLS key (the one cellsd-net will hold), CN = device id; the
	 * identity key signs the binding of that CSR to the identity and stays here */
	cleanup_pkey EVP_PKEY *tls = pol_key_generate(err);
	if (!tls)
		return -1;
	cleanup_x509_req X509_REQ *req = X509_REQ_new();
	if (!req || !X509_REQ_set_pubkey(req, tls) ||
	    !X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_ASC,
					(const unsigned char *)id, -1, -1, 0) ||
	    X509_REQ_sign(req, tls, NULL) <= 0)
		return cells_err_ssl(err, "CSR");
	unsigned char *der = NULL;
	int dl = i2d_X509_REQ(req, &der);
	if (dl <= 0)
		return cells_err_ssl(err, "CSR");
	cleanup_signed Cells__V1__Signed *binding = NULL;
	if (device_enroll_binding(key, der, (size_t)dl, &binding, err) < 0) {
		OPENSSL_free(der);
		return -1;
	}
	Cells__V1__Envelope env = CELLS__V1__ENVELOPE__INIT;
	Cells__V1__EnrollRequest er = CELLS__V1__ENROLL_REQUEST__INIT;
	char mid[40];
	outbox_msg_id(mid, "enroll");
	env.message_id = mid;
	er.token = (char *)token;
	er.csr_der.data = der;
	er.csr_der.len = (size_t)dl;
	er.agent_version = CELLS_VERSION;
	er.identity_binding = binding;
	env.body_case = CELLS__V1__ENVELOPE__BODY_ENROLL_REQUEST;
	env.enroll_request = &er;
	cleanup_free uint8_t *eb = NULL;
	size_t en;
	int r = cells_envelope_encode(&env, &eb, &en, err);
	OPENSSL_free(der);
	if (r < 0)
		return -1;
	Cells__Net__V1__NetEnroll ne = CELLS__NET__V1__NET_ENROLL__INIT;
	ne.url = (char *)url;
	ne.ca_pem.data = (uint8_t *)ca_pem;
	ne.ca_pem.len = ca_len;
	ne.envelope.data = eb;
	ne.envelope.len = en;
	free(g->enroll_ca);
	g->enroll_ca = malloc(ca_len);
	if (!g->enroll_ca)
		return cells_err_sys(err, ENOMEM, "enroll");
	memcpy(g->enroll_ca, ca_pem, ca_len);
	g->enroll_ca_len = ca_len;
	snprintf(g->enroll_url, sizeof g->enroll_url, "%s", url);
	if (g->enrolled) {
		/* the running process holds a session: start a fresh one for the enrollment */
		free(g->enroll_msg);
		g->enroll_msg = NULL;
		if (netipc_encode_pb(NETIPC_ENROLL, &ne.base, &g->enroll_msg, &g->enroll_msg_len,
				     err) < 0)
			return -1;
		g->reconfigure = true;
		kill_net(g, "re-enrollment");
	} else {
		mgmt_link_send_pb(g, NETIPC_ENROLL, &ne.base);
	}
	memcpy(g->enroll_digest, digest, sizeof digest);
	EVP_PKEY_free(g->enroll_tls);
	g->enroll_tls = steal_pointer(&tls);
	g->enroll_call = c;
	g->state |= MGMT_ST_ENROLLING;
	g->enroll_timer = loop_add_timer(d->loop, ENROLL_TIMEOUT_MS, on_enroll_timeout, g);
	c->pending = true;
	return 0;
}

/* Check the server's EnrollResponse and pin what it carries. */
static int enroll_complete(struct mgmt *g, const uint8_t *p, size_t n, json_object *result,
			   cells_err_t *err)
{
	cleanup_envelope Cells__V1__Envelope *env = NULL;
	if (cells_envelope_decode(p, n, &env, err) < 0)
		return cells_err_prefix(err, "enrollment answer");
	if (env->body_case == CELLS__V1__ENVELOPE__BODY_ERROR)
		return cells_err_set(err, EACCES, "the server refused the enrollment: %s",
				     env->error->reason);
	if (env->body_case != CELLS__V1__ENVELOPE__BODY_ENROLL_RESPONSE)
		return cells_err_set(err, EPROTO, "enrollment answer: unexpected body");
	const Cells__V1__EnrollResponse *r = env->enroll_response;
	const unsigned char *q = r->device_cert_der.data;
	cleanup_x509 X509 *cert = d2i_X509(NULL, &q, (long)r->device_cert_der.len);
	q = r->ca_cert_der.data;
	cleanup_x509 X509 *rca = d2i_X509(NULL, &q, (long)r->ca_cert_der.len);
	cleanup_x509 X509 *ca = pem_cert(g->enroll_ca, g->enroll_ca_len);
	if (!cert || !rca || !ca)
		return cells_err_set(err, EBADMSG, "enrollment answer: malformed certificate");
	if (X509_cmp(rca, ca) != 0)
		return cells_err_set(err, EKEYREJECTED,
				     "enrollment answer: the server's CA is not the pinned one");
	char id[DEVICE_ID_LEN + 1], cn[128] = "";
	if (device_key_load(g->d->state_dir, NULL, id, err) < 0)
		return -1;
	X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
	if (!g->enroll_tls || EVP_PKEY_eq(X509_get0_pubkey(cert), g->enroll_tls) != 1 ||
	    strcmp(r->device_id, id) || strcmp(cn, id))
		return cells_err_set(err, EKEYREJECTED,
				     "enrollment answer: the certificate is not for this device");
	cleanup_x509_store X509_STORE *st = X509_STORE_new();
	cleanup_x509_store_ctx X509_STORE_CTX *xs = X509_STORE_CTX_new();
	if (!st || !xs || X509_STORE_add_cert(st, ca) != 1 ||
	    X509_STORE_CTX_init(xs, st, cert, NULL) != 1)
		return cells_err_ssl(err, "verify");
	X509_STORE_CTX_set_purpose(xs, X509_PURPOSE_SSL_CLIENT);
	if (X509_verify_cert(xs) != 1)
		return cells_err_set(err, EKEYREJECTED, "enrollment answer: certificate: %s",
				     X509_verify_cert_error_string(X509_STORE_CTX_get_error(xs)));
	if (!r->trust_root || !r->trust_root->n_root_keys)
		return cells_err_set(err, EBADMSG, "enrollment answer: no trust root");
	/* the root is pinned only when it is the one the token names */
	uint8_t dg[ROOT_DIGEST_LEN];
	if (trust_root_digest(r->trust_root, dg, err) < 0)
		return cells_err_prefix(err, "enrollment answer");
	if (CRYPTO_memcmp(dg, g->enroll_digest, sizeof dg) != 0)
		return cells_err_set(err, EKEYREJECTED,
				     "enrollment answer: the trust root is not the one the token "
				     "names (digest mismatch): nothing pinned");
	cleanup_bio BIO *b = BIO_new(BIO_s_mem());
	char *cpem;
	if (!b || !PEM_write_bio_X509(b, cert))
		return cells_err_ssl(err, "certificate PEM");
	long cl = BIO_get_mem_data(b, &cpem);
	json_object *det = json_object_new_object();
	json_object_object_add(det, "url", json_object_new_string(g->enroll_url));
	int a = cellsd_audit(g->d, "", "cellsd", "mgmt.enrolled", "ok", det, err);
	json_object_put(det);
	if (a < 0)
		return -1;
	if (policy_trust_pin_enrolled(g->d, r->trust_root, r->delegations, r->n_delegations, err) <
	    0)
		return -1;
	/* the TLS key of the new certificate replaces the old one (cellsd-net restarts with
	 * it below) */
	if (device_tls_key_store(g->d->state_dir, g->enroll_tls, err) < 0)
		return -1;
	EVP_PKEY_free(g->enroll_tls);
	g->enroll_tls = NULL;
	if (sqldb_begin(g->d->db, err) < 0)
		return -1;
	cleanup_stmt sqlite3_stmt *ins = NULL;
	if (sqldb_prepare(g->d->db, "INSERT OR REPLACE INTO mgmt_enrollment VALUES(1,?,?,?,?,?)",
			  &ins, err) < 0) {
		sqldb_rollback(g->d->db);
		return -1;
	}
	sqlite3_bind_text(ins, 1, g->enroll_url, -1, SQLITE_TRANSIENT);
	sqlite3_bind_blob(ins, 2, g->enroll_ca, (int)g->enroll_ca_len, SQLITE_TRANSIENT);
	sqlite3_bind_blob(ins, 3, cpem, (int)cl, SQLITE_TRANSIENT);
	sqlite3_bind_text(ins, 4, id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(ins, 5, time(NULL));
	if (sqlite3_step(ins) != SQLITE_DONE) {
		sqldb_err(g->d->db, "enrollment", err);
		sqldb_rollback(g->d->db);
		return -1;
	}
	if (sqldb_commit(g->d->db, err) < 0 || load_enrollment(g, err) < 0)
		return -1;
	json_object_object_add(result, "device_id", json_object_new_string(id));
	json_object_object_add(result, "url", json_object_new_string(g->url));
	/* restart the network process with the new identity */
	g->reconfigure = true;
	kill_net(g, "new enrollment");
	return 0;
}
