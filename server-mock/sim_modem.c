/* sim_modem.c - the carrier modem + VoIP gateway simulator (see sim_modem.h). */
#include "sim_modem.h"
#include "buf.h"
#include "cleanup.h"
#include "log.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#define SIM_LINE_MAX 512

enum sim_call { SC_IDLE, SC_RINGING, SC_ACTIVE };

struct sim_modem {
	char link[PATH_MAX], dir[PATH_MAX], gateway[40], imsi[24], iccid[32];
	int master, slave_keep, lfd;
	FILE *log;
	pthread_t th;
	atomic_bool stop;
	char line[SIM_LINE_MAX + 1];
	size_t len;
	bool echo;
	enum sim_call call;
	bool to_gateway;
	char dtmf[64];
	size_t ndtmf;
	char caller[48];
};

static int sock_path(const char *dir, struct sockaddr_un *sa, cells_err_t *err)
{
	memset(sa, 0, sizeof *sa);
	sa->sun_family = AF_UNIX;
	if (snprintf(sa->sun_path, sizeof sa->sun_path, "%s/modem.sock", dir) >=
	    (int)sizeof sa->sun_path)
		return cells_err_set(err, ENAMETOOLONG, "simulator dir path too long: %s", dir);
	return 0;
}

static void out(struct sim_modem *m, const char *s)
{
	if (m->master >= 0 && cells_write_all(m->master, s, strlen(s)) < 0)
		log_debug("modem-sim: write: %s", strerror(errno));
}

static void result(struct sim_modem *m, const char *s)
{
	char b[SIM_LINE_MAX + 8];
	snprintf(b, sizeof b, "\r\n%s\r\n", s);
	out(m, b);
}

/* Look a gateway number up: by number (returns digit) or by digit (fills number). */
static int gw_lookup(const char *dir, const char *number, int digit, char *num_out, size_t n)
{
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s/gateway.tsv", dir);
	cleanup_file FILE *f = fopen(p, "re");
	char l[128], num[64];
	int d;
	while (f && fgets(l, sizeof l, f)) {
		if (sscanf(l, "%63s %d", num, &d) != 2)
			continue;
		if (number && !strcmp(num, number))
			return d;
		if (!number && d == digit) {
			snprintf(num_out, n, "%s", num);
			return d;
		}
	}
	return -1;
}

int sim_gateway_assign(const char *dir, const char *number, unsigned digit, cells_err_t *err)
{
	if (digit > 9 || !number[0] || strlen(number) > 32 ||
	    strspn(number + (number[0] == '+'), "0123456789") !=
		strlen(number) - (number[0] == '+'))
		return cells_err_set(err, EINVAL, "gateway assign: bad number or digit");
	if (cells_mkdir_p(dir, 0700, err) < 0)
		return -1;
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s/gateway.tsv", dir);
	cells_wbuf_t b;
	cells_wbuf_init(&b, 64 * 1024);
	cleanup_file FILE *f = fopen(p, "re");
	char l[128], num[64];
	int d;
	while (f && fgets(l, sizeof l, f))
		if (sscanf(l, "%63s %d", num, &d) == 2 && strcmp(num, number) && d != (int)digit)
			cells_wbuf_printf(&b, "%s %d\n", num, d);
	cells_wbuf_printf(&b, "%s %u\n", number, digit);
	int r = cells_write_file_atomic(p, b.p, b.len, 0600, err);
	cells_wbuf_free(&b);
	return r;
}

static void gateway_outgoing(struct sim_modem *m)
{
	/* "<digit><target>#": the VP's digit picks the number the callee sees */
	m->dtmf[m->ndtmf] = '\0';
	char from[64] = "", to[64];
	int digit = m->dtmf[0] - '0';
	size_t n = 0;
	for (size_t i = 1; i + 1 < m->ndtmf && n + 1 < sizeof to; i++)
		to[n++] = m->dtmf[i] == '*' ? '+' : m->dtmf[i];
	to[n] = '\0';
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s/calls.log", m->dir);
	cleanup_file FILE *f = fopen(p, "ae");
	if (digit < 0 || digit > 9 || gw_lookup(m->dir, NULL, digit, from, sizeof from) < 0) {
		if (f)
			fprintf(f, "rejected dtmf=%s (no VP has this digit)\n", m->dtmf);
		return;
	}
	if (f)
		fprintf(f, "from=%s to=%s\n", from, to);
}

