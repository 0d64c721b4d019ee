/* mgmt_link.c - the link to cellsd-net and the durable outbox (see mgmt_link.h). */
#include "mgmt_link.h"
#include "audit_mgmt.h"
#include "cleanup.h"
#include "cleanup_sqlite.h"
#include "cleanup_ssl.h"
#include "ctl_server.h"
#include "device_key.h"
#include "log.h"
#include "mgmt.h"
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

#include <openssl/pem.h>
#include <openssl/rand.h>

#define RESTART_MIN_MS 1000
#define RESTART_MAX_MS 60000
#define STABLE_MS 60000

static const char *net_helper;

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
	json_object *det = json_object_new_object();
	if (reason)
		json_object_object_add(det, "reason", json_object_new_string(reason));
	cellsd_audit(g->d, "", "cellsd", event, outcome, det, NULL);
	json_object_put(det);
}

void new_msg_id(char out[40], const char *prefix)
{
	uint8_t b[12];
	char hex[25];
	RAND_bytes(b, sizeof b);
	cells_hex(b, sizeof b, hex);
	snprintf(out, 40, "%s-%s", prefix, hex);
}

void net_send_raw(struct mgmt *g, const uint8_t *p, size_t n)
{
	cells_err_t err;
	if (g->ipc_fd < 0 || !(g->state & MGMT_ST_ONLINE))
		return;
	if (netipc_send(g->ipc_fd, NETIPC_SEND, p, n, &err) < 0)
		log_warn("mgmt: %s", err.msg);
	else
		g->sent++;
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

void kill_net(struct mgmt *g, const char *why)
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

void finish_inbound(struct mgmt *g, const char *msg_id, const char *command_id,
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
		g->ops->ack(g, env->ack);
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
			g->ops->policy(g, env);
		else
			g->ops->command(g, env);
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
			g->ops->hello(g, false);
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

int mgmt_link_init(struct mgmt *g, const struct mgmt_ops *ops, cells_err_t *err)
{
	g->ops = ops;
	g->pidfd = g->ipc_fd = -1;
	g->rxbuf = malloc(NETIPC_MAX_DGRAM + 1);
	if (!g->rxbuf)
		return cells_err_sys(err, ENOMEM, "mgmt");
	return 0;
}

void mgmt_link_start(struct mgmt *g)
{
	spawn_net(g);
}

void mgmt_link_stop(struct mgmt *g)
{
	g->stopping = true;
	if (g->restart_timer)
		loop_cancel_timer(g->d->loop, g->restart_timer);
	g->restart_timer = 0;
	net_gone(g, "stopping");
	free(g->rxbuf);
	g->rxbuf = NULL;
}
