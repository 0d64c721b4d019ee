/* mgmt_link.c - the link to cellsd-net and the durable outbox (see mgmt_link.h). */
#include "mgmt_link.h"
#include "audit.h"
#include "outbox.h"
#include "cjson.h"
#include "audit_mgmt.h"
#include "cleanup.h"
#include "cleanup_sqlite.h"
#include "cleanup_ssl.h"
#include "ctl_server.h"
#include "device_key.h"
#include "log.h"
#include "mgmt.h"
#include "pol_sig.h"
#include "kspawn.h"
#include "sqldb.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/rand.h>

#define RESTART_MIN_MS 1000
#define RESTART_MAX_MS 60000
#define STABLE_MS 60000
/* The network process's default uid/gid when there is no `cellsd-net` system user: in
 * Debian's reserved range 65000-65533, used by no other daemon. */
#define CELLS_NET_UID 65500
#define CELLS_NET_GID 65500

/* The send queue to cellsd-net: cellsd never blocks on it. A network process that lets
 * it fill up does not read: it is killed and restarted (with the backoff above). */
#define SENDQ_MAX_MSGS 256
#define SENDQ_MAX_BYTES (8u << 20)
/* The outbox is resent at (re)connect in batches, while fewer than this are queued. */
#define FLUSH_LOW_MSGS 16
#define FLUSH_BATCH 16
/* Inbound limits (token buckets): policies and commands, and all received envelopes.
 * Over either: the rest is dropped before any DB write and the process restarted. */
#define IN_CMD_BURST 32
#define IN_CMD_RATE 4 /* per second */
#define IN_ALL_BURST 1024
#define IN_ALL_RATE 256
#define IN_STATUS_BURST 16 /* connection status reports (each open one costs a hello) */
#define IN_STATUS_RATE 2
/* At most this many outbox rows: past it, results of refused messages are not stored. */
#define OUTBOX_REFUSED_CAP 256
/* Refusals of one kind less than this apart are one burst (one audit record). */
#define BURST_QUIET_MS (2 * RESTART_MAX_MS)
/* Time cellsd spends on inbound messages per wakeup of the loop. */
#define IPC_BUDGET_MS 5
/* A queue that does not move for this long is a stall too. */
#define STALL_MS 20000
#define STALL_TICK_MS 2000

struct qmsg {
	struct qmsg *next;
	size_t len;
	uint8_t b[];
};

struct bucket {
	double tokens;
	int64_t at_ms;
};

struct burst {
	int64_t last_ms;
	uint64_t count;
};

struct mgmt_link {
	struct qmsg *head, **tail;
	size_t n, bytes;
	bool want_out; /* EPOLLOUT is watched */
	bool dead;     /* killed: nothing more is sent to it or read from it */
	bool flushing; /* the outbox resend is in progress (up to flush_seq) */
	int64_t flush_seq;
	struct bucket in_cmd, in_all, in_status;
	struct burst stall, flood, capped, body;
	uint64_t dropped; /* messages refused by the limits (status) */
	uint64_t stall_timer;
	int64_t progress_ms;  /* last time the queue moved */
	int64_t unread_since; /* bytes in the socket it has not read since then */
	int last_outq;
	int log_fd; /* the network process's stderr */
	char logbuf[1024];
	size_t loglen;
	struct bucket logb;
	uint64_t log_dropped;
};

static const char *net_helper;
static uid_t net_uid;
static gid_t net_gid;
static bool net_ids_set;
static int net_retry_max_ms = -1;

static void spawn_net(struct mgmt *g);

void mgmt_set_net_helper(const char *path)
{
	net_helper = path;
}

static int64_t mono_ms(void)
{
	return cells_mono_ns() / 1000000;
}

void audit_net(struct mgmt *g, const char *event, const char *outcome, const char *reason)
{
	cleanup_json json_object *det = json_object_new_object();
	if (reason)
		json_object_object_add(det, "reason", json_object_new_string(reason));
	cellsd_audit(g->d, "", "cellsd", event, outcome, det, NULL);
}

