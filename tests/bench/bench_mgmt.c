/* bench_mgmt.c - load tool for cells-mdm: holds N mutual-TLS websocket device sessions
 * (all in this one process, one lws client context) against one `cells-mdm serve`, and
 * measures push -> acknowledge latency and the fan-out of one signed policy to all N.
 *
 * Usage: bench_mgmt STATE_DIR HOST PORT N [SERVER_PID]
 * The devices are real: each has its own Ed25519 key, a CSR, a certificate issued by the
 * MDM's CA (mdm_ca_issue) and a row in the MDM's database (mdm_store). Each session
 * answers a policy with RESULT_DONE and waits for the server's Ack; queue entries are
 * added through mdm_store exactly as `cells-mdm policy push` does (signed per device). */
#include "cleanup.h"
#include "cleanup_ssl.h"
#include "mdm.h"
#include "mdm_store.h"
#include "pol_sig.h"
#include "util.h"

#include <errno.h>
#include <signal.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <libwebsockets.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

struct dev {
	char id[33];
	EVP_PKEY *key;
	X509 *cert;
	struct lws *wsi;
	bool up, hello_done, want_hello;
	char pending_result[48]; /* correlation id of a result to send */
	char result_id[48];
	int64_t push_ns; /* when the current entry was queued (0: acknowledged) */
	int64_t got_ns, ack_ns;
	/* BENCH_KILL: the policy entry's id as first received, how many times a policy
	 * was applied (a new id: applied; the same id again: answered, not applied), and
	 * a result sent and not acknowledged yet (sent again after a reconnect, as the
	 * agent's outbox does) */
	char pol_id[48];
	unsigned applied;
	bool result_unacked;
	uint8_t *rx;
	size_t rx_len;
};

static struct dev *D;
static size_t ND, connecting, up, helloed;
static struct lws_context *ctx;
static struct lws_vhost *vh;
static const char *host;
static int ports[8], nports; /* PORT[,PORT...]: device i connects to ports[i % nports] */
static struct mdm M;
static int64_t *lat;
static size_t nlat;
static size_t acked_total;

static int64_t now_ns(void)
{
	return cells_mono_ns();
}

static size_t next_dev; /* devices [0, next_dev) have been asked to connect */
/* BENCH_KILL=1: the front end of SERVER_PID (port index 0) is SIGKILLed when half of the
 * fan-out is delivered; its devices reconnect to the other front ends */
static bool killed;
static int dead_port = -1;
static struct dev **redo; /* devices to reconnect */
static size_t nredo;

/* The device whose handshake this is: one of the last ones asked to connect (at most 64
 * are connecting at once), so look there first; the whole list only as a fallback. */
static struct dev *dev_of_ssl(SSL *ssl)
{
	for (size_t i = next_dev; i-- > 0 && next_dev - i <= 256;)
		if (D[i].wsi && lws_get_ssl(D[i].wsi) == ssl)
			return &D[i];
	for (size_t i = 0; i < ND; i++)
		if (D[i].wsi && lws_get_ssl(D[i].wsi) == ssl)
			return &D[i];
	return NULL;
}

static int cert_cb(SSL *ssl, void *arg)
{
	struct dev *d = dev_of_ssl(ssl);
	if (!d)
		return 0;
	return SSL_use_certificate(ssl, d->cert) == 1 && SSL_use_PrivateKey(ssl, d->key) == 1;
}

static void send_env(struct dev *d, Cells__V1__Envelope *env)
{
	cells_err_t err;
	cleanup_free uint8_t *b = NULL;
	size_t n;
	if (cells_envelope_encode(env, &b, &n, &err) < 0)
		return;
	uint8_t *buf = malloc(LWS_PRE + n);
	if (!buf)
		return;
	memcpy(buf + LWS_PRE, b, n);
	lws_write(d->wsi, buf + LWS_PRE, n, LWS_WRITE_BINARY);
	free(buf);
}