static void on_command(struct sim_modem *m, char *c)
{
	if (m->log) {
		fprintf(m->log, "%s\n", c);
		fflush(m->log);
	}
	if (m->echo) {
		out(m, c);
		out(m, "\r");
	}
	char b[128];
	if (!strcasecmp(c, "AT") || !strcasecmp(c, "AT+CLIP=1") || !strcasecmp(c, "AT+CLIP=0"))
		result(m, "OK");
	else if (!strcasecmp(c, "ATE0") || !strcasecmp(c, "ATE1")) {
		m->echo = c[3] == '1';
		result(m, "OK");
	} else if (!strcasecmp(c, "AT+CPIN?")) {
		result(m, "+CPIN: READY");
		result(m, "OK");
	} else if (!strcasecmp(c, "AT+CIMI")) {
		result(m, m->imsi);
		result(m, "OK");
	} else if (!strcasecmp(c, "AT+CCID")) {
		snprintf(b, sizeof b, "+CCID: %s", m->iccid);
		result(m, b);
		result(m, "OK");
	} else if (!strcasecmp(c, "AT+CREG?")) {
		result(m, "+CREG: 0,1");
		result(m, "OK");
	} else if (!strcasecmp(c, "AT+COPS?")) {
		result(m, "+COPS: 0,0,\"Cells Sim\",7");
		result(m, "OK");
	} else if (!strcasecmp(c, "AT+CSQ")) {
		result(m, "+CSQ: 24,99");
		result(m, "OK");
	} else if (!strcasecmp(c, "AT+CLCC")) {
		if (m->call != SC_IDLE) {
			snprintf(b, sizeof b, "+CLCC: 1,%d,%d,0,0,\"%s\",145",
				 m->to_gateway ? 0 : 1, m->call == SC_ACTIVE ? 0 : 4, m->caller);
			result(m, b);
		}
		result(m, "OK");
	} else if (!strcasecmp(c, "ATA")) {
		if (m->call == SC_RINGING) {
			m->call = SC_ACTIVE;
			result(m, "OK");
		} else
			result(m, "NO CARRIER");
	} else if (!strcasecmp(c, "ATH") || !strcasecmp(c, "ATH0") || !strcasecmp(c, "AT+CHUP")) {
		m->call = SC_IDLE;
		m->to_gateway = false;
		result(m, "OK");
	} else if ((c[0] == 'A' || c[0] == 'a') && (c[1] == 'T' || c[1] == 't') &&
		   (c[2] == 'D' || c[2] == 'd') && strlen(c) > 4 && c[strlen(c) - 1] == ';') {
		if (m->call != SC_IDLE) {
			result(m, "BUSY");
			return;
		}
		snprintf(m->caller, sizeof m->caller, "%.*s", (int)(strlen(c) - 4), c + 3);
		m->to_gateway = !strcmp(m->caller, m->gateway);
		m->ndtmf = 0;
		m->call = SC_ACTIVE;
		result(m, "OK");
	} else if (!strncasecmp(c, "AT+VTS=", 7) && strlen(c) == 8) {
		if (m->call != SC_ACTIVE) {
			result(m, "ERROR");
			return;
		}
		if (m->to_gateway && m->ndtmf + 1 < sizeof m->dtmf) {
			m->dtmf[m->ndtmf++] = c[7];
			if (c[7] == '#') {
				gateway_outgoing(m);
				m->ndtmf = 0;
			}
		}
		result(m, "OK");
	} else
		result(m, "ERROR");
}

static void on_bytes(struct sim_modem *m, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\r' || p[i] == '\n') {
			if (m->len) {
				m->line[m->len] = '\0';
				on_command(m, m->line);
			}
			m->len = 0;
		} else if (m->len < SIM_LINE_MAX)
			m->line[m->len++] = p[i];
	}
}