/* True when this event starts a new burst (the first one, or after a quiet period). */
static bool burst_first(struct burst *b)
{
	int64_t now = mono_ms();
	bool first = !b->count || now - b->last_ms > BURST_QUIET_MS;
	if (first)
		b->count = 0;
	b->count++;
	b->last_ms = now;
	return first;
}

static bool bucket_take(struct bucket *b, double rate, double burst)
{
	int64_t now = mono_ms();
	if (!b->at_ms)
		b->tokens = burst;
	else
		b->tokens += (double)(now - b->at_ms) * rate / 1000.0;
	if (b->tokens > burst)
		b->tokens = burst;
	b->at_ms = now;
	if (b->tokens < 1.0)
		return false;
	b->tokens -= 1.0;
	return true;
}

static void q_clear(struct mgmt_link *L)
{
	while (L->head) {
		struct qmsg *q = L->head;
		L->head = q->next;
		free(q);
	}
	L->tail = &L->head;
	L->n = L->bytes = 0;
}

static void link_stalled(struct mgmt *g);

static void on_stall_timer(struct loop *l, void *data);

static void stall_timer_set(struct mgmt *g, bool on)
{
	struct mgmt_link *L = g->link;
	if (L->stall_timer && !on) {
		loop_cancel_timer(g->d->loop, L->stall_timer);
		L->stall_timer = 0;
	} else if (!L->stall_timer && on) {
		L->stall_timer = loop_add_timer(g->d->loop, STALL_TICK_MS, on_stall_timer, g);
	}
}

/* Every STALL_TICK_MS while the process lives: a queue that has not moved, or bytes in
 * the socket it has not read, for STALL_MS is a stall (it never reads). */
static void on_stall_timer(struct loop *l, void *data)
{
	struct mgmt *g = data;
	struct mgmt_link *L = g->link;
	L->stall_timer = 0;
	if (L->dead || g->ipc_fd < 0)
		return;
	int64_t now = mono_ms();
	int outq = 0;
	if (ioctl(g->ipc_fd, SIOCOUTQ, &outq) < 0 || outq <= 0 || outq < L->last_outq)
		L->unread_since = now; /* it read something (or there is nothing to read) */
	L->last_outq = outq;
	if ((L->head && now - L->progress_ms >= STALL_MS) || now - L->unread_since >= STALL_MS) {
		link_stalled(g);
		return;
	}
	stall_timer_set(g, true);
}

static void want_out(struct mgmt *g, bool on)
{
	struct mgmt_link *L = g->link;
	if (L->want_out == on || g->ipc_fd < 0)
		return;
	L->want_out = on;
	if (on)
		L->progress_ms = mono_ms();
	loop_mod_fd(g->d->loop, g->ipc_fd, EPOLLIN | (on ? EPOLLOUT : 0));
}

/* The network process does not read what it is sent: kill it, audited once a burst. */
static void link_stalled(struct mgmt *g)
{
	struct mgmt_link *L = g->link;
	char why[120];
	snprintf(why, sizeof why,
		 "the network process does not read: %zu messages (%zu bytes) queued", L->n,
		 L->bytes);
	if (burst_first(&L->stall))
		audit_net(g, "mgmt.net.stalled", "failed", why);
	log_warn("mgmt: %s", why);
	q_clear(L);
	want_out(g, false);
	stall_timer_set(g, false);
	kill_net(g, "stalled");
}

/* Queue one datagram (copied) for the network process; never blocks. */
static void link_write_dgram(struct mgmt *g, const uint8_t *p, size_t n)
{
	struct mgmt_link *L = g->link;
	if (g->ipc_fd < 0 || L->dead)
		return;
	if (!L->head) {
		ssize_t w = send(g->ipc_fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w == (ssize_t)n) {
			g->sent++;
			return;
		}
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
		    errno != ENOBUFS) {
			log_warn("mgmt: send to the network process: %s", strerror(errno));
			return; /* it is gone: the pidfd reports the exit */
		}
	}
	struct qmsg *q = malloc(sizeof *q + n);
	if (!q) {
		log_error("mgmt: send queue: out of memory");
		return;
	}
	q->next = NULL;
	q->len = n;
	memcpy(q->b, p, n);
	*L->tail = q;
	L->tail = &q->next;
	L->n++;
	L->bytes += n;
	if (L->n > SENDQ_MAX_MSGS || L->bytes > SENDQ_MAX_BYTES) {
		link_stalled(g);
		return;
	}
	want_out(g, true);
}