static int cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	struct dev *d = user;
	switch (reason) {
	case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_CLIENT_VERIFY_CERTS: {
		SSL_CTX *sc = user;
		char p[PATH_MAX];
		mdm_path(&M, "ca.pem", p);
		SSL_CTX_load_verify_locations(sc, p, NULL);
		SSL_CTX_set_min_proto_version(sc, TLS1_3_VERSION);
		SSL_CTX_set_cert_cb(sc, cert_cb, NULL);
		return 0;
	}
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		if (!killed)
			fprintf(stderr, "connect error: %s\n", in ? (const char *)in : "?");
		if (d) {
			d->wsi = NULL;
			if (killed && nredo < ND * 4 + 64)
				redo[nredo++] = d;
		}
		connecting--;
		return 0;
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		d->up = true;
		up++;
		connecting--;
		d->want_hello = true;
		lws_callback_on_writable(wsi);
		return 0;
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		if (d->want_hello) {
			Cells__V1__Envelope env = CELLS__V1__ENVELOPE__INIT;
			Cells__V1__DeviceHello h = CELLS__V1__DEVICE_HELLO__INIT;
			env.message_id = "hello";
			h.device_id = d->id;
			h.agent_version = "bench";
			env.body_case = CELLS__V1__ENVELOPE__BODY_HELLO;
			env.hello = &h;
			send_env(d, &env);
			d->want_hello = false;
		} else if (d->pending_result[0]) {
			Cells__V1__Envelope env = CELLS__V1__ENVELOPE__INIT;
			Cells__V1__CommandResult r = CELLS__V1__COMMAND_RESULT__INIT;
			snprintf(d->result_id, sizeof d->result_id, "r-%s", d->pending_result);
			env.message_id = d->result_id;
			env.correlation_id = d->pending_result;
			r.command_id = "policy";
			r.status = CELLS__V1__RESULT_STATUS__RESULT_DONE;
			env.body_case = CELLS__V1__ENVELOPE__BODY_RESULT;
			env.result = &r;
			send_env(d, &env);
			d->pending_result[0] = 0;
			d->result_unacked = true;
		}
		return 0;
	case LWS_CALLBACK_CLIENT_RECEIVE: {
		uint8_t *nb = realloc(d->rx, d->rx_len + len);
		if (!nb)
			return -1;
		d->rx = nb;
		memcpy(d->rx + d->rx_len, in, len);
		d->rx_len += len;
		if (!lws_is_final_fragment(wsi))
			return 0;
		cells_err_t err;
		Cells__V1__Envelope *env = NULL;
		int r = cells_envelope_decode(d->rx, d->rx_len, &env, &err);
		d->rx_len = 0;
		if (r < 0)
			return 0;
		if (env->body_case == CELLS__V1__ENVELOPE__BODY_SERVER_HELLO && !d->hello_done) {
			d->hello_done = true;
			helloed++;
		} else if (env->body_case == CELLS__V1__ENVELOPE__BODY_SERVER_HELLO &&
			   d->result_unacked && d->pol_id[0]) {
			/* a new session: the unacknowledged result again (the outbox) */
			snprintf(d->pending_result, sizeof d->pending_result, "%s", d->pol_id);
			lws_callback_on_writable(wsi);
		} else if (env->body_case == CELLS__V1__ENVELOPE__BODY_POLICY) {
			if (!d->got_ns)
				d->got_ns = now_ns();
			if (strcmp(d->pol_id, env->message_id)) { /* de-duplicated by id */
				snprintf(d->pol_id, sizeof d->pol_id, "%s", env->message_id);
				d->applied++;
			}
			snprintf(d->pending_result, sizeof d->pending_result, "%s",
				 env->message_id);
			lws_callback_on_writable(wsi);
		} else if (env->body_case == CELLS__V1__ENVELOPE__BODY_ACK) {
			d->result_unacked = false;
			if (d->push_ns) { /* the first Ack of the entry's result */
				d->ack_ns = now_ns();
				if (lat)
					lat[nlat++] = d->ack_ns - d->push_ns;
				acked_total++;
			}
			d->push_ns = 0;
		}
		cells__v1__envelope__free_unpacked(env, NULL);
		return 0;
	}
	case LWS_CALLBACK_CLIENT_CLOSED:
		if (d->up)
			up--;
		d->up = false;
		d->wsi = NULL;
		if (killed && nredo < ND * 4 + 64)
			redo[nredo++] = d;
		return 0;
	default:
		return 0;
	}
}

