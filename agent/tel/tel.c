/* tel.c - the telephony proxy: per-VP virtual modems multiplexed onto the real modem.
 * See tel.h for what it does and docs/TELEPHONY.md for the AT subset and the routing. */
#include "tel.h"
#include "audit.h"
#include "cjson.h"
#include "fg.h"
#include "kidmap.h"
#include "at.h"
#include "buf.h"
#include "cleanup.h"
#include "cleanup_sqlite.h"
#include "log.h"
#include "policy_engine.h"
#include "sqldb.h"
#include "util.h"
#include "vpm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#define TEL_RETRY_MS 200	/* reopen the real modem this often while it is absent */
#define TEL_CMD_TIMEOUT_MS 5000 /* a modem command without a final result fails */
#define TEL_DIAL_TIMEOUT_MS 30000
#define TEL_VP_QUEUE_MAX 8 /* modem commands one VP may have waiting (fairness, memory) */
#define TEL_BAD_AUDIT_EVERY_NS (10LL * 1000000000) /* rate of "tel.at.rejected" records */

enum tel_call { CALL_IDLE = 0, CALL_RINGING, CALL_DIALING, CALL_ACTIVE };
static const char *const call_names[] = {"idle", "ringing", "dialing", "active"};

enum { SIM_CPIN, SIM_CIMI, SIM_CCID, SIM_N };
static const char *const sim_cmds[SIM_N] = {"AT+CPIN?", "AT+CIMI", "AT+CCID"};

struct tel_vp {
	struct tel_vp *next;
	struct tel *t;
	char name[33];
	char number[AT_NUMBER_MAX + 1];
	char gateway[AT_NUMBER_MAX + 1];
	int digit;
	int master;	/* pty master (owned) */
	int slave_keep; /* a slave fd kept open so the master never hangs up (owned) */
	char slave[64];
	char link[PATH_MAX];
	struct at_lineacc acc;
	bool echo, clip;
	enum tel_call call;
	bool mt; /* the call is incoming */
	char peer[AT_NUMBER_MAX + 1];
	unsigned bad_lines;
	int64_t bad_audit_ns;
	uint64_t attach_timer; /* waiting for the VP's devpts */
	unsigned attach_tries;
};

enum tel_purpose { TP_INIT, TP_SIM, TP_FORWARD, TP_DIAL, TP_DTMF, TP_ANSWER, TP_HANGUP };

struct tel_req {
	struct tel_req *next;
	struct tel_vp *vp; /* borrowed; NULL for the proxy's own commands */
	enum tel_purpose purpose;
	int sim;
	bool last; /* TP_DTMF: the last tone of a dial */
	uint64_t timeout_ms;
	char line[AT_LINE_MAX + 1];
};

struct tel {
	struct cellsd *d;
	char modem_path[PATH_MAX];
	int mfd;
	struct at_lineacc macc;
	uint64_t retry_timer;
	bool retry_logged;
	unsigned connects;
	struct tel_req *q_head, *q_tail, *cur;
	uint64_t cur_timer;
	cells_wbuf_t cur_text; /* info lines of the current SIM query */
	char *sim_rec[SIM_N];  /* recorded responses (owned), replayed to VPs */
	unsigned sim_sent;     /* SIM queries the real modem has seen */
	bool ring_pending;
	struct tel_vp *call_vp;
	struct tel_vp *vps;
};

/* The foreground is agent/vp/fg.h's: an incoming call may bring its VP to the front
 * (fg_switch as actor "tel": the policy's incoming_call_switches and foreground rules
 * apply, audited as fg.switch), and only the FVP may dial. */
enum tel_ask { TEL_ASK_INCOMING, TEL_ASK_OUTGOING, TEL_ASK_CALL_SWITCHES_FG };

/* What the VP's policy says; a VP no policy names is unmanaged: everything allowed. */
static bool tel_policy_allows(struct tel *t, const char *vp, enum tel_ask what)
{
	const struct pol_vp_rule *r = policy_vp_rule(t->d, vp);
	if (!r)
		return true;
	switch (what) {
	case TEL_ASK_INCOMING:
		return r->allow_incoming;
	case TEL_ASK_OUTGOING:
		return r->allow_outgoing;
	case TEL_ASK_CALL_SWITCHES_FG:
		return r->may_be_foreground && r->incoming_call_switches;
	}
	return false;
}

static const char *const tel_migrations[] = {
    "CREATE TABLE tel_numbers("
    " vp TEXT PRIMARY KEY,"
    " number TEXT NOT NULL UNIQUE,"
    " digit INTEGER NOT NULL UNIQUE CHECK(digit BETWEEN 0 AND 9),"
    " gateway TEXT NOT NULL,"
    " command_id TEXT NOT NULL,"
    " updated_us INTEGER NOT NULL)",
};

static int tel_migrate(sqlite3 *db, cells_err_t *err)
{
	return sqldb_migrate(db, "tel", tel_migrations, CELLS_ARRAY_SIZE(tel_migrations), err);
}

/* ---- writing to a VP -------------------------------------------------------------- */

static void vp_write(struct tel_vp *v, const char *s, size_t n)
{
	if (v->master < 0)
		return;
	ssize_t w = write(v->master, s, n);
	if (w != (ssize_t)n)
		log_debug("tel: %s: dropped %zu bytes of output (reader too slow)", v->name,
			  n - (w > 0 ? (size_t)w : 0));
}

/* Send "\r\nLINE\r\n" (V.250 verbose result framing). */
static void vp_line(struct tel_vp *v, const char *line)
{
	char b[AT_LINE_MAX + 8];
	int n = snprintf(b, sizeof b, "\r\n%s\r\n", line);
	if (n > 0 && (size_t)n < sizeof b)
		vp_write(v, b, (size_t)n);
}

static struct tel_vp *vp_by_name(struct tel *t, const char *name)
{
	for (struct tel_vp *v = t->vps; v; v = v->next)
		if (!strcmp(v->name, name))
			return v;
	return NULL;
}