void mgmt_link_send_pb(struct mgmt *g, enum netipc_type type, const ProtobufCMessage *pb)
{
	cells_err_t err;
	cleanup_free uint8_t *b = NULL;
	size_t n;
	if (netipc_encode_pb(type, pb, &b, &n, &err) < 0) {
		log_warn("mgmt: %s", err.msg);
		return;
	}
	link_write_dgram(g, b, n);
}

void net_send_raw(struct mgmt *g, const uint8_t *p, size_t n)
{
	cells_err_t err;
	if (g->ipc_fd < 0 || !(g->state & MGMT_ST_ONLINE))
		return;
	cleanup_free uint8_t *b = NULL;
	size_t bn;
	if (netipc_encode_raw(NETIPC_SEND, p, n, &b, &bn, &err) < 0) {
		log_warn("mgmt: %s", err.msg);
		return;
	}
	link_write_dgram(g, b, bn);
}

/* Send a newly produced outbox entry once (a resend in progress will reach it). */
static void send_new(struct mgmt *g, const uint8_t *p, size_t n)
{
	if (!g->link->flushing)
		net_send_raw(g, p, n);
}

/* The outbox's sender (outbox_set_sender). */
static void outbox_sender(void *ctx, const uint8_t *p, size_t n)
{
	send_new(ctx, p, n);
}

static void flush_one(void *ctx, int64_t seq, const uint8_t *p, size_t n)
{
	struct mgmt *g = ctx;
	g->link->flush_seq = seq;
	net_send_raw(g, p, n);
}

/* The outbox resend: what the server has not acknowledged, in order, in batches while
 * the send queue is short (continued when it drains). */
static void flush_more(struct mgmt *g)
{
	struct mgmt_link *L = g->link;
	while (L->flushing && !L->dead && g->ipc_fd >= 0 && (g->state & MGMT_ST_ONLINE) &&
	       L->n < FLUSH_LOW_MSGS) {
		int rows = outbox_each(g->d, L->flush_seq, FLUSH_BATCH, flush_one, g);
		if (rows < 0)
			break;
		if (!rows)
			L->flushing = false;
	}
	if (!(g->state & MGMT_ST_ONLINE) || L->dead)
		L->flushing = false;
}

/* At (re)connect: resend everything the server has not acknowledged. */
static void flush_outbox(struct mgmt *g)
{
	g->link->flushing = true;
	g->link->flush_seq = 0;
	flush_more(g);
}

bool mgmt_online(struct cellsd *d)
{
	return d->mgmt && (d->mgmt->state & MGMT_ST_ONLINE);
}

static void on_restart_timer(struct loop *l, void *data)
{
	struct mgmt *g = data;
	g->restart_timer = 0;
	spawn_net(g);
}

static void log_close(struct mgmt *g);