static const struct lws_protocols protocols[] = {
    {CELLS_WS_SUBPROTOCOL, cb, 0, 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static int make_device(struct mdm_store *st, struct dev *d, cells_err_t *err)
{
	d->key = pol_key_generate(err);
	if (!d->key)
		return -1;
	cleanup_x509_req X509_REQ *req = X509_REQ_new();
	X509_REQ_set_pubkey(req, d->key);
	X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_ASC,
				   (const unsigned char *)"bench", -1, -1, 0);
	if (X509_REQ_sign(req, d->key, NULL) <= 0)
		return cells_err_ssl(err, "csr");
	unsigned char *der = NULL;
	int dl = i2d_X509_REQ(req, &der);
	char serial[33];
	cleanup_free uint8_t *cert = NULL;
	cleanup_free uint8_t *ca = NULL;
	size_t cl, cal;
	int r = mdm_ca_issue(&M, der, (size_t)dl, d->id, serial, &cert, &cl, &ca, &cal, err);
	OPENSSL_free(der);
	if (r < 0)
		return -1;
	const unsigned char *p = cert;
	d->cert = d2i_X509(NULL, &p, (long)cl);
	return mdm_store_device_enroll(st, d->id, serial, time(NULL), err);
}

static void connect_dev(struct dev *d)
{
	struct lws_client_connect_info ci;
	memset(&ci, 0, sizeof ci);
	ci.context = ctx;
	ci.vhost = vh;
	ci.address = "127.0.0.1";
	int pi = (int)((size_t)(d - D) % (size_t)nports);
	if (pi == dead_port) /* its front end was killed: the next one */
		pi = (pi + 1) % nports;
	ci.port = ports[pi];
	ci.path = "/v1";
	ci.host = host;
	ci.origin = host;
	ci.ssl_connection = LCCSCF_USE_SSL;
	ci.protocol = CELLS_WS_SUBPROTOCOL;
	ci.local_protocol_name = CELLS_WS_SUBPROTOCOL;
	ci.userdata = d;
	ci.pwsi = &d->wsi;
	connecting++;
	if (!lws_client_connect_via_info(&ci)) {
		connecting--;
		d->wsi = NULL;
	}
}

static long rss_kb(int pid)
{
	char p[64], line[256];
	snprintf(p, sizeof p, "/proc/%d/status", pid);
	FILE *f = fopen(p, "re");
	long v = -1;
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, "VmRSS:", 6))
			v = atol(line + 6);
	if (f)
		fclose(f);
	return v;
}

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static void pct(const char *what, int64_t *v, size_t n)
{
	if (!n) {
		printf("%s: no samples\n", what);
		return;
	}
	qsort(v, n, sizeof *v, cmp64);
	printf("%s: n=%zu p50=%.2f ms p99=%.2f ms max=%.2f ms\n", what, n, v[n / 2] / 1e6,
	       v[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] / 1e6, v[n - 1] / 1e6);
}

static void service_until(bool (*done)(void), double secs)
{
	int64_t end = now_ns() + (int64_t)(secs * 1e9);
	while (!done() && now_ns() < end)
		lws_service(ctx, 0);
}

static size_t want_acks;
static bool all_acked(void)
{
	return acked_total >= want_acks;
}

/* queue one signed policy per device in devs[0..n) as `cells-mdm policy push --all` does:
 * signed on several threads (mdm_policy_sign_each), then queued in one transaction */