static struct tel_vp *vp_by_digit(struct tel *t, int digit)
{
	for (struct tel_vp *v = t->vps; v; v = v->next)
		if (v->number[0] && v->digit == digit)
			return v;
	return NULL;
}

/* ---- the real modem's command queue ----------------------------------------------- */

static void pump(struct tel *t);
static void modem_lost(struct tel *t, const char *why);

static struct tel_req *enqueue(struct tel *t, struct tel_vp *v, enum tel_purpose p,
			       const char *line, uint64_t timeout_ms)
{
	struct tel_req *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->vp = v;
	r->purpose = p;
	r->timeout_ms = timeout_ms;
	snprintf(r->line, sizeof r->line, "%s", line);
	if (t->q_tail)
		t->q_tail->next = r;
	else
		t->q_head = r;
	t->q_tail = r;
	return r;
}

/* Drop queued (not yet sent) requests of v with purpose p (or any, p < 0). */
static void dequeue_vp(struct tel *t, struct tel_vp *v, int p)
{
	struct tel_req **pp = &t->q_head;
	t->q_tail = NULL;
	while (*pp) {
		struct tel_req *r = *pp;
		if (r->vp == v && (p < 0 || (int)r->purpose == p)) {
			*pp = r->next;
			free(r);
			continue;
		}
		t->q_tail = r;
		pp = &r->next;
	}
}

static unsigned queued_for(struct tel *t, struct tel_vp *v)
{
	unsigned n = 0;
	for (struct tel_req *r = t->q_head; r; r = r->next)
		n += r->vp == v;
	return n;
}

static void call_reset(struct tel *t)
{
	if (t->call_vp) {
		t->call_vp->call = CALL_IDLE;
		t->call_vp->peer[0] = '\0';
	}
	t->call_vp = NULL;
	t->ring_pending = false;
}

static void finish_cur(struct tel *t, enum at_resp_kind k, const char *final)
{
	struct tel_req *r = t->cur;
	t->cur = NULL;
	if (t->cur_timer)
		loop_cancel_timer(t->d->loop, t->cur_timer);
	t->cur_timer = 0;
	struct tel_vp *v = r->vp;
	bool ok = k == AT_R_OK;
	switch (r->purpose) {
	case TP_INIT:
		break;
	case TP_SIM:
		if (ok && !t->sim_rec[r->sim]) {
			cells_wbuf_printf(&t->cur_text, "\r\nOK\r\n");
			t->sim_rec[r->sim] = strndup((char *)t->cur_text.p, t->cur_text.len);
		}
		if (v) {
			vp_write(v, (char *)t->cur_text.p, t->cur_text.len);
			if (!ok)
				vp_line(v, final);
		}
		break;
	case TP_FORWARD:
		if (v)
			vp_line(v, final);
		break;
	case TP_DIAL:
		if (!ok && v) {
			vp_line(v, final);
			dequeue_vp(t, v, TP_DTMF);
			if (t->call_vp == v)
				call_reset(t);
		}
		break;
	case TP_DTMF:
		if (!ok && v) {
			dequeue_vp(t, v, TP_DTMF);
			vp_line(v, "ERROR");
			enqueue(t, NULL, TP_HANGUP, "AT+CHUP", TEL_CMD_TIMEOUT_MS);
		} else if (r->last && v) {
			if (t->call_vp == v)
				v->call = CALL_ACTIVE;
			vp_line(v, final);
		}
		break;
	case TP_ANSWER:
		if (ok && v && t->call_vp == v)
			v->call = CALL_ACTIVE;
		if (v)
			vp_line(v, final);
		break;
	case TP_HANGUP:
		if (ok && (!v || t->call_vp == v)) {
			if (!v && t->call_vp)
				vp_line(t->call_vp, "NO CARRIER");
			call_reset(t);
		}
		if (v)
			vp_line(v, final);
		break;
	}
	free(r);
	t->cur_text.len = 0;
	pump(t);
}

static void on_cmd_timeout(struct loop *l, void *data)
{
	struct tel *t = data;
	t->cur_timer = 0;
	if (!t->cur)
		return;
	log_warn("tel: real modem did not answer %s in time", t->cur->line);
	finish_cur(t, AT_R_ERROR, "ERROR");
}

static void pump(struct tel *t)
{
	while (!t->cur && t->q_head) {
		struct tel_req *r = t->q_head;
		t->q_head = r->next;
		if (!t->q_head)
			t->q_tail = NULL;
		r->next = NULL;
		if (r->purpose == TP_SIM && t->sim_rec[r->sim]) {
			if (r->vp) /* replay the recording; the real modem is not asked again */
				vp_write(r->vp, t->sim_rec[r->sim], strlen(t->sim_rec[r->sim]));
			free(r);
			continue;
		}
		t->cur = r;
		if (t->mfd < 0) {
			finish_cur(t, AT_R_ERROR, "ERROR");
			return; /* finish_cur pumped */
		}
		char b[AT_LINE_MAX + 2];
		int n = snprintf(b, sizeof b, "%s\r", r->line);
		if (r->purpose == TP_SIM)
			t->sim_sent++;
		if (cells_write_all(t->mfd, b, (size_t)n) < 0) {
			modem_lost(t, strerror(errno));
			return;
		}
		t->cur_timer = loop_add_timer(t->d->loop, r->timeout_ms, on_cmd_timeout, t);
	}
}

/* ---- incoming calls ---------------------------------------------------------------- */

static void send_clip(struct tel_vp *v)
{
	if (!v->clip)
		return;
	char b[AT_NUMBER_MAX + 32];
	snprintf(b, sizeof b, "+CLIP: \"%s\",%d", v->peer, v->peer[0] == '+' ? 145 : 129);
	vp_line(v, b);
}

static void incoming_ring(struct tel *t)
{
	if (t->call_vp && t->call_vp->call == CALL_RINGING)
		vp_line(t->call_vp, "RING");
	else if (!t->call_vp)
		t->ring_pending = true; /* route when +CLIP names the VP */
}