static void net_gone(struct mgmt *g, const char *why)
{
	log_close(g);
	q_clear(g->link);
	stall_timer_set(g, false);
	g->link->want_out = false;
	g->link->flushing = false;
	g->link->dead = true;
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

void kill_net(struct mgmt *g, const char *why)
{
	log_warn("mgmt: stopping the network process: %s", why);
	g->link->dead = true;
	if (g->pidfd >= 0)
		syscall(SYS_pidfd_send_signal, g->pidfd, SIGKILL, NULL, 0);
}

static void send_config(struct mgmt *g)
{
	if (!g->enrolled || g->ipc_fd < 0)
		return;
	Cells__Net__V1__NetConfig c = CELLS__NET__V1__NET_CONFIG__INIT;
	c.url = g->url;
	c.ca_pem.data = g->ca_pem;
	c.ca_pem.len = g->ca_len;
	c.cert_pem.data = g->cert_pem;
	c.cert_pem.len = g->cert_len;
	mgmt_link_send_pb(g, NETIPC_CONFIG, &c.base);
}

static int result_to_outbox(struct mgmt *g, const char *corr, const char *command_id,
			    Cells__V1__ResultStatus status, const char *reason,
			    Cells__V1__Signed *receipt, char rid[40], uint8_t **bytes, size_t *len,
			    cells_err_t *err)
{
	Cells__V1__Envelope env = CELLS__V1__ENVELOPE__INIT;
	Cells__V1__CommandResult r = CELLS__V1__COMMAND_RESULT__INIT;
	char mid[40];
	outbox_msg_id(mid, "r");
	env.message_id = mid;
	env.correlation_id = (char *)corr;
	r.command_id = (char *)command_id;
	r.status = status;
	r.reason = (char *)(reason ? reason : "");
	r.at = time(NULL);
	r.receipt = receipt;
	env.body_case = CELLS__V1__ENVELOPE__BODY_RESULT;
	env.result = &r;
	return outbox_store(g->d, &env, rid, bytes, len, err);
}

static int inbox_record(struct mgmt *g, const char *msg_id, const char *rid, cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(g->d->db, "INSERT OR REPLACE INTO mgmt_inbox VALUES(?,?,?)", &st, err) <
	    0)
		return -1;
	sqlite3_bind_text(st, 1, msg_id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, rid, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 3, time(NULL));
	if (sqlite3_step(st) != SQLITE_DONE)
		return sqldb_err(g->d->db, "inbox", err);
	return 0;
}

/* 1 when msg_id was handled before: its stored result is sent again (or a fresh "done"
 * when the server had already acknowledged it). A command whose result is gone returns
 * 0: handle_command verifies it again and answers from its command-id record (with what
 * the handler's replay row stored, e.g. a wipe receipt). */
static int inbox_replay(struct mgmt *g, const char *msg_id, bool is_command)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(g->d->db,
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
		cleanup_free uint8_t *b = NULL;
		size_t n;
		if (result_to_outbox(g, msg_id, msg_id, CELLS__V1__RESULT_STATUS__RESULT_DONE,
				     "replay: already handled", NULL, rid, &b, &n, &err) == 0)
			send_new(g, b, n);
	}
	log_info("mgmt: %s is a replay: answered again, not applied again", msg_id);
	return 1;
}