static void pty_close(struct sim_modem *m)
{
	if (m->master >= 0)
		close(m->master);
	if (m->slave_keep >= 0)
		close(m->slave_keep);
	m->master = m->slave_keep = -1;
	unlink(m->link);
}

static int pty_open(struct sim_modem *m, cells_err_t *err)
{
	char slave[64], tmp[PATH_MAX + 8];
	m->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m->master < 0 || grantpt(m->master) < 0 || unlockpt(m->master) < 0 ||
	    ptsname_r(m->master, slave, sizeof slave) != 0) {
		cells_err_sys(err, errno, "allocate a pty");
		pty_close(m);
		return -1;
	}
	/* keep a slave open: the master never sees a hang-up while cellsd reconnects */
	m->slave_keep = open(slave, O_RDWR | O_NOCTTY | O_CLOEXEC);
	struct termios tio;
	if (m->slave_keep >= 0 && tcgetattr(m->slave_keep, &tio) == 0) {
		cfmakeraw(&tio);
		tcsetattr(m->slave_keep, TCSANOW, &tio);
	}
	snprintf(tmp, sizeof tmp, "%s.new", m->link);
	unlink(tmp);
	if (symlink(slave, tmp) < 0 || rename(tmp, m->link) < 0) {
		cells_err_sys(err, errno, "link %s", m->link);
		pty_close(m);
		return -1;
	}
	m->echo = true;
	m->len = 0;
	m->call = SC_IDLE;
	return 0;
}

static void ctl_request(struct sim_modem *m, char *req, char *rep, size_t n)
{
	char *save = NULL, *w = strtok_r(req, " \r\n", &save);
	if (!w) {
		snprintf(rep, n, "error empty request");
	} else if (!strcmp(w, "call")) {
		char *num = strtok_r(NULL, " \r\n", &save),
		     *caller = strtok_r(NULL, " \r\n", &save);
		int d = num ? gw_lookup(m->dir, num, -1, NULL, 0) : -1;
		if (!num || !caller || strlen(caller) > 30)
			snprintf(rep, n, "error usage: call NUMBER CALLER");
		else if (d < 0)
			snprintf(rep, n, "error the gateway serves no number %s", num);
		else if (m->master < 0)
			snprintf(rep, n, "error the modem is switched off");
		else if (m->call != SC_IDLE)
			snprintf(rep, n, "error busy");
		else {
			m->call = SC_RINGING;
			m->to_gateway = false;
			snprintf(m->caller, sizeof m->caller, "%s%d", caller, d);
			char b[96];
			snprintf(b, sizeof b, "\r\nRING\r\n\r\n+CLIP: \"%s\",145,,,,0\r\n",
				 m->caller);
			out(m, b);
			snprintf(rep, n, "ok ringing caller-id %s", m->caller);
		}
	} else if (!strcmp(w, "ring")) {
		if (m->call == SC_RINGING) {
			char b[96];
			snprintf(b, sizeof b, "\r\nRING\r\n\r\n+CLIP: \"%s\",145,,,,0\r\n",
				 m->caller);
			out(m, b);
			snprintf(rep, n, "ok");
		} else
			snprintf(rep, n, "error not ringing");
	} else if (!strcmp(w, "hangup")) {
		if (m->call != SC_IDLE)
			result(m, "NO CARRIER");
		m->call = SC_IDLE;
		snprintf(rep, n, "ok");
	} else if (!strcmp(w, "vanish")) {
		pty_close(m);
		snprintf(rep, n, "ok");
	} else if (!strcmp(w, "return")) {
		cells_err_t err;
		if (m->master < 0 && pty_open(m, &err) < 0)
			snprintf(rep, n, "error %s", err.msg);
		else
			snprintf(rep, n, "ok");
	} else if (!strcmp(w, "state")) {
		snprintf(rep, n, "ok %s",
			 m->call == SC_IDLE	 ? "idle"
			 : m->call == SC_RINGING ? "ringing"
						 : "active");
	} else
		snprintf(rep, n, "error unknown request");
}

static void ctl_accept(struct sim_modem *m)
{
	cleanup_close int c = accept4(m->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0)
		return;
	struct timeval tv = {2, 0};
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	char req[256], rep[256];
	ssize_t r = read(c, req, sizeof req - 1);
	if (r <= 0)
		return;
	req[r] = '\0';
	ctl_request(m, req, rep, sizeof rep - 1);
	strcat(rep, "\n");
	cells_write_all(c, rep, strlen(rep));
}