static void reject_call(struct tel *t, const char *number, const char *reason)
{
	cleanup_json json_object *det = json_object_new_object();
	json_object_object_add(det, "caller_id", json_object_new_string(number));
	json_object_object_add(det, "reason", json_object_new_string(reason));
	cellsd_audit(t->d, "", "tel", "tel.call.incoming", "refused", det, NULL);
	log_info("tel: incoming call from %s rejected: %s", number, reason);
	t->ring_pending = false;
	enqueue(t, NULL, TP_INIT, "AT+CHUP", TEL_CMD_TIMEOUT_MS);
	pump(t);
}

static void incoming_clip(struct tel *t, const char *line, size_t len)
{
	char number[AT_NUMBER_MAX + 1], caller[AT_NUMBER_MAX + 1];
	int type, digit;
	if (t->call_vp) {
		if (t->call_vp->call == CALL_RINGING)
			send_clip(t->call_vp);
		return;
	}
	if (at_parse_clip(line, len, number, &type) < 0) {
		log_warn("tel: malformed +CLIP from the modem ignored");
		return;
	}
	if (at_callerid_split(number, caller, &digit) < 0)
		return reject_call(t, number, "caller ID carries no VP digit");
	struct tel_vp *v = vp_by_digit(t, digit);
	if (!v)
		return reject_call(t, number, "no VP has this digit");
	if (!tel_policy_allows(t, v->name, TEL_ASK_INCOMING))
		return reject_call(t, number, "policy forbids incoming calls for this VP");
	t->call_vp = v;
	t->ring_pending = false;
	v->call = CALL_RINGING;
	v->mt = true;
	snprintf(v->peer, sizeof v->peer, "%s", caller);
	/* Ring first (latency), then record; a call that cannot be audited is ended. */
	vp_line(v, "RING");
	send_clip(v);
	cleanup_json json_object *det = json_object_new_object();
	json_object_object_add(det, "caller", json_object_new_string(caller));
	json_object_object_add(det, "digit", json_object_new_int(digit));
	int r = cellsd_audit(t->d, v->name, "tel", "tel.call.incoming", "ok", det, NULL);
	if (r < 0) {
		enqueue(t, NULL, TP_HANGUP, "AT+CHUP", TEL_CMD_TIMEOUT_MS);
		pump(t);
		return;
	}
	const char *fg = fg_current(t->d);
	if ((!fg || strcmp(fg, v->name)) &&
	    tel_policy_allows(t, v->name, TEL_ASK_CALL_SWITCHES_FG)) {
		cells_err_t err;
		if (fg_switch(t->d, v->name, "tel", &err) < 0)
			log_warn("tel: bring %s to the foreground: %s", v->name, err.msg);
	}
}

/* ---- the real modem ----------------------------------------------------------------- */

static void on_modem_line(void *data, enum at_line_status st, const char *line, size_t len)
{
	struct tel *t = data;
	if (st != AT_LINE_OK) {
		log_warn("tel: unreadable line from the real modem ignored");
		return;
	}
	enum at_resp_kind k = at_classify(line, len);
	if (k == AT_R_RING)
		return incoming_ring(t);
	if (k == AT_R_CLIP)
		return incoming_clip(t, line, len);
	struct tel_req *r = t->cur;
	bool call_cmd = r && (r->purpose == TP_DIAL || r->purpose == TP_DTMF ||
			      r->purpose == TP_ANSWER || r->purpose == TP_HANGUP);
	if (k == AT_R_NO_CARRIER && !call_cmd) {
		/* the other side hung up */
		if (t->call_vp)
			vp_line(t->call_vp, "NO CARRIER");
		call_reset(t);
		return;
	}
	if (!r)
		return; /* other unsolicited codes (+CREG: ...) are not passed on */
	if (k == AT_R_INFO) {
		if (!strcmp(line, r->line))
			return; /* the modem's echo of our command */
		if (r->purpose == TP_SIM)
			cells_wbuf_printf(&t->cur_text, "\r\n%s\r\n", line);
		else if (r->purpose == TP_FORWARD && r->vp)
			vp_line(r->vp, line);
		return;
	}
	finish_cur(t, k, line);
}