void finish_inbound(struct mgmt *g, const char *msg_id, const char *command_id,
		    Cells__V1__ResultStatus status, const char *reason, const char *done_command,
		    Cells__V1__Signed *receipt)
{
	cells_err_t err = {0};
	char rid[40];
	cleanup_free uint8_t *b = NULL;
	size_t n = 0;
	if (status == CELLS__V1__RESULT_STATUS__RESULT_REJECTED && !done_command &&
	    outbox_count(g->d) >= OUTBOX_REFUSED_CAP) {
		/* a flood of refused messages must not grow the state DB: past the cap their
		 * results are not stored (a genuine message is sent again by the server) */
		g->link->dropped++;
		if (burst_first(&g->link->capped))
			audit_net(g, "mgmt.outbox.capped", "refused",
				  "the outbox is full: results of refused messages are not stored");
		log_warn("mgmt: outbox full: the refusal of %s is not stored", msg_id);
		return;
	}
	if (sqldb_begin(g->d->db, &err) < 0)
		goto fail;
	if (result_to_outbox(g, msg_id, command_id, status, reason, receipt, rid, &b, &n, &err) <
		0 ||
	    inbox_record(g, msg_id, rid, &err) < 0)
		goto fail_rb;
	if (done_command) {
		cleanup_stmt sqlite3_stmt *st = NULL;
		if (sqldb_prepare(g->d->db, "INSERT OR IGNORE INTO mgmt_commands VALUES(?,?,?,?)",
				  &st, &err) < 0)
			goto fail_rb;
		sqlite3_bind_text(st, 1, done_command, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int(st, 2, status);
		sqlite3_bind_text(st, 3, reason ? reason : "", -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 4, time(NULL));
		if (sqlite3_step(st) != SQLITE_DONE) {
			sqldb_err(g->d->db, "commands", &err);
			goto fail_rb;
		}
	}
	if (sqldb_commit(g->d->db, &err) < 0)
		goto fail;
	send_new(g, b, n);
	return;
fail_rb:
	sqldb_rollback(g->d->db);
fail:
	log_error("mgmt: cannot record the result of %s: %s", msg_id, err.msg);
}

static int ipc_refuse(struct mgmt *g, const char *what, const char *reason)
{
	char why[400];
	snprintf(why, sizeof why, "%s: %s", what, reason);
	log_warn("mgmt: refused from the network process: %s", why);
	audit_net(g, "mgmt.ipc.refused", "refused", why);
	return -1;
}

/* Over an inbound limit: the rest is dropped, the process restarted (audited once a
 * burst). Returns -1 (the caller kills the process). */
static int link_flood(struct mgmt *g, const char *what)
{
	g->link->dropped++;
	if (burst_first(&g->link->flood))
		audit_net(g, "mgmt.ipc.flood", "refused", what);
	log_warn("mgmt: refused from the network process: %s", what);
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
		g->ops->ack(g, env->ack);
		return 0;
	case CELLS__V1__ENVELOPE__BODY_ERROR:
		log_warn("mgmt: server error %u: %s", env->error->code, env->error->reason);
		audit_mgmt_on_error(g->d, env->correlation_id, env->error->code,
				    env->error->reason);
		return 0;
	case CELLS__V1__ENVELOPE__BODY_POLICY:
	case CELLS__V1__ENVELOPE__BODY_COMMAND:
	case CELLS__V1__ENVELOPE__BODY_TRUST_UPDATE:
	case CELLS__V1__ENVELOPE__BODY_IMAGE:
		/* bounded before anything is written: a flood is refused, the process
		 * restarted (the server sends a genuine message again) */
		if (!bucket_take(&g->link->in_cmd, IN_CMD_RATE, IN_CMD_BURST))
			return link_flood(g, "policies and commands over the rate limit");
		if (inbox_replay(g, env->message_id,
				 env->body_case == CELLS__V1__ENVELOPE__BODY_COMMAND))
			return 0;
		if (env->body_case == CELLS__V1__ENVELOPE__BODY_POLICY)
			g->ops->policy(g, env);
		else if (env->body_case == CELLS__V1__ENVELOPE__BODY_IMAGE)
			mgmt_img_offer(g, env);
		else if (env->body_case == CELLS__V1__ENVELOPE__BODY_TRUST_UPDATE)
			g->ops->trust(g, env);
		else
			g->ops->command(g, env);
		return 0;
	default:
		/* not fatal for the network process: it forwards what the server sent
		 * (audited once a burst) */
		if (burst_first(&g->link->body))
			ipc_refuse(g, "envelope", "body not accepted on a session");
		else
			log_warn("mgmt: refused from the network process: body not accepted");
		return 0;
	}
}

static int on_status(struct mgmt *g, struct netipc_msg *m)
{
	if (!bucket_take(&g->link->in_status, IN_STATUS_RATE, IN_STATUS_BURST))
		return link_flood(g, "status reports over the rate limit");
	bool was = g->state & MGMT_ST_ONLINE;
	if (m->status->connected) {
		g->state = (g->state & ~MGMT_ST_IDLE) | MGMT_ST_ONLINE;
		g->last_error[0] = 0;
		if (!was) {
			log_info("mgmt: connected to %s", g->url);
			g->ops->hello(g, false);
			flush_outbox(g);
			audit_mgmt_on_connect(g->d);
			mgmt_img_kick(g); /* pending image downloads resume */
		}
	} else {
		g->state = (g->state & ~MGMT_ST_ONLINE) | MGMT_ST_IDLE;
		snprintf(g->last_error, sizeof g->last_error, "%s", m->status->reason);
		if (was)
			log_info("mgmt: disconnected: %s", m->status->reason);
	}
	return 0;
}

