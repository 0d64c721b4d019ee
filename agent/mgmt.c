/* mgmt.c - the management channel, cellsd's side (see mgmt.h). */
#include "mgmt.h"
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
#include "policy_engine.h"
#include "netipc.h"
#include "pol_sig.h"
#include "statedb.h"
#include "util.h"

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

#define RESTART_MIN_MS 1000
#define RESTART_MAX_MS 60000
#define STABLE_MS 60000
#define ENROLL_TIMEOUT_MS 30000
#define COMPLIANCE_CHECK_MS 10000

/* Channel states an IPC message may be permitted in (bitmask). */
enum {
	MGMT_ST_IDLE = 1u << 0,	     /* net process up, not connected */
	MGMT_ST_ONLINE = 1u << 1,    /* connected to the MDM (mutual TLS) */
	MGMT_ST_ENROLLING = 1u << 2, /* an enrollment is waiting for its answer */
};
#define MGMT_ST_ANY (MGMT_ST_IDLE | MGMT_ST_ONLINE | MGMT_ST_ENROLLING)

struct mgmt {
	struct cellsd *d;
	pid_t pid;
	int pidfd, ipc_fd;
	int64_t started_ms;
	unsigned restarts;
	uint64_t restart_timer;
	bool reconfigure, stopping;
	unsigned state;
	char last_error[256];
	/* enrollment */
	bool enrolled;
	char url[300];
	uint8_t *ca_pem, *cert_pem;
	size_t ca_len, cert_len;
	struct ctl_call *enroll_call;
	uint8_t *enroll_ca;
	size_t enroll_ca_len;
	char enroll_url[300];
	uint64_t enroll_timer;
	uint8_t *enroll_msg; /* a NetEnroll waiting for a fresh network process */
	size_t enroll_msg_len;
	uint8_t *rxbuf;
	uint64_t sent, received;
	/* enrollment: the token's trust-root digest and the new TLS key (pending until the
	 * enrollment completes) */
	uint8_t enroll_digest[ROOT_DIGEST_LEN];
	EVP_PKEY *enroll_tls;
	/* compliance: the last MDM policy was refused (persisted), what was last reported */
	bool policy_refused;
	struct compliance reported;
	uint64_t reported_version;
	bool reported_valid;
	uint64_t compliance_timer;
};

static const char *net_helper;

void mgmt_set_net_helper(const char *path)
{
	net_helper = path;
}

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

static int64_t mono_ms(void)
{
	return cells_mono_ns() / 1000000;
}

static void audit_net(struct mgmt *g, const char *event, const char *outcome, const char *reason)
{
	json_object *det = json_object_new_object();
	if (reason)
		json_object_object_add(det, "reason", json_object_new_string(reason));
	cellsd_audit(g->d, "", "cellsd", event, outcome, det, NULL);
	json_object_put(det);
}

static void new_msg_id(char out[40], const char *prefix)
{
	uint8_t b[12];
	char hex[25];
	RAND_bytes(b, sizeof b);
	cells_hex(b, sizeof b, hex);
	snprintf(out, 40, "%s-%s", prefix, hex);
}

/* ---- sending ---- */

static void net_send_raw(struct mgmt *g, const uint8_t *p, size_t n)
{
	cells_err_t err;
	if (g->ipc_fd < 0 || !(g->state & MGMT_ST_ONLINE))
		return;
	if (netipc_send(g->ipc_fd, NETIPC_SEND, p, n, &err) < 0)
		log_warn("mgmt: %s", err.msg);
	else
		g->sent++;
}