static int push(struct mdm_store *st, EVP_PKEY *key, size_t n, uint64_t version, cells_err_t *err)
{
	Cells__V1__Policy p = CELLS__V1__POLICY__INIT;
	p.version = version;
	p.issued_at = time(NULL);
	uint8_t buf[256];
	size_t pl = cells__v1__policy__get_packed_size(&p);
	cells__v1__policy__pack(&p, buf);
	char **ids = calloc(n, sizeof *ids);
	struct mdm_qentry *es = calloc(n, sizeof *es);
	int rc = -1;
	if (!ids || !es) {
		cells_err_sys(err, ENOMEM, "push");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		ids[i] = D[i].id;
	if (mdm_policy_sign_each(buf, pl, ids, n, key, es, err) < 0 || mdm_store_begin(st, err) < 0)
		goto out;
	if (mdm_store_queue_add_many(st, es, n, NULL, err) < 0)
		goto out;
	if (mdm_store_commit(st, err) < 0)
		goto out;
	int64_t t = now_ns(); /* visible to the server from now on */
	for (size_t i = 0; i < n; i++)
		D[i].push_ns = t;
	rc = 0;
out:
	for (size_t i = 0; es && i < n; i++)
		mdm_qentry_clear(&es[i]);
	free(es);
	free(ids);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: bench_mgmt STATE_DIR HOST PORT[,PORT...] N [SERVER_PID]\n"
				"(CELLS_MDM_DB: the PostgreSQL database the servers share)\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0); /* each figure as it comes (through tee) */
	/* 10,000 sessions' buffers come and go: no heap trim (each brk shrink flushes the
	 * TLB of every core) */
	mallopt(M_TRIM_THRESHOLD, 512 << 20);
	mallopt(M_MMAP_THRESHOLD, 1 << 20);
	snprintf(M.state_dir, sizeof M.state_dir, "%s", argv[1]);
	host = argv[2];
	for (char *p = argv[3]; *p && nports < (int)CELLS_ARRAY_SIZE(ports); nports++) {
		ports[nports] = (int)strtol(p, &p, 10);
		if (*p == ',')
			p++;
	}
	const char *db = getenv("CELLS_MDM_DB");
	if (db && *db && mdm_set_db(&M, db) < 0)
		return 2;
	ND = (size_t)atol(argv[4]);
	int spid = argc > 5 ? atoi(argv[5]) : 0;
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	cells_err_t err = {0};
	struct mdm_store *st = NULL;
	if (mdm_store_open(mdm_db_where(&M), &st, &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	D = calloc(ND, sizeof *D);
	int64_t t0 = now_ns();
	mdm_store_begin(st, &err);
	for (size_t i = 0; i < ND; i++)
		if (make_device(st, &D[i], &err) < 0) {
			fprintf(stderr, "device %zu: %s\n", i, err.msg);
			return 1;
		}
	mdm_store_commit(st, &err);
	printf("made %zu device identities (key, CSR, certificate, DB row) in %.2f s\n", ND,
	       (now_ns() - t0) / 1e9);
	lws_set_log_level(LLL_ERR, NULL);
	struct lws_context_creation_info info;
	memset(&info, 0, sizeof info);
	info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.fd_limit_per_thread = (unsigned)rl.rlim_cur;
	ctx = lws_create_context(&info);
	info.protocols = protocols;
	info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	vh = ctx ? lws_create_vhost(ctx, &info) : NULL;
	if (!vh) {
		fprintf(stderr, "lws setup failed\n");
		return 1;
	}
	long rss0 = spid ? rss_kb(spid) : -1;
	t0 = now_ns();
	int64_t last_progress = now_ns();
	size_t last_up = 0;
	while (helloed < ND && now_ns() - last_progress < 20 * (int64_t)1000000000) {
		while (next_dev < ND && connecting < 64)
			connect_dev(&D[next_dev++]);
		lws_service(ctx, 0);
		if (helloed != last_up) {
			last_up = helloed;
			last_progress = now_ns();
		}
	}
	double tconn = (now_ns() - t0) / 1e9;
	long rss1 = spid ? rss_kb(spid) : -1;
	printf("sessions held: %zu of %zu (connected in %.2f s, %.0f/s)\n", helloed, ND, tconn,
	       helloed / tconn);
	if (spid && helloed)
		printf("server RSS: %ld kB before, %ld kB with %zu sessions: %.1f kB per "
		       "connection\n",
		       rss0, rss1, helloed, (double)(rss1 - rss0) / (double)helloed);
	cleanup_pkey EVP_PKEY *key = mdm_load_key(&M, "signing.key", &err);
	if (!key) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	/* latency at N=1: one device, sequential pushes */
	int rounds = 50;
	lat = calloc((size_t)rounds + ND, sizeof *lat);
	for (int r = 0; r < rounds; r++) {
		want_acks = acked_total + 1;
		if (push(st, key, 1, 1000 + (uint64_t)r, &err) < 0) {
			fprintf(stderr, "%s\n", err.msg);
			return 1;
		}
		service_until(all_acked, 10);
	}
	pct("push->ack latency, 1 device pushed", lat, nlat);
	/* fan-out of one policy to every held session */
	nlat = 0;
	size_t n = helloed;
	for (size_t i = 0; i < n; i++) { /* count the fan-out's policy only */
		D[i].pol_id[0] = 0;
		D[i].applied = 0;
	}
	want_acks = acked_total + n;
	t0 = now_ns();
	if (push(st, key, n, 5000, &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	double tq = (now_ns() - t0) / 1e9;
	const char *kill_env = getenv("BENCH_KILL");
	bool kill_one = kill_env && !strcmp(kill_env, "1") && spid && nports > 1;
	size_t delivered = 0, at_kill = 0, reconnects = 0;
	int64_t kill_ns = 0, end = now_ns() + 120 * (int64_t)1000000000;
	redo = calloc(ND * 4 + 64, sizeof *redo);
	while (!all_acked() && now_ns() < end) {
		lws_service(ctx, 0);
		if (kill_one && !killed) {
			delivered = 0;
			for (size_t i = 0; i < n; i++)
				delivered += D[i].got_ns != 0;
			if (delivered >= n / 2) {
				/* mid-fan-out: the first front end dies without a word */
				kill(spid, SIGKILL);
				killed = true;
				dead_port = 0;
				at_kill = delivered;
				kill_ns = now_ns();
			}
		}
		while (nredo && connecting < 64) {
			struct dev *d = redo[--nredo];
			if (d->wsi || d->up)
				continue;
			reconnects++;
			connect_dev(d);
		}
	}
	double tf = (now_ns() - t0) / 1e9;
	if (kill_one) {
		size_t once = 0, never = 0, twice = 0;
		for (size_t i = 0; i < n; i++) {
			once += D[i].applied == 1;
			never += D[i].applied == 0;
			twice += D[i].applied > 1;
		}
		printf(
		    "front end %d SIGKILLed at %.2f s with %zu of %zu delivered; %zu reconnects; "
		    "acknowledged: %zu of %zu after %.2f s\n",
		    spid, (kill_ns - t0) / 1e9, at_kill, n, reconnects,
		    acked_total - (want_acks - n), n, tf);
		printf(
		    "killed front end: policy applied exactly once (by id) on %zu of %zu devices, "
		    "never on %zu, more than once on %zu\n",
		    once, n, never, twice);
	}
	int64_t last_got = 0, last_ack = 0;
	for (size_t i = 0; i < n; i++) {
		if (D[i].got_ns > last_got)
			last_got = D[i].got_ns;
		if (D[i].ack_ns > last_ack)
			last_ack = D[i].ack_ns;
	}
	printf("fan-out to %zu devices: signed+queued in %.2f s, all delivered after %.2f s, all "
	       "acknowledged after %.2f s (%zu acks)\n",
	       n, tq, (last_got - t0) / 1e9, tf, nlat);
	printf("fan-out last delivery %.2f s, last ack %.2f s after the push began\n",
	       (last_got - t0) / 1e9, (last_ack - t0) / 1e9);
	pct("push->ack latency during the fan-out", lat, nlat);
	mdm_store_close(st);
	return 0;
}