static int on_enroll_result(struct mgmt *g, struct netipc_msg *m)
{
	return g->ops->enroll_result(g, m);
}

static const struct ipc_route {
	unsigned type;
	unsigned permitted; /* MGMT_ST_* */
	int (*fn)(struct mgmt *g, struct netipc_msg *m);
} ipc_routes[] = {
    {NETIPC_STATUS, MGMT_ST_ANY, on_status},
    {NETIPC_RECV, MGMT_ST_ONLINE, on_recv},
    {NETIPC_ENROLL_RESULT, MGMT_ST_ENROLLING, on_enroll_result},
    {NETIPC_IMAGE_DONE, MGMT_ST_ONLINE | MGMT_ST_IDLE, mgmt_img_on_done},
};

/* Send what is queued until the socket is full; then the outbox resend goes on. */
static void link_drain(struct mgmt *g)
{
	struct mgmt_link *L = g->link;
	while (L->head && !L->dead) {
		struct qmsg *q = L->head;
		ssize_t w = send(g->ipc_fd, q->b, q->len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS))
			return;
		if (w < 0) {
			log_warn("mgmt: send to the network process: %s", strerror(errno));
			q_clear(L);
			want_out(g, false);
			return; /* it is gone: the pidfd reports the exit */
		}
		g->sent++;
		L->progress_ms = mono_ms();
		L->head = q->next;
		if (!L->head)
			L->tail = &L->head;
		L->n--;
		L->bytes -= q->len;
		free(q);
	}
	flush_more(g);
	if (!L->head)
		want_out(g, false);
}