static void send_hello(struct mgmt *g, bool status)
{
	char id[DEVICE_ID_LEN + 1], mid[40];
	cells_err_t err;
	if (device_key_load(g->d->state_dir, NULL, id, &err) < 0)
		return;
	Cells__V1__Envelope env = CELLS__V1__ENVELOPE__INIT;
	Cells__V1__DeviceHello h = CELLS__V1__DEVICE_HELLO__INIT;
	new_msg_id(mid, "h");
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
	if (status) {
		env.body_case = CELLS__V1__ENVELOPE__BODY_STATUS;
		env.status = &h;
	} else {
		env.body_case = CELLS__V1__ENVELOPE__BODY_HELLO;
		env.hello = &h;
	}
	cleanup_free uint8_t *b = NULL;
	size_t n;
	if (cells_envelope_encode(&env, &b, &n, &err) == 0) {
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
	g->policy_refused = refused;
	if (statedb_prepare(g->d->db,
			    "UPDATE mgmt_compliance SET policy_refused=?, reason=? WHERE id=1", &st,
			    NULL) < 0)
		return;
	sqlite3_bind_int(st, 1, refused);
	sqlite3_bind_text(st, 2, reason ? reason : "", -1, SQLITE_TRANSIENT);
	sqlite3_step(st);
}

static void flush_outbox(struct mgmt *g)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (statedb_prepare(g->d->db, "SELECT envelope FROM mgmt_outbox ORDER BY seq", &st, NULL) <
	    0)
		return;
	while (sqlite3_step(st) == SQLITE_ROW)
		net_send_raw(g, sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0));
}