static void on_modem_io(struct loop *l, int fd, uint32_t events, void *data)
{
	struct tel *t = data;
	uint8_t b[1024];
	for (int i = 0; i < 16; i++) {
		ssize_t n = read(fd, b, sizeof b);
		if (n > 0) {
			at_lineacc_feed(&t->macc, b, (size_t)n, on_modem_line, t);
			if (t->mfd != fd)
				return;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		modem_lost(t, n == 0 ? "end of file" : strerror(errno));
		return;
	}
	if (events & (EPOLLHUP | EPOLLERR))
		modem_lost(t, "hang-up");
}

static int modem_open(const char *path, cells_err_t *err)
{
	cleanup_close int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return cells_err_sys(err, errno, "open %s", path);
	struct termios tio;
	if (tcgetattr(fd, &tio) < 0)
		return cells_err_sys(err, errno, "%s is not a serial tty", path);
	cfmakeraw(&tio);
	cfsetispeed(&tio, B115200);
	cfsetospeed(&tio, B115200);
	tio.c_cflag |= CLOCAL | CREAD;
	tio.c_cflag &= ~(tcflag_t)CRTSCTS;
	tio.c_cc[VMIN] = 1;
	tio.c_cc[VTIME] = 0;
	if (tcsetattr(fd, TCSANOW, &tio) < 0)
		return cells_err_sys(err, errno, "configure %s", path);
	tcflush(fd, TCIOFLUSH);
	return take_fd(&fd);
}

static void on_retry(struct loop *l, void *data);

static void modem_connect(struct tel *t)
{
	cells_err_t err;
	int fd = modem_open(t->modem_path, &err);
	if (fd < 0 || loop_add_fd(t->d->loop, fd, EPOLLIN, on_modem_io, t, &err) < 0) {
		if (fd >= 0)
			close(fd);
		if (!t->retry_logged)
			log_warn("tel: real modem not available (%s): retrying", err.msg);
		t->retry_logged = true;
		t->retry_timer = loop_add_timer(t->d->loop, TEL_RETRY_MS, on_retry, t);
		return;
	}
	t->mfd = fd;
	t->retry_logged = false;
	t->connects++;
	at_lineacc_reset(&t->macc);
	log_info("tel: real modem %s connected", t->modem_path);
	enqueue(t, NULL, TP_INIT, "ATE0", TEL_CMD_TIMEOUT_MS);
	enqueue(t, NULL, TP_INIT, "AT+CLIP=1", TEL_CMD_TIMEOUT_MS);
	for (int i = 0; i < SIM_N; i++)
		if (!t->sim_rec[i]) {
			struct tel_req *r =
			    enqueue(t, NULL, TP_SIM, sim_cmds[i], TEL_CMD_TIMEOUT_MS);
			if (r)
				r->sim = i;
		}
	pump(t);
}

static void on_retry(struct loop *l, void *data)
{
	struct tel *t = data;
	t->retry_timer = 0;
	modem_connect(t);
}

static void modem_lost(struct tel *t, const char *why)
{
	if (t->mfd < 0)
		return;
	log_warn("tel: real modem lost (%s): failing pending commands, reconnecting", why);
	loop_del_fd(t->d->loop, t->mfd);
	close(t->mfd);
	t->mfd = -1;
	if (t->call_vp)
		vp_line(t->call_vp, "NO CARRIER");
	call_reset(t);
	if (t->cur)
		finish_cur(t, AT_R_ERROR, "ERROR"); /* pumps: queued requests fail too */
	else
		pump(t);
	if (!t->retry_timer)
		t->retry_timer = loop_add_timer(t->d->loop, TEL_RETRY_MS, on_retry, t);
}

/* ---- a VP's commands ----------------------------------------------------------------- */

static void refuse_dial(struct tel *t, struct tel_vp *v, const char *number, const char *why)
{
	cleanup_json json_object *det = json_object_new_object();
	json_object_object_add(det, "to", json_object_new_string(number));
	json_object_object_add(det, "reason", json_object_new_string(why));
	char actor[48];
	snprintf(actor, sizeof actor, "vp:%s", v->name);
	cellsd_audit(t->d, v->name, actor, "tel.call.outgoing", "refused", det, NULL);
	log_info("tel: %s may not dial: %s", v->name, why);
	vp_line(v, "ERROR");
}

static void vp_dial(struct tel *t, struct tel_vp *v, const char *number)
{
	const char *fg = fg_current(t->d);
	if (!v->number[0])
		return refuse_dial(t, v, number, "no number assigned to this VP");
	if (!v->gateway[0])
		return refuse_dial(t, v, number, "no gateway access number assigned to this VP");
	if (!fg || strcmp(fg, v->name))
		return refuse_dial(t, v, number, "only the foreground VP may dial");
	if (!tel_policy_allows(t, v->name, TEL_ASK_OUTGOING))
		return refuse_dial(t, v, number, "policy forbids outgoing calls");
	if (t->mfd < 0)
		return refuse_dial(t, v, number, "the real modem is not available");
	if (t->call_vp)
		return refuse_dial(t, v, number, "a call is in progress");
	cleanup_json json_object *det = json_object_new_object();
	json_object_object_add(det, "to", json_object_new_string(number));
	json_object_object_add(det, "as", json_object_new_string(v->number));
	char actor[48];
	snprintf(actor, sizeof actor, "vp:%s", v->name);
	int r = cellsd_audit(t->d, v->name, actor, "tel.call.outgoing", "ok", det, NULL);
	if (r < 0) {
		vp_line(v, "ERROR"); /* fail closed: no unaudited call */
		return;
	}
	t->call_vp = v;
	v->call = CALL_DIALING;
	v->mt = false;
	snprintf(v->peer, sizeof v->peer, "%s", number);
	char line[AT_LINE_MAX];
	snprintf(line, sizeof line, "ATD%s;", v->gateway);
	enqueue(t, v, TP_DIAL, line, TEL_DIAL_TIMEOUT_MS);
	/* DTMF: the VP's digit, the target ('+' as '*'), then '#' */
	char tones[AT_NUMBER_MAX + 4];
	int n = snprintf(tones, sizeof tones, "%d%s#", v->digit, number);
	for (int i = 0; i < n; i++) {
		char c = tones[i] == '+' ? '*' : tones[i];
		snprintf(line, sizeof line, "AT+VTS=%c", c);
		struct tel_req *q = enqueue(t, v, TP_DTMF, line, TEL_CMD_TIMEOUT_MS);
		if (q)
			q->last = i == n - 1;
	}
	pump(t);
}

static void vp_bad_input(struct tel *t, struct tel_vp *v, const char *what)
{
	vp_line(v, "ERROR");
	v->bad_lines++;
	int64_t now = cells_mono_ns();
	if (v->bad_audit_ns && now - v->bad_audit_ns < TEL_BAD_AUDIT_EVERY_NS)
		return; /* rate-limited: a flooding VP cannot fill the audit log */
	v->bad_audit_ns = now;
	cleanup_json json_object *det = json_object_new_object();
	json_object_object_add(det, "reason", json_object_new_string(what));
	json_object_object_add(det, "rejected_lines", json_object_new_int64(v->bad_lines));
	char actor[48];
	snprintf(actor, sizeof actor, "vp:%s", v->name);
	cellsd_audit(t->d, v->name, actor, "tel.at.rejected", "refused", det, NULL);
}

static void on_vp_line(void *data, enum at_line_status st, const char *line, size_t len)
{
	struct tel_vp *v = data;
	struct tel *t = v->t;
	if (st == AT_LINE_TOO_LONG)
		return vp_bad_input(t, v, "line too long");
	if (st == AT_LINE_BINARY)
		return vp_bad_input(t, v, "non-text bytes");
	if (v->echo) {
		vp_write(v, line, len);
		vp_write(v, "\r", 1);
	}
	struct at_cmd c;
	if (at_parse_cmd(line, len, &c) < 0)
		return vp_bad_input(t, v, "unknown or malformed command");
	if (c.kind != AT_C_DIAL && queued_for(t, v) >= TEL_VP_QUEUE_MAX)
		return vp_line(v, "ERROR"); /* a VP cannot hog the real modem's queue */
	char b[AT_NUMBER_MAX + 48];
	struct tel_req *r;
	switch (c.kind) {
	case AT_C_INVALID:
		return vp_bad_input(t, v, "unknown command");
	case AT_C_AT:
		break;
	case AT_C_ECHO:
		v->echo = c.arg;
		break;
	case AT_C_CLIP_SET:
		v->clip = c.arg;
		break;
	case AT_C_CLIP_Q:
		snprintf(b, sizeof b, "+CLIP: %d,1", v->clip);
		vp_line(v, b);
		break;
	case AT_C_CPIN_Q:
	case AT_C_CIMI:
	case AT_C_CCID:
		r = enqueue(t, v, TP_SIM, at_cmd_name(c.kind), TEL_CMD_TIMEOUT_MS);
		if (r)
			r->sim = c.kind == AT_C_CPIN_Q ? SIM_CPIN
				 : c.kind == AT_C_CIMI ? SIM_CIMI
						       : SIM_CCID;
		pump(t);
		return;
	case AT_C_CREG_Q:
	case AT_C_COPS_Q:
	case AT_C_CSQ:
		/* the canonical command, never the VP's bytes, goes to the real modem */
		enqueue(t, v, TP_FORWARD, at_cmd_name(c.kind), TEL_CMD_TIMEOUT_MS);
		pump(t);
		return;
	case AT_C_DIAL:
		return vp_dial(t, v, c.number);
	case AT_C_ANSWER:
		if (t->call_vp != v || v->call != CALL_RINGING)
			return vp_line(v, "ERROR");
		enqueue(t, v, TP_ANSWER, "ATA", TEL_DIAL_TIMEOUT_MS);
		pump(t);
		return;
	case AT_C_HANGUP:
		if (t->call_vp != v)
			break; /* no call of this VP: nothing to hang up */
		dequeue_vp(t, v, TP_DTMF);
		enqueue(t, v, TP_HANGUP, "AT+CHUP", TEL_CMD_TIMEOUT_MS);
		pump(t);
		return;
	case AT_C_VTS:
		if (t->call_vp != v || v->call != CALL_ACTIVE)
			return vp_line(v, "ERROR");
		snprintf(b, sizeof b, "AT+VTS=%c", c.number[0]);
		enqueue(t, v, TP_FORWARD, b, TEL_CMD_TIMEOUT_MS);
		pump(t);
		return;
	case AT_C_CLCC:
		if (t->call_vp == v && v->call != CALL_IDLE) {
			int stat = v->call == CALL_ACTIVE ? 0 : v->call == CALL_DIALING ? 2 : 4;
			snprintf(b, sizeof b, "+CLCC: 1,%d,%d,0,0,\"%s\",%d", v->mt ? 1 : 0, stat,
				 v->peer, v->peer[0] == '+' ? 145 : 129);
			vp_line(v, b);
		}
		break;
	}
	vp_line(v, "OK");
}

static void on_vp_io(struct loop *l, int fd, uint32_t events, void *data)
{
	struct tel_vp *v = data;
	uint8_t b[512];
	for (int i = 0; i < 8; i++) {
		ssize_t n = read(fd, b, sizeof b);
		if (n <= 0)
			return;
		at_lineacc_feed(&v->acc, b, (size_t)n, on_vp_line, v);
		if (v->master != fd)
			return;
	}
}

/* ---- VP endpoints --------------------------------------------------------------------- */

/* Close a VP's virtual modem (the VP keeps its number). */
static void ep_close(struct tel *t, struct tel_vp *v)
{
	if (v->attach_timer)
		loop_cancel_timer(t->d->loop, v->attach_timer);
	v->attach_timer = 0;
	if (t->call_vp == v) {
		enqueue(t, NULL, TP_HANGUP, "AT+CHUP", TEL_CMD_TIMEOUT_MS);
		call_reset(t);
	}
	dequeue_vp(t, v, -1);
	if (t->cur && t->cur->vp == v)
		t->cur->vp = NULL;
	if (v->master >= 0) {
		loop_del_fd(t->d->loop, v->master);
		close(v->master);
	}
	if (v->slave_keep >= 0)
		close(v->slave_keep);
	v->master = v->slave_keep = -1;
	if (v->link[0])
		unlink(v->link);
	v->link[0] = v->slave[0] = '\0';
	at_lineacc_reset(&v->acc);
	v->echo = true; /* V.250 default; a RIL sends ATE0 first */
	v->clip = false;
}

/* Open a VP's virtual modem: a pty from ptmx, its slave linked at link (a symlink to
 * /dev/pts/N as the reader sees it). */
static int ep_open(struct tel *t, struct tel_vp *v, const char *ptmx, const char *link,
		   cells_err_t *err)
{
	unsigned n = 0, unlock = 0;
	v->master = open(ptmx, O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
	if (v->master < 0 || ioctl(v->master, TIOCSPTLCK, &unlock) < 0 ||
	    ioctl(v->master, TIOCGPTN, &n) < 0) {
		cells_err_sys(err, errno, "allocate a pty for %s from %s", v->name, ptmx);
		goto fail;
	}
	snprintf(v->slave, sizeof v->slave, "/dev/pts/%u", n);
	/* the peer through the master: right devpts instance, no path lookup */
	v->slave_keep = ioctl(v->master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	struct termios tio;
	if (v->slave_keep < 0 || tcgetattr(v->slave_keep, &tio) < 0) {
		cells_err_sys(err, errno, "open the slave of %s", v->slave);
		goto fail;
	}
	cfmakeraw(&tio); /* no echo by the line discipline: we would read our own output */
	tcsetattr(v->slave_keep, TCSANOW, &tio);
	snprintf(v->link, sizeof v->link, "%s", link);
	unlink(v->link);
	if (symlink(v->slave, v->link) < 0) {
		cells_err_sys(err, errno, "link %s", v->link);
		v->link[0] = '\0';
		goto fail;
	}
	if (loop_add_fd(t->d->loop, v->master, EPOLLIN, on_vp_io, v, err) < 0)
		goto fail;
	return 0;
fail:
	ep_close(t, v);
	return -1;
}

#define TEL_ATTACH_EVERY_MS 20
#define TEL_ATTACH_TRIES 250 /* 5 s for a starting VP to mount its devpts */

/* A running VP: once its init has mounted its own devpts (a different device than ours
 * at /proc/PID/root/dev/pts), allocate the pty there and link DEVCELLS/modem to it. */
static void on_attach(struct loop *l, void *data)
{
	struct tel_vp *v = data;
	struct tel *t = v->t;
	v->attach_timer = 0;
	pid_t pid = vpm_init_pid(t->d, v->name);
	if (pid <= 0)
		return; /* stopped meanwhile */
	char pts[64], ptmx[80], dcdir[PATH_MAX], link[PATH_MAX + 8];
	struct stat ours, theirs;
	snprintf(pts, sizeof pts, "/proc/%d/root/dev/pts", (int)pid);
	if (stat("/dev/pts", &ours) < 0 || stat(pts, &theirs) < 0 || ours.st_dev == theirs.st_dev) {
		if (++v->attach_tries < TEL_ATTACH_TRIES)
			v->attach_timer = loop_add_timer(l, TEL_ATTACH_EVERY_MS, on_attach, v);
		else
			log_warn("tel: VP %s has no devpts of its own: no virtual modem", v->name);
		return;
	}
	cells_err_t err;
	snprintf(ptmx, sizeof ptmx, "%s/ptmx", pts);
	if (!vpm_devcells_dir(t->d, v->name, dcdir)) {
		log_warn("tel: VP %s: no devcells dir", v->name);
		return;
	}
	snprintf(link, sizeof link, "%s/modem", dcdir);
	if (ep_open(t, v, ptmx, link, &err) < 0) {
		log_warn("tel: VP %s: virtual modem: %s", v->name, err.msg);
		return;
	}
	/* the slave is the VP root's (its user namespace's range), not host root's */
	uid_t uid;
	gid_t gid;
	if (kidmap_root_of(pid, &uid, &gid, &err) < 0 ||
	    (fchown(v->slave_keep, uid, gid) < 0 && cells_err_sys(&err, errno, "chown") < 0)) {
		log_warn("tel: VP %s: give its modem to its root: %s", v->name, err.msg);
		ep_close(t, v);
		return;
	}
	struct stat st;
	if (fstat(v->slave_keep, &st) < 0 ||
	    vpm_dev_set(t->d, v->name, 'c', major(st.st_rdev), minor(st.st_rdev), true, &err) < 0) {
		log_warn("tel: VP %s: allow its modem in the device cgroup: %s", v->name, err.msg);
		ep_close(t, v);
		return;
	}
	log_info("tel: VP %s: virtual modem /dev/cells/modem -> %s", v->name, v->slave);
}

/* Give the VP its virtual modem: a VP the VP manager knows gets it in its own devpts
 * while it runs (vpm listeners); any other name (host-level tests, tools) gets a pty from
 * the host's /dev/ptmx linked at RUN_DIR/tel/NAME.pty. A device node made with mknod
 * does NOT work for a pty slave (the kernel opens pts slaves only through their devpts
 * dentry: EIO otherwise), hence the VP's own devpts and a symlink
 * DEVCELLS/modem -> /dev/pts/N, i.e. /dev/cells/modem inside the VP. */
static int vp_attach(struct tel *t, struct tel_vp *v, cells_err_t *err)
{
	if (t->d->vpm && vpm_exists(t->d, v->name)) {
		if (vpm_running(t->d, v->name) && !v->attach_timer && v->master < 0) {
			v->attach_tries = 0;
			on_attach(t->d->loop, v);
		}
		return 0;
	}
	char dir[PATH_MAX], link[PATH_MAX];
	snprintf(dir, sizeof dir, "%s/tel", t->d->run_dir);
	if (cells_mkdir_p(dir, 0700, err) < 0)
		return -1;
	if (snprintf(link, sizeof link, "%s/%s.pty", dir, v->name) >= (int)sizeof link)
		return cells_err_set(err, ENAMETOOLONG, "run dir path too long");
	return ep_open(t, v, "/dev/ptmx", link, err);
}

static void on_vp_start(struct cellsd *d, const char *vp, void *data)
{
	struct tel_vp *v = d->tel ? vp_by_name(d->tel, vp) : NULL;
	if (!v)
		return;
	ep_close(d->tel, v); /* a host-level endpoint of the same name, if any */
	v->attach_tries = 0;
	v->attach_timer = loop_add_timer(d->loop, TEL_ATTACH_EVERY_MS, on_attach, v);
}

static void on_vp_stop(struct cellsd *d, const char *vp, void *data)
{
	struct tel_vp *v = d->tel ? vp_by_name(d->tel, vp) : NULL;
	if (!v)
		return;
	ep_close(d->tel, v);
	pump(d->tel);
}

static void vp_free(struct tel *t, struct tel_vp *v)
{
	ep_close(t, v);
	for (struct tel_vp **pp = &t->vps; *pp; pp = &(*pp)->next)
		if (*pp == v) {
			*pp = v->next;
			break;
		}
	free(v);
}

/* Apply an assignment live (number NULL: revoke). */
static int tel_apply(struct tel *t, const char *vp, const char *number, int digit,
		     const char *gateway, cells_err_t *err)
{
	struct tel_vp *v = vp_by_name(t, vp);
	if (!number) {
		if (v) {
			if (t->call_vp == v)
				vp_line(v, "NO CARRIER");
			vp_free(t, v);
			pump(t);
		}
		return 0;
	}
	if (!v) {
		v = calloc(1, sizeof *v);
		if (!v)
			return cells_err_sys(err, ENOMEM, "tel vp");
		v->t = t;
		v->master = v->slave_keep = -1;
		v->echo = true;
		snprintf(v->name, sizeof v->name, "%s", vp);
		v->next = t->vps;
		t->vps = v;
		if (vp_attach(t, v, err) < 0) {
			vp_free(t, v);
			return -1;
		}
	}
	snprintf(v->number, sizeof v->number, "%s", number);
	snprintf(v->gateway, sizeof v->gateway, "%s", gateway);
	v->digit = digit;
	return 0;
}

/* ---- start / stop -------------------------------------------------------------------- */

int tel_start(struct cellsd *d, const char *modem_path, cells_err_t *err)
{
	if (tel_migrate(d->db, err) < 0)
		return cells_err_prefix(err, "tel");
	struct tel *t = calloc(1, sizeof *t);
	if (!t)
		return cells_err_sys(err, ENOMEM, "tel");
	t->d = d;
	t->mfd = -1;
	cells_wbuf_init(&t->cur_text, 4096);
	d->tel = t;
	cleanup_stmt sqlite3_stmt *q = NULL;
	if (sqldb_prepare(d->db, "SELECT vp, number, digit, gateway FROM tel_numbers", &q, err) < 0)
		goto fail;
	int rc;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (tel_apply(t, (const char *)sqlite3_column_text(q, 0),
			      (const char *)sqlite3_column_text(q, 1), sqlite3_column_int(q, 2),
			      (const char *)sqlite3_column_text(q, 3), err) < 0)
			goto fail;
	}
	if (rc != SQLITE_DONE) {
		sqldb_err(d->db, "tel numbers", err);
		goto fail;
	}
	/* listeners look d->tel up when called: tel_stop() may run before vpm_shutdown() */
	static const struct vpm_listener lis = {.on_start = on_vp_start, .on_stop = on_vp_stop};
	static bool registered;
	if (d->vpm && !registered) {
		if (vpm_add_listener(d, &lis) < 0) {
			cells_err_set(err, ENOSPC, "register VP listener");
			goto fail;
		}
		registered = true;
	}
	if (modem_path) {
		snprintf(t->modem_path, sizeof t->modem_path, "%s", modem_path);
		modem_connect(t);
	}
	return 0;
fail:
	tel_stop(d);
	return cells_err_prefix(err, "tel");
}

void tel_stop(struct cellsd *d)
{
	struct tel *t = d->tel;
	if (!t)
		return;
	if (t->retry_timer)
		loop_cancel_timer(d->loop, t->retry_timer);
	if (t->cur_timer)
		loop_cancel_timer(d->loop, t->cur_timer);
	if (t->mfd >= 0) {
		loop_del_fd(d->loop, t->mfd);
		close(t->mfd);
	}
	while (t->vps)
		vp_free(t, t->vps);
	free(t->cur);
	while (t->q_head) {
		struct tel_req *r = t->q_head;
		t->q_head = r->next;
		free(r);
	}
	for (int i = 0; i < SIM_N; i++)
		free(t->sim_rec[i]);
	cells_wbuf_free(&t->cur_text);
	free(t);
	d->tel = NULL;
}

/* ---- signed commands ------------------------------------------------------------------ */

static bool e164(const char *s)
{
	return s && s[0] == '+' && at_valid_number(s) && !strpbrk(s, "*#") && strlen(s) >= 4 &&
	       strlen(s) <= 16;
}

static int audit_cmd(struct cellsd *d, const char *vp, const char *event, const char *outcome,
		     const Cells__V1__Command *cmd, json_object *det, cells_err_t *err)
{
	json_object_object_add(det, "command_id",
			       json_object_new_string(cmd->command_id ? cmd->command_id : ""));
	int r = cellsd_audit(d, vp, "mdm", event, outcome, det, err);
	json_object_put(det);
	return r;
}

static int refuse_cmd(struct cellsd *d, const char *vp, const char *event,
		      const Cells__V1__Command *cmd, cells_err_t *err, int code, const char *why)
{
	json_object *det = json_object_new_object();
	json_object_object_add(det, "reason", json_object_new_string(why));
	audit_cmd(d, vp, event, "refused", cmd, det, NULL);
	return cells_err_set(err, code, "%s: %s", event, why);
}

int tel_cmd_assign(struct cellsd *d, const Cells__V1__Command *cmd, cells_err_t *err)
{
	const char *ev = "tel.number.assign";
	if (!cmd || cmd->action_case != CELLS__V1__COMMAND__ACTION_ASSIGN_NUMBER ||
	    !cmd->assign_number)
		return cells_err_set(err, EINVAL, "%s: not an assign_number command", ev);
	const Cells__V1__AssignNumber *a = cmd->assign_number;
	const char *vp = a->vp ? a->vp : "";
	cells_err_t why;
	if (cells_valid_name(vp, &why) < 0)
		return refuse_cmd(d, "", ev, cmd, err, EINVAL, why.msg);
	if (!e164(a->number))
		return refuse_cmd(d, vp, ev, cmd, err, EINVAL, "number is not an E.164 number");
	if (a->digit > 9)
		return refuse_cmd(d, vp, ev, cmd, err, EINVAL, "digit is not 0..9");
	const char *gw = a->gateway ? a->gateway : ""; /* empty: no outgoing calls */
	if (gw[0] && !e164(gw))
		return refuse_cmd(d, vp, ev, cmd, err, EINVAL,
				  "gateway access number is not an E.164 number");
	cleanup_stmt sqlite3_stmt *q = NULL;
	cleanup_stmt sqlite3_stmt *u = NULL;
	if (tel_migrate(d->db, err) < 0 || sqldb_begin(d->db, err) < 0)
		return cells_err_prefix(err, "%s", ev);
	if (sqldb_prepare(d->db,
			  "SELECT vp FROM tel_numbers WHERE vp<>?1 AND (digit=?2 OR number=?3)", &q,
			  err) < 0)
		goto fail;
	sqlite3_bind_text(q, 1, vp, -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 2, (int)a->digit);
	sqlite3_bind_text(q, 3, a->number, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW) {
		char msg[128];
		snprintf(msg, sizeof msg, "number or digit already assigned to VP %s",
			 (const char *)sqlite3_column_text(q, 0));
		sqldb_rollback(d->db);
		return refuse_cmd(d, vp, ev, cmd, err, EEXIST, msg);
	}
	if (sqldb_prepare(d->db,
			  "INSERT OR REPLACE INTO tel_numbers(vp, number, digit, gateway, "
			  "command_id, updated_us) VALUES(?,?,?,?,?,?)",
			  &u, err) < 0)
		goto fail;
	sqlite3_bind_text(u, 1, vp, -1, SQLITE_STATIC);
	sqlite3_bind_text(u, 2, a->number, -1, SQLITE_STATIC);
	sqlite3_bind_int(u, 3, (int)a->digit);
	sqlite3_bind_text(u, 4, gw, -1, SQLITE_STATIC);
	sqlite3_bind_text(u, 5, cmd->command_id ? cmd->command_id : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(u, 6, cells_now_us());
	if (sqlite3_step(u) != SQLITE_DONE) {
		sqldb_err(d->db, "store number", err);
		goto fail;
	}
	json_object *det = json_object_new_object();
	json_object_object_add(det, "number", json_object_new_string(a->number));
	json_object_object_add(det, "digit", json_object_new_int((int)a->digit));
	json_object_object_add(det, "gateway", json_object_new_string(gw));
	if (audit_cmd(d, vp, ev, "ok", cmd, det, err) < 0)
		goto fail; /* fail closed: an unaudited assignment is not made */
	if (sqldb_commit(d->db, err) < 0)
		return cells_err_prefix(err, "%s", ev);
	if (d->tel && tel_apply(d->tel, vp, a->number, (int)a->digit, gw, err) < 0)
		return cells_err_prefix(err, "%s: stored, but not applied live", ev);
	log_info("tel: %s answers to %s (digit %u)", vp, a->number, a->digit);
	return 0;
fail:
	sqldb_rollback(d->db);
	return cells_err_prefix(err, "%s", ev);
}

int tel_cmd_revoke(struct cellsd *d, const Cells__V1__Command *cmd, cells_err_t *err)
{
	const char *ev = "tel.number.revoke";
	if (!cmd || cmd->action_case != CELLS__V1__COMMAND__ACTION_REVOKE_NUMBER ||
	    !cmd->revoke_number)
		return cells_err_set(err, EINVAL, "%s: not a revoke_number command", ev);
	const char *vp = cmd->revoke_number->vp ? cmd->revoke_number->vp : "";
	cells_err_t why;
	if (cells_valid_name(vp, &why) < 0)
		return refuse_cmd(d, "", ev, cmd, err, EINVAL, why.msg);
	cleanup_stmt sqlite3_stmt *u = NULL;
	if (tel_migrate(d->db, err) < 0 || sqldb_begin(d->db, err) < 0)
		return cells_err_prefix(err, "%s", ev);
	if (sqldb_prepare(d->db, "DELETE FROM tel_numbers WHERE vp=?", &u, err) < 0)
		goto fail;
	sqlite3_bind_text(u, 1, vp, -1, SQLITE_STATIC);
	if (sqlite3_step(u) != SQLITE_DONE) {
		sqldb_err(d->db, "delete number", err);
		goto fail;
	}
	json_object *det = json_object_new_object();
	json_object_object_add(det, "had_number",
			       json_object_new_boolean(sqlite3_changes(d->db) > 0));
	if (audit_cmd(d, vp, ev, "ok", cmd, det, err) < 0)
		goto fail;
	if (sqldb_commit(d->db, err) < 0)
		return cells_err_prefix(err, "%s", ev);
	if (d->tel)
		tel_apply(d->tel, vp, NULL, 0, NULL, err);
	log_info("tel: %s has no number any more", vp);
	return 0;
fail:
	sqldb_rollback(d->db);
	return cells_err_prefix(err, "%s", ev);
}

int tel_cmd_assign_result(struct cellsd *d, const Cells__V1__Command *cmd,
			  Cells__V1__CommandResult *res, cells_err_t *err)
{
	(void)res;
	return tel_cmd_assign(d, cmd, err);
}

int tel_cmd_revoke_result(struct cellsd *d, const Cells__V1__Command *cmd,
			  Cells__V1__CommandResult *res, cells_err_t *err)
{
	(void)res;
	return tel_cmd_revoke(d, cmd, err);
}

/* ---- status ------------------------------------------------------------------------ */

int tel_status_json(struct cellsd *d, json_object *o, cells_err_t *err)
{
	struct tel *t = d->tel;
	if (!t)
		return cells_err_set(err, ENODEV, "telephony proxy not running");
	json_object *m = json_object_new_object();
	json_object_object_add(m, "path", json_object_new_string(t->modem_path));
	json_object_object_add(m, "connected", json_object_new_boolean(t->mfd >= 0));
	json_object_object_add(m, "connects", json_object_new_int64(t->connects));
	bool sim = true;
	for (int i = 0; i < SIM_N; i++)
		sim = sim && t->sim_rec[i];
	json_object_object_add(m, "sim_recorded", json_object_new_boolean(sim));
	json_object_object_add(m, "sim_queries_sent", json_object_new_int64(t->sim_sent));
	json_object_object_add(o, "modem", m);
	const char *fg = fg_current(t->d);
	json_object_object_add(o, "foreground", json_object_new_string(fg ? fg : ""));
	json_object *a = json_object_new_array();
	for (struct tel_vp *v = t->vps; v; v = v->next) {
		json_object *e = json_object_new_object();
		json_object_object_add(e, "vp", json_object_new_string(v->name));
		json_object_object_add(e, "number", json_object_new_string(v->number));
		json_object_object_add(e, "digit", json_object_new_int(v->digit));
		json_object_object_add(e, "gateway", json_object_new_string(v->gateway));
		json_object_object_add(e, "pty", json_object_new_string(v->link));
		json_object_object_add(e, "call", json_object_new_string(call_names[v->call]));
		json_object_object_add(e, "rejected_lines", json_object_new_int64(v->bad_lines));
		json_object_array_add(a, e);
	}
	json_object_object_add(o, "vps", a);
	return 0;
}