static void on_ipc(struct loop *l, int fd, uint32_t events, void *data)
{
	struct mgmt *g = data;
	if (g->link->dead)
		return; /* killed: what it still sent is not read; the pidfd reports the exit */
	if (events & EPOLLOUT)
		link_drain(g);
	/* a time budget per wakeup: a verified message may cost fsyncs, and the control
	 * socket and the other modules must get their turn (epoll calls us again) */
	int64_t t0 = mono_ms();
	for (int i = 0;
	     i < 64 && g->ipc_fd == fd && !g->link->dead && mono_ms() - t0 < IPC_BUDGET_MS; i++) {
		ssize_t n = recv(fd, g->rxbuf, NETIPC_MAX_DGRAM + 1, MSG_DONTWAIT | MSG_TRUNC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			loop_del_fd(g->d->loop, fd);
			return; /* the pidfd reports the exit */
		}
		if (!bucket_take(&g->link->in_all, IN_ALL_RATE, IN_ALL_BURST)) {
			link_flood(g, "messages over the rate limit");
			kill_net(g, "flood");
			return;
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

int mgmt_option(const char *name, const char *value, cells_err_t *err)
{
	char *end;
	if (!strcmp(name, "net-retry-max-ms")) {
		long v = strtol(value, &end, 10);
		if (!*value || *end || v < 0 || v > 3600000)
			return cells_err_set(err, EINVAL, "--net-retry-max-ms %s: want 0..3600000",
					     value);
		mgmt_set_net_retry_max_ms((int)v);
		return 0;
	}
	if (!strcmp(name, "net-user")) {
		unsigned long u, g = 0;
		u = strtoul(value, &end, 10);
		if (end != value && *end == ':') {
			char *e2;
			g = strtoul(end + 1, &e2, 10);
			if (e2 == end + 1 || *e2 || !u || !g || u > 0xfffffffe || g > 0xfffffffe)
				return cells_err_set(err, EINVAL,
						     "--net-user %s: want NAME or UID:GID (not 0)",
						     value);
			mgmt_set_net_ids((uid_t)u, (gid_t)g);
			return 0;
		}
		struct passwd *pw = getpwnam(value);
		if (!pw || !pw->pw_uid || !pw->pw_gid)
			return cells_err_set(err, EINVAL, "--net-user %s: no such (non-root) user",
					     value);
		mgmt_set_net_ids(pw->pw_uid, pw->pw_gid);
		return 0;
	}
	return cells_err_set(err, EINVAL, "unknown option --%s", name);
}

void mgmt_set_net_ids(uid_t uid, gid_t gid)
{
	net_uid = uid;
	net_gid = gid;
	net_ids_set = true;
}

void mgmt_set_net_retry_max_ms(int ms)
{
	net_retry_max_ms = ms;
}

/* The network process's uid/gid: set by the option, else the `cellsd-net` system user,
 * else the fixed default (CELLS_NET_UID/GID: no other daemon's). Never root. */
static void net_ids(uid_t *uid, gid_t *gid)
{
	*uid = CELLS_NET_UID;
	*gid = CELLS_NET_GID;
	if (net_ids_set) {
		*uid = net_uid;
		*gid = net_gid;
	} else {
		struct passwd *pw = getpwnam("cellsd-net");
		if (pw) {
			*uid = pw->pw_uid;
			*gid = pw->pw_gid;
		}
	}
	if (*uid == 0 || *gid == 0) {
		*uid = CELLS_NET_UID;
		*gid = CELLS_NET_GID;
	}
}

static void log_close(struct mgmt *g)
{
	struct mgmt_link *L = g->link;
	if (L->log_fd >= 0) {
		loop_del_fd(g->d->loop, L->log_fd);
		close(L->log_fd);
		L->log_fd = -1;
	}
}

/* Lines the network process writes to stderr, into cellsd's log: bounded in length and
 * rate (a flood is dropped and counted). */
static void on_log(struct loop *l, int fd, uint32_t events, void *data)
{
	struct mgmt *g = data;
	struct mgmt_link *L = g->link;
	ssize_t n = read(fd, L->logbuf + L->loglen, sizeof L->logbuf - 1 - L->loglen);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		log_close(g);
		return;
	}
	L->loglen += (size_t)n;
	char *s = L->logbuf, *e;
	while ((e = memchr(s, '\n', L->loglen - (size_t)(s - L->logbuf))) ||
	       (s == L->logbuf && L->loglen == sizeof L->logbuf - 1)) {
		if (!e)
			e = L->logbuf + L->loglen - 1;
		*e = 0;
		for (char *c = s; c < e; c++)
			if ((unsigned char)*c < 0x20 || (unsigned char)*c == 0x7f)
				*c = '?';
		if (bucket_take(&L->logb, 20, 200)) {
			if (L->log_dropped)
				log_warn("cellsd-net: %llu log lines dropped (rate limit)",
					 (unsigned long long)L->log_dropped);
			L->log_dropped = 0;
			log_info("cellsd-net: %s", s);
		} else {
			L->log_dropped++;
		}
		s = e + 1;
	}
	size_t rest = L->loglen - (size_t)(s - L->logbuf);
	memmove(L->logbuf, s, rest);
	L->loglen = rest;
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

static void spawn_net(struct mgmt *g)
{
	cells_err_t err = {0};
	char prog[PATH_MAX];
	int sv[2] = {-1, -1};
	cleanup_close int keyfd = -1;
	cleanup_pkey EVP_PKEY *key = NULL;
	/* the TLS key only: the identity key (receipts, checkpoints, results) never leaves
	 * cellsd */
	if (net_program(prog) < 0 || device_tls_key_load(g->d->state_dir, &key, &err) < 0) {
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
	uid_t uid;
	gid_t gid;
	net_ids(&uid, &gid);
	cleanup_close int xfd = open(prog, O_RDONLY | O_CLOEXEC);
	char magic[2] = {0, 0};
	if (xfd < 0 || pread(xfd, magic, 2, 0) < 0) {
		cells_err_sys(&err, errno, "%s", prog);
		goto fail;
	}
	int lp[2];
	if (pipe2(lp, O_CLOEXEC | O_NONBLOCK) < 0) {
		cells_err_sys(&err, errno, "pipe");
		goto fail;
	}
	fcntl(lp[1], F_SETFL, 0); /* the child's end blocks */
	char retry[24] = "0";
	if (net_retry_max_ms > 0)
		snprintf(retry, sizeof retry, "%d", net_retry_max_ms);
	char *const argv[] = {"cellsd-net", "--ipc-fd",	      "3",   "--key-fd",
			      "4",	    "--retry-max-ms", retry, NULL};
	char *const envp[] = {NULL}; /* nothing inherited */
	int fds[] = {sv[1], keyfd};
	struct ksp_helper h = {
	    .exec_fd = xfd,
	    .exec_script = magic[0] == '#' && magic[1] == '!',
	    .fds = fds,
	    .nfds = 2,
	    .stdio = {-1, lp[1], lp[1]},
	    .uid = uid,
	    .gid = gid,
	    .clone_flags = CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNS,
	    .argv = argv,
	    .envp = envp,
	};
	pid_t pid = 0;
	int pidfd = -1;
	int r = ksp_spawn_helper(&h, &pid, &pidfd, &err);
	close(lp[1]);
	if (r < 0) {
		close(lp[0]);
		goto fail;
	}
	g->link->log_fd = lp[0];
	g->link->loglen = 0;
	if (loop_add_fd(g->d->loop, lp[0], EPOLLIN, on_log, g, &err) < 0)
		log_error("mgmt: %s", err.msg);
	close(sv[1]);
	fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
	q_clear(g->link);
	g->link->want_out = g->link->dead = g->link->flushing = false;
	g->link->unread_since = g->link->progress_ms = mono_ms();
	g->link->last_outq = 0;
	stall_timer_set(g, true);
	g->pid = pid;
	g->pidfd = pidfd;
	g->ipc_fd = sv[0];
	g->started_ms = mono_ms();
	g->state = MGMT_ST_IDLE | (g->enroll_call ? MGMT_ST_ENROLLING : 0);
	if (loop_add_fd(g->d->loop, g->pidfd, EPOLLIN, on_pidfd, g, &err) < 0 ||
	    loop_add_fd(g->d->loop, g->ipc_fd, EPOLLIN, on_ipc, g, &err) < 0)
		log_error("mgmt: %s", err.msg);
	log_info("mgmt: network process %d started (%s, uid %u)", (int)pid, prog, (unsigned)uid);
	if (g->enroll_msg) {
		/* re-enrollment: this process enrolls first, the next one gets the config */
		link_write_dgram(g, g->enroll_msg, g->enroll_msg_len);
		free(g->enroll_msg);
		g->enroll_msg = NULL;
	} else {
		send_config(g);
	}
	return;
fail:
	close(sv[0]);
	close(sv[1]);
	log_error("mgmt: cannot start the network process: %s", err.msg);
	g->started_ms = mono_ms();
	net_gone(g, err.msg);
}

int mgmt_link_init(struct mgmt *g, const struct mgmt_ops *ops, cells_err_t *err)
{
	g->ops = ops;
	g->pidfd = g->ipc_fd = -1;
	g->rxbuf = malloc(NETIPC_MAX_DGRAM + 1);
	g->link = calloc(1, sizeof *g->link);
	if (!g->rxbuf || !g->link)
		return cells_err_sys(err, ENOMEM, "mgmt");
	g->link->tail = &g->link->head;
	g->link->log_fd = -1;
	outbox_set_sender(outbox_sender, g);
	return 0;
}

void mgmt_link_start(struct mgmt *g)
{
	spawn_net(g);
}

void mgmt_link_stop(struct mgmt *g)
{
	if (!g->link) {
		free(g->rxbuf);
		g->rxbuf = NULL;
		return;
	}
	g->stopping = true;
	outbox_set_sender(NULL, NULL);
	if (g->restart_timer)
		loop_cancel_timer(g->d->loop, g->restart_timer);
	g->restart_timer = 0;
	net_gone(g, "stopping");
	free(g->rxbuf);
	g->rxbuf = NULL;
	free(g->link);
	g->link = NULL;
}

void mgmt_link_status_json(struct mgmt *g, json_object *o)
{
	json_object_object_add(o, "net_queued", json_object_new_int64((int64_t)g->link->n));
	json_object_object_add(o, "net_dropped", json_object_new_int64((int64_t)g->link->dropped));
	json_object_object_add(o, "net_stalls",
			       json_object_new_int64((int64_t)g->link->stall.count));
}