/* Store env in the outbox (inside the caller's transaction when there is one). */
static int outbox_store(struct cellsd *d, const Cells__V1__Envelope *env, char id_out[40],
			uint8_t **bytes, size_t *len, cells_err_t *err)
{
	Cells__V1__Envelope e = *env;
	char mid[40];
	if (!e.message_id || !e.message_id[0]) {
		new_msg_id(mid, "o");
		e.message_id = mid;
	}
	if (!e.correlation_id)
		e.correlation_id = "";
	if (cells_envelope_encode(&e, bytes, len, err) < 0)
		return -1;
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (statedb_prepare(d->db,
			    "INSERT OR IGNORE INTO mgmt_outbox(message_id, envelope, created) "
			    "VALUES(?,?,?)",
			    &st, err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, e.message_id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_blob(st, 2, *bytes, (int)*len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, time(NULL));
	if (sqlite3_step(st) != SQLITE_DONE)
		return statedb_err(d->db, "outbox", err);
	if (id_out)
		snprintf(id_out, 40, "%s", e.message_id);
	return 0;
}

bool mgmt_online(struct cellsd *d)
{
	return d->mgmt && (d->mgmt->state & MGMT_ST_ONLINE);
}

int mgmt_outbox_drop(struct cellsd *d, const char *message_id, cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (statedb_prepare(d->db, "DELETE FROM mgmt_outbox WHERE message_id=?", &st, err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, message_id, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(st) != SQLITE_DONE)
		return statedb_err(d->db, "outbox", err);
	return 0;
}

int mgmt_outbox_put(struct cellsd *d, const Cells__V1__Envelope *env, cells_err_t *err)
{
	cleanup_free uint8_t *b = NULL;
	size_t n;
	if (outbox_store(d, env, NULL, &b, &n, err) < 0)
		return -1;
	if (d->mgmt)
		net_send_raw(d->mgmt, b, n);
	return 0;
}

/* ---- the network process ---- */

static void spawn_net(struct mgmt *g);

static void on_restart_timer(struct loop *l, void *data)
{
	struct mgmt *g = data;
	g->restart_timer = 0;
	spawn_net(g);
}

static void net_gone(struct mgmt *g, const char *why)
{
	if (g->ipc_fd >= 0) {
		loop_del_fd(g->d->loop, g->ipc_fd);
		close(g->ipc_fd);
		g->ipc_fd = -1;
	}
	if (g->pidfd >= 0) {
		syscall(SYS_pidfd_send_signal, g->pidfd, SIGKILL, NULL, 0);
		loop_del_fd(g->d->loop, g->pidfd);
		close(g->pidfd);
		g->pidfd = -1;
	}
	if (g->pid > 0) {
		int status;
		waitpid(g->pid, &status, 0);
		g->pid = 0;
	}
	g->state = MGMT_ST_IDLE | (g->enroll_call && g->enroll_msg ? MGMT_ST_ENROLLING : 0);
	if (g->enroll_call && !g->enroll_msg) {
		cells_err_t e;
		cells_err_set(&e, ECONNABORTED, "the network process exited during enrollment");
		if (g->enroll_timer)
			loop_cancel_timer(g->d->loop, g->enroll_timer);
		g->enroll_timer = 0;
		ctl_call_finish(g->enroll_call, -1, &e);
		g->enroll_call = NULL;
	}
	if (g->stopping)
		return;
	uint64_t delay;
	if (g->reconfigure) {
		g->reconfigure = false;
		delay = 0;
		audit_net(g, "mgmt.net.reconfigured", "ok", why);
	} else {
		if (mono_ms() - g->started_ms > STABLE_MS)
			g->restarts = 0;
		delay = (uint64_t)RESTART_MIN_MS << (g->restarts < 6 ? g->restarts : 6);
		if (delay > RESTART_MAX_MS)
			delay = RESTART_MAX_MS;
		/* jitter: up to +25% */
		uint16_t r = 0;
		RAND_bytes((unsigned char *)&r, sizeof r);
		delay += delay * (r % 26) / 100;
		g->restarts++;
		log_warn("mgmt: network process gone (%s): restart in %llu ms", why,
			 (unsigned long long)delay);
		audit_net(g, "mgmt.net.restarted", "failed", why);
	}
	g->restart_timer = loop_add_timer(g->d->loop, delay, on_restart_timer, g);
}

static void on_pidfd(struct loop *l, int fd, uint32_t events, void *data)
{
	struct mgmt *g = data;
	int status = 0;
	char why[64];
	if (g->pid > 0 && waitpid(g->pid, &status, WNOHANG) == g->pid) {
		g->pid = 0;
		if (WIFSIGNALED(status))
			snprintf(why, sizeof why, "killed by signal %d", WTERMSIG(status));
		else
			snprintf(why, sizeof why, "exited with status %d", WEXITSTATUS(status));
	} else {
		snprintf(why, sizeof why, "exited");
	}
	net_gone(g, why);
}

static void kill_net(struct mgmt *g, const char *why)
{
	log_warn("mgmt: stopping the network process: %s", why);
	if (g->pidfd >= 0)
		syscall(SYS_pidfd_send_signal, g->pidfd, SIGKILL, NULL, 0);
}

static void send_config(struct mgmt *g)
{
	cells_err_t err;
	if (!g->enrolled || g->ipc_fd < 0)
		return;
	Cells__Net__V1__NetConfig c = CELLS__NET__V1__NET_CONFIG__INIT;
	c.url = g->url;
	c.ca_pem.data = g->ca_pem;
	c.ca_pem.len = g->ca_len;
	c.cert_pem.data = g->cert_pem;
	c.cert_pem.len = g->cert_len;
	if (netipc_send_pb(g->ipc_fd, NETIPC_CONFIG, &c.base, &err) < 0)
		log_warn("mgmt: config: %s", err.msg);
}

/* ---- inbound ---- */

static int result_to_outbox(struct mgmt *g, const char *corr, const char *command_id,
			    Cells__V1__ResultStatus status, const char *reason,
			    Cells__V1__Signed *receipt, char rid[40], cells_err_t *err)
{
	Cells__V1__Envelope env = CELLS__V1__ENVELOPE__INIT;
	Cells__V1__CommandResult r = CELLS__V1__COMMAND_RESULT__INIT;
	char mid[40];
	new_msg_id(mid, "r");
	env.message_id = mid;
	env.correlation_id = (char *)corr;
	r.command_id = (char *)command_id;
	r.status = status;
	r.reason = (char *)(reason ? reason : "");
	r.at = time(NULL);
	r.receipt = receipt;
	env.body_case = CELLS__V1__ENVELOPE__BODY_RESULT;
	env.result = &r;
	cleanup_free uint8_t *b = NULL;
	size_t n;
	return outbox_store(g->d, &env, rid, &b, &n, err);
}

static int inbox_record(struct mgmt *g, const char *msg_id, const char *rid, cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (statedb_prepare(g->d->db, "INSERT OR REPLACE INTO mgmt_inbox VALUES(?,?,?)", &st, err) <
	    0)
		return -1;
	sqlite3_bind_text(st, 1, msg_id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, rid, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 3, time(NULL));
	if (sqlite3_step(st) != SQLITE_DONE)
		return statedb_err(g->d->db, "inbox", err);
	return 0;
}

/* 1 when msg_id was handled before: its stored result is sent again (or a fresh "done"
 * when the server had already acknowledged it). A command whose result is gone returns
 * 0: handle_command verifies it again and answers from its command-id record (with what
 * the handler's replay row stored, e.g. a wipe receipt). */
static int inbox_replay(struct mgmt *g, const char *msg_id, bool is_command)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (statedb_prepare(g->d->db,
			    "SELECT o.envelope FROM mgmt_inbox i LEFT JOIN mgmt_outbox o ON "
			    "o.message_id=i.result_id WHERE i.message_id=?",
			    &st, NULL) < 0)
		return 0;
	sqlite3_bind_text(st, 1, msg_id, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(st) != SQLITE_ROW)
		return 0;
	if (sqlite3_column_type(st, 0) == SQLITE_BLOB) {
		net_send_raw(g, sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0));
	} else if (is_command) {
		return 0;
	} else {
		cells_err_t err;
		char rid[40];
		if (result_to_outbox(g, msg_id, msg_id, CELLS__V1__RESULT_STATUS__RESULT_DONE,
				     "replay: already handled", NULL, rid, &err) == 0)
			flush_outbox(g);
	}
	log_info("mgmt: %s is a replay: answered again, not applied again", msg_id);
	return 1;
}

static void finish_inbound(struct mgmt *g, const char *msg_id, const char *command_id,
			   Cells__V1__ResultStatus status, const char *reason,
			   const char *done_command, Cells__V1__Signed *receipt)
{
	cells_err_t err = {0};
	char rid[40];
	if (statedb_begin(g->d->db, &err) < 0)
		goto fail;
	if (result_to_outbox(g, msg_id, command_id, status, reason, receipt, rid, &err) < 0 ||
	    inbox_record(g, msg_id, rid, &err) < 0)
		goto fail_rb;
	if (done_command) {
		cleanup_stmt sqlite3_stmt *st = NULL;
		if (statedb_prepare(g->d->db, "INSERT OR IGNORE INTO mgmt_commands VALUES(?,?,?,?)",
				    &st, &err) < 0)
			goto fail_rb;
		sqlite3_bind_text(st, 1, done_command, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int(st, 2, status);
		sqlite3_bind_text(st, 3, reason ? reason : "", -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 4, time(NULL));
		if (sqlite3_step(st) != SQLITE_DONE) {
			statedb_err(g->d->db, "commands", &err);
			goto fail_rb;
		}
	}
	if (statedb_commit(g->d->db, &err) < 0)
		goto fail;
	flush_outbox(g);
	return;
fail_rb:
	statedb_rollback(g->d->db);
fail:
	log_error("mgmt: cannot record the result of %s: %s", msg_id, err.msg);
}

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
	if (statedb_prepare(g->d->db, "SELECT status, reason FROM mgmt_commands WHERE command_id=?",
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
}

static void handle_ack(struct mgmt *g, const Cells__V1__Ack *a)
{
	for (size_t i = 0; i < a->n_message_ids; i++) {
		/* the audit batch in flight leaves the outbox only on a verified audit_ack:
		 * a bare or forged Ack keeps it queued (it is sent again on reconnect) */
		if (audit_mgmt_on_ack(g->d, a->message_ids[i], a->audit_ack) < 0)
			continue;
		cleanup_stmt sqlite3_stmt *q = NULL;
		cleanup_envelope Cells__V1__Envelope *env = NULL;
		if (statedb_prepare(g->d->db, "SELECT envelope FROM mgmt_outbox WHERE message_id=?",
				    &q, NULL) == 0) {
			sqlite3_bind_text(q, 1, a->message_ids[i], -1, SQLITE_TRANSIENT);
			if (sqlite3_step(q) == SQLITE_ROW &&
			    cells_envelope_decode(sqlite3_column_blob(q, 0),
						  (size_t)sqlite3_column_bytes(q, 0), &env,
						  NULL) == 0 &&
			    env->body_case == CELLS__V1__ENVELOPE__BODY_RESULT)
				mgmt_command_result_acked(g->d, env->result); /* hook: receipts */
		}
		cleanup_stmt sqlite3_stmt *st = NULL;
		if (statedb_prepare(g->d->db, "DELETE FROM mgmt_outbox WHERE message_id=?", &st,
				    NULL) < 0)
			return;
		sqlite3_bind_text(st, 1, a->message_ids[i], -1, SQLITE_TRANSIENT);
		sqlite3_step(st);
	}
}

static int ipc_refuse(struct mgmt *g, const char *what, const char *reason)
{
	char why[400];
	snprintf(why, sizeof why, "%s: %s", what, reason);
	log_warn("mgmt: refused from the network process: %s", why);
	audit_net(g, "mgmt.ipc.refused", "refused", why);
	return -1;
}

/* The server's bodies accepted on an open session; anything else is refused. */
static int on_recv(struct mgmt *g, struct netipc_msg *m)
{
	cells_err_t err = {0};
	cleanup_envelope Cells__V1__Envelope *env = NULL;
	if (cells_envelope_decode(m->raw, m->raw_len, &env, &err) < 0)
		return ipc_refuse(g, "envelope", err.msg);
	g->received++;
	switch (env->body_case) {
	case CELLS__V1__ENVELOPE__BODY_SERVER_HELLO:
		return 0;
	case CELLS__V1__ENVELOPE__BODY_ACK:
		handle_ack(g, env->ack);
		return 0;
	case CELLS__V1__ENVELOPE__BODY_ERROR:
		log_warn("mgmt: server error %u: %s", env->error->code, env->error->reason);
		audit_mgmt_on_error(g->d, env->correlation_id, env->error->code,
				    env->error->reason);
		return 0;
	case CELLS__V1__ENVELOPE__BODY_POLICY:
	case CELLS__V1__ENVELOPE__BODY_COMMAND:
		if (inbox_replay(g, env->message_id,
				 env->body_case == CELLS__V1__ENVELOPE__BODY_COMMAND))
			return 0;
		if (env->body_case == CELLS__V1__ENVELOPE__BODY_POLICY)
			handle_policy(g, env);
		else
			handle_command(g, env);
		return 0;
	default:
		/* not fatal for the network process: it forwards what the server sent */
		ipc_refuse(g, "envelope", "body not accepted on a session");
		return 0;
	}
}

static int on_status(struct mgmt *g, struct netipc_msg *m)
{
	bool was = g->state & MGMT_ST_ONLINE;
	if (m->status->connected) {
		g->state = (g->state & ~MGMT_ST_IDLE) | MGMT_ST_ONLINE;
		g->last_error[0] = 0;
		if (!was) {
			log_info("mgmt: connected to %s", g->url);
			send_hello(g, false);
			flush_outbox(g);
			audit_mgmt_on_connect(g->d);
		}
	} else {
		g->state = (g->state & ~MGMT_ST_ONLINE) | MGMT_ST_IDLE;
		snprintf(g->last_error, sizeof g->last_error, "%s", m->status->reason);
		if (was)
			log_info("mgmt: disconnected: %s", m->status->reason);
	}
	return 0;
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

static const struct ipc_route {
	unsigned type;
	unsigned permitted; /* MGMT_ST_* */
	int (*fn)(struct mgmt *g, struct netipc_msg *m);
} ipc_routes[] = {
    {NETIPC_STATUS, MGMT_ST_ANY, on_status},
    {NETIPC_RECV, MGMT_ST_ONLINE, on_recv},
    {NETIPC_ENROLL_RESULT, MGMT_ST_ENROLLING, on_enroll_result},
};

static void on_ipc(struct loop *l, int fd, uint32_t events, void *data)
{
	struct mgmt *g = data;
	for (int i = 0; i < 64 && g->ipc_fd == fd; i++) {
		ssize_t n = recv(fd, g->rxbuf, NETIPC_MAX_DGRAM + 1, MSG_DONTWAIT | MSG_TRUNC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			loop_del_fd(g->d->loop, fd);
			return; /* the pidfd reports the exit */
		}
		cells_err_t err = {0};
		struct netipc_msg m;
		if ((size_t)n > NETIPC_MAX_DGRAM) {
			ipc_refuse(g, "datagram", "over the size limit");
			kill_net(g, "oversized message");
			return;
		}
		if (netipc_decode(g->rxbuf, (size_t)n, NETIPC_TO_CELLSD, &m, &err) < 0) {
			ipc_refuse(g, "message", err.msg);
			kill_net(g, "malformed message");
			return;
		}
		const struct ipc_route *rt = NULL;
		for (size_t k = 0; k < CELLS_ARRAY_SIZE(ipc_routes); k++)
			if (ipc_routes[k].type == m.type)
				rt = &ipc_routes[k];
		if (!rt || !(rt->permitted & g->state)) {
			ipc_refuse(g, netipc_type_name(m.type) ? netipc_type_name(m.type) : "?",
				   "not permitted in the channel's current state");
			netipc_msg_free(&m);
			kill_net(g, "out-of-state message");
			return;
		}
		int r = rt->fn(g, &m);
		netipc_msg_free(&m);
		if (r < 0) {
			kill_net(g, "bad message");
			return;
		}
	}
}

static int net_program(char out[PATH_MAX])
{
	if (net_helper) {
		snprintf(out, PATH_MAX, "%s", net_helper);
		return 0;
	}
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0)
		return -1;
	self[n] = 0;
	char *slash = strrchr(self, '/');
	if (!slash)
		return -1;
	*slash = 0;
	snprintf(out, PATH_MAX, "%s/cellsd-net", self);
	return 0;
}

/* TRANSITION, remove at merge: spawn_net (being moved to mgmt_link.c) hands cellsd-net
 * the key device_key_load() returns. cellsd-net must hold the TLS key, never the
 * identity key: until spawn_net calls device_tls_key_load() itself, its call is
 * redirected here. */
static int net_key_load(const char *state_dir, EVP_PKEY **key, char id[DEVICE_ID_LEN + 1],
			cells_err_t *err)
{
	if (device_key_load(state_dir, NULL, id, err) < 0)
		return -1;
	return device_tls_key_load(state_dir, key, err);
}
#define device_key_load net_key_load

static void spawn_net(struct mgmt *g)
{
	cells_err_t err = {0};
	char prog[PATH_MAX];
	int sv[2] = {-1, -1};
	cleanup_close int keyfd = -1;
	cleanup_pkey EVP_PKEY *key = NULL;
	char id[DEVICE_ID_LEN + 1];
	if (net_program(prog) < 0 || device_key_load(g->d->state_dir, &key, id, &err) < 0) {
		log_error("mgmt: cannot start the network process: %s", err.msg);
		return;
	}
	/* the key travels as an fd (a sealed memfd), never as a path the process could
	 * open itself */
	keyfd = memfd_create("cells-net-key", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	cleanup_free char *pem = NULL;
	if (keyfd < 0 || pol_key_to_pem(key, true, &pem, &err) < 0 ||
	    cells_write_all(keyfd, pem, strlen(pem)) < 0 ||
	    fcntl(keyfd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK) <
		0) {
		log_error("mgmt: key fd: %s", err.msg[0] ? err.msg : strerror(errno));
		if (pem)
			OPENSSL_cleanse(pem, strlen(pem));
		return;
	}
	OPENSSL_cleanse(pem, strlen(pem));
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		log_error("mgmt: socketpair: %s", strerror(errno));
		return;
	}
	int sndbuf = NETIPC_MAX_DGRAM + 4096;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
	struct passwd *pw = getpwnam("nobody");
	uid_t uid = pw ? pw->pw_uid : 65534;
	gid_t gid = pw ? pw->pw_gid : 65534;
	int pidfd = -1;
	pid_t pid = (pid_t)syscall(SYS_clone, CLONE_PIDFD | SIGCHLD, 0, &pidfd, NULL, 0);
	if (pid < 0) {
		log_error("mgmt: fork: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		return;
	}
	if (pid == 0) {
		/* child: own namespaces, unprivileged uid, no_new_privs, then exec */
		if (dup2(sv[1], 3) < 0 || dup2(keyfd, 4) < 0)
			_exit(127);
		int keep[] = {0, 1, 2, 3, 4};
		cells_close_fds_from(3, keep, 5);
		if (unshare(CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNS) < 0)
			_exit(126);
		if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 ||
		    setresuid(uid, uid, uid) < 0)
			_exit(125);
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
			_exit(124);
		char *const argv[] = {"cellsd-net", "--ipc-fd", "3", "--key-fd", "4", NULL};
		execv(prog, argv);
		_exit(127);
	}
	close(sv[1]);
	g->pid = pid;
	g->pidfd = pidfd;
	g->ipc_fd = sv[0];
	g->started_ms = mono_ms();
	g->state = MGMT_ST_IDLE | (g->enroll_call ? MGMT_ST_ENROLLING : 0);
	if (loop_add_fd(g->d->loop, g->pidfd, EPOLLIN, on_pidfd, g, &err) < 0 ||
	    loop_add_fd(g->d->loop, g->ipc_fd, EPOLLIN, on_ipc, g, &err) < 0)
		log_error("mgmt: %s", err.msg);
	log_info("mgmt: network process %d started (%s)", (int)pid, prog);
	if (g->enroll_msg) {
		/* re-enrollment: this process enrolls first, the next one gets the config */
		if (send(g->ipc_fd, g->enroll_msg, g->enroll_msg_len, MSG_NOSIGNAL) < 0)
			log_warn("mgmt: enroll: %s", strerror(errno));
		free(g->enroll_msg);
		g->enroll_msg = NULL;
	} else {
		send_config(g);
	}
}
#undef device_key_load

static int load_enrollment(struct mgmt *g, cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (statedb_prepare(g->d->db, "SELECT url, ca_pem, cert_pem FROM mgmt_enrollment", &st,
			    err) < 0)
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

int mgmt_init(struct cellsd *d, cells_err_t *err)
{
	struct mgmt *g = calloc(1, sizeof *g);
	if (!g)
		return cells_err_sys(err, ENOMEM, "mgmt");
	g->d = d;
	g->pidfd = g->ipc_fd = -1;
	g->rxbuf = malloc(NETIPC_MAX_DGRAM + 1);
	d->mgmt = g;
	if (!g->rxbuf)
		return cells_err_sys(err, ENOMEM, "mgmt");
	if (statedb_migrate(d->db, "mgmt", steps, CELLS_ARRAY_SIZE(steps), err) < 0 ||
	    load_enrollment(g, err) < 0)
		return cells_err_prefix(err, "mgmt");
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (statedb_prepare(d->db, "SELECT policy_refused FROM mgmt_compliance WHERE id=1", &st,
			    err) < 0)
		return cells_err_prefix(err, "mgmt");
	if (sqlite3_step(st) == SQLITE_ROW)
		g->policy_refused = sqlite3_column_int(st, 0) != 0;
	if (compliance_source_add("mgmt", compliance_source) < 0)
		return cells_err_set(err, ENOSPC, "mgmt: compliance sources full");
	g->compliance_timer = loop_add_timer(d->loop, COMPLIANCE_CHECK_MS, on_compliance_timer, g);
	spawn_net(g);
	return 0;
}

void mgmt_stop(struct cellsd *d)
{
	struct mgmt *g = d->mgmt;
	if (!g)
		return;
	g->stopping = true;
	if (g->restart_timer)
		loop_cancel_timer(d->loop, g->restart_timer);
	if (g->enroll_timer)
		loop_cancel_timer(d->loop, g->enroll_timer);
	if (g->compliance_timer)
		loop_cancel_timer(d->loop, g->compliance_timer);
	net_gone(g, "stopping");
	EVP_PKEY_free(g->enroll_tls);
	free(g->ca_pem);
	free(g->cert_pem);
	free(g->enroll_ca);
	free(g->enroll_msg);
	free(g->rxbuf);
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
	if (statedb_prepare(d->db,
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
	new_msg_id(mid, "enroll");
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
	} else if (netipc_send_pb(g->ipc_fd, NETIPC_ENROLL, &ne.base, err) < 0) {
		return -1;
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
	if (statedb_begin(g->d->db, err) < 0)
		return -1;
	cleanup_stmt sqlite3_stmt *ins = NULL;
	if (statedb_prepare(g->d->db, "INSERT OR REPLACE INTO mgmt_enrollment VALUES(1,?,?,?,?,?)",
			    &ins, err) < 0) {
		statedb_rollback(g->d->db);
		return -1;
	}
	sqlite3_bind_text(ins, 1, g->enroll_url, -1, SQLITE_TRANSIENT);
	sqlite3_bind_blob(ins, 2, g->enroll_ca, (int)g->enroll_ca_len, SQLITE_TRANSIENT);
	sqlite3_bind_blob(ins, 3, cpem, (int)cl, SQLITE_TRANSIENT);
	sqlite3_bind_text(ins, 4, id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(ins, 5, time(NULL));
	if (sqlite3_step(ins) != SQLITE_DONE) {
		statedb_err(g->d->db, "enrollment", err);
		statedb_rollback(g->d->db);
		return -1;
	}
	if (statedb_commit(g->d->db, err) < 0 || load_enrollment(g, err) < 0)
		return -1;
	json_object_object_add(result, "device_id", json_object_new_string(id));
	json_object_object_add(result, "url", json_object_new_string(g->url));
	/* restart the network process with the new identity */
	g->reconfigure = true;
	kill_net(g, "new enrollment");
	return 0;
}