static void *sim_thread(void *data)
{
	struct sim_modem *m = data;
	while (!atomic_load(&m->stop)) {
		struct pollfd p[2] = {{m->lfd, POLLIN, 0}, {m->master, POLLIN, 0}};
		int n = poll(p, m->master >= 0 ? 2 : 1, 100);
		if (n <= 0)
			continue;
		if (p[0].revents & POLLIN)
			ctl_accept(m);
		if (m->master >= 0 && (p[1].revents & POLLIN)) {
			char b[1024];
			ssize_t r = read(m->master, b, sizeof b);
			if (r > 0)
				on_bytes(m, b, (size_t)r);
		}
	}
	return NULL;
}

int sim_modem_start(const struct sim_modem_opts *o, struct sim_modem **out_m, cells_err_t *err)
{
	struct sim_modem *m = calloc(1, sizeof *m);
	if (!m)
		return cells_err_sys(err, ENOMEM, "modem simulator");
	m->master = m->slave_keep = m->lfd = -1;
	snprintf(m->link, sizeof m->link, "%s", o->pty_link);
	snprintf(m->dir, sizeof m->dir, "%s", o->dir);
	snprintf(m->gateway, sizeof m->gateway, "%s", o->gateway ? o->gateway : "+15550000");
	snprintf(m->imsi, sizeof m->imsi, "%s", o->imsi ? o->imsi : "001010123456789");
	snprintf(m->iccid, sizeof m->iccid, "%s", o->iccid ? o->iccid : "8901001012345678901");
	struct sockaddr_un sa;
	if (cells_mkdir_p(m->dir, 0700, err) < 0 || sock_path(m->dir, &sa, err) < 0)
		goto fail;
	char p[PATH_MAX + 16];
	snprintf(p, sizeof p, "%s/modem.log", m->dir);
	m->log = fopen(p, "ae");
	m->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	unlink(sa.sun_path);
	if (m->lfd < 0 || bind(m->lfd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
	    listen(m->lfd, 16) < 0) {
		cells_err_sys(err, errno, "control socket %s", sa.sun_path);
		goto fail;
	}
	if (pty_open(m, err) < 0)
		goto fail;
	if (pthread_create(&m->th, NULL, sim_thread, m) != 0) {
		cells_err_sys(err, EAGAIN, "simulator thread");
		goto fail;
	}
	*out_m = m;
	return 0;
fail:
	pty_close(m);
	if (m->lfd >= 0)
		close(m->lfd);
	if (m->log)
		fclose(m->log);
	free(m);
	return -1;
}

void sim_modem_stop(struct sim_modem *m)
{
	if (!m)
		return;
	atomic_store(&m->stop, true);
	pthread_join(m->th, NULL);
	pty_close(m);
	close(m->lfd);
	struct sockaddr_un sa;
	if (sock_path(m->dir, &sa, NULL) == 0)
		unlink(sa.sun_path);
	if (m->log)
		fclose(m->log);
	free(m);
}

int sim_modem_ctl(const char *dir, const char *request, char *reply, size_t n, cells_err_t *err)
{
	struct sockaddr_un sa;
	if (sock_path(dir, &sa, err) < 0)
		return -1;
	cleanup_close int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof sa) < 0)
		return cells_err_sys(err, errno,
				     "modem simulator at %s (is `cells-mdm modem-sim` "
				     "running?)",
				     sa.sun_path);
	if (cells_write_all(s, request, strlen(request)) < 0)
		return cells_err_sys(err, errno, "send to the modem simulator");
	size_t got = 0;
	while (got + 1 < n) {
		ssize_t r = read(s, reply + got, n - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	reply[got] = '\0';
	reply[strcspn(reply, "\n")] = '\0';
	if (strncmp(reply, "ok", 2))
		return cells_err_set(err, EIO, "%s",
				     reply[0] ? reply + (strncmp(reply, "error ", 6) ? 0 : 6)
					      : "no reply");
	return 0;
}
