/* cellsd-net - the unprivileged network process of the Cells agent: TLS, websocket and
 * envelope framing only; it is never trusted (see docs/PROTOCOL.md, SECURITY.md).
 * cellsd starts it with its key and socket as fds; it is not meant to be run by hand.
 *
 * One lws event loop: the SOCK_SEQPACKET socket to cellsd is adopted into it as a raw
 * file; the MDM connection is an lws websocket client (TLS 1.3 only, the CA cellsd gives
 * us is the only trust anchor, host name checked, our device certificate for mutual
 * TLS, subprotocol cells.v1, ping/pong keepalive, reconnect with exponential backoff
 * and jitter). Writes to the MDM happen only from LWS_CALLBACK_CLIENT_WRITEABLE. */
#include "cleanup.h"
#include "cleanup_ssl.h"
#include "log.h"
#include "net_sandbox.h"
#include "netipc.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define MAX_OUT 1024

struct outmsg {
	struct outmsg *next;
	size_t len;
	uint8_t data[];
};

enum mode { M_IDLE, M_ENROLL, M_SESSION };

static struct net {
	struct lws_context *ctx;
	struct lws_vhost *ipc_vh, *cli_vh;
	int ipc_fd;
	int retry_max_ms; /* --retry-max-ms: cap of the reconnect backoff */
	EVP_PKEY *key;
	enum mode mode;
	char host[256], path[32];
	int port;
	uint8_t *ca_pem, *cert_pem;
	size_t ca_len, cert_len;
	uint8_t *enroll_env;
	size_t enroll_len;
	bool enroll_answered, connected, closing;
	struct lws *wsi;
	lws_sorted_usec_list_t sul;
	uint16_t retry_count;
	struct outmsg *head, *tail;
	size_t nout;
	uint8_t *rx;
	size_t rx_len;
	char reason[256];
	unsigned vh_gen;
	/* one image download at a time (NETIPC_IMAGE_GET) */
	struct lws *img_wsi;
	int img_fd; /* the pipe's write end (owned) */
	char img_sha[65], img_path[96];
	uint64_t img_offset, img_size, img_got;
	unsigned img_http;
	bool img_active, img_ok;
} N = {.ipc_fd = -1, .img_fd = -1};

static const uint32_t backoff_ms[] = {500, 1000, 2000, 4000, 8000, 15000, 30000};
static const lws_retry_bo_t retry = {
    .retry_ms_table = backoff_ms,
    .retry_ms_table_count = LWS_ARRAY_SIZE(backoff_ms),
    .conceal_count = 0xffff,
    .secs_since_valid_ping = 30,
    .secs_since_valid_hangup = 90,
    .jitter_percent = 20,
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: cellsd-net --ipc-fd N --key-fd N [OPTIONS]\n"
		"The Cells agent's unprivileged network process. cellsd starts it; it speaks\n"
		"TLS websockets to the MDM and forwards size-bounded typed messages to cellsd.\n\n"
		"Options:\n"
		"  --ipc-fd N     the SOCK_SEQPACKET socket to cellsd\n"
		"  --key-fd N     the device key (PEM), read once and closed\n"
		"  --retry-max-ms N  cap of the reconnect backoff (0: the default)\n"
		"  --version      print the version and exit\n"
		"  -h, --help     show this help and exit\n");
}

static void ipc_send(enum netipc_type t, const ProtobufCMessage *m, const uint8_t *raw, size_t len)
{
	cells_err_t err;
	int r = m ? netipc_send_pb(N.ipc_fd, t, m, &err) : netipc_send(N.ipc_fd, t, raw, len, &err);
	if (r < 0) {
		log_error("%s: exiting", err.msg);
		exit(1);
	}
}

static void send_status(bool connected, const char *reason)
{
	Cells__Net__V1__NetStatus st = CELLS__NET__V1__NET_STATUS__INIT;
	char clean[256];
	size_t i;
	for (i = 0; reason && reason[i] && i < sizeof clean - 1; i++)
		clean[i] = (reason[i] < 0x20 || reason[i] == 0x7f) ? ' ' : reason[i];
	clean[i] = 0;
	st.connected = connected;
	st.reason = clean;
	ipc_send(NETIPC_STATUS, &st.base, NULL, 0);
}

static void enroll_answer(int status, const char *reason, const uint8_t *env, size_t n)
{
	if (N.enroll_answered)
		return;
	N.enroll_answered = true;
	Cells__Net__V1__NetEnrollResult r = CELLS__NET__V1__NET_ENROLL_RESULT__INIT;
	r.status = status;
	r.reason = (char *)(reason ? reason : "");
	r.envelope.data = (uint8_t *)env;
	r.envelope.len = n;
	ipc_send(NETIPC_ENROLL_RESULT, &r.base, NULL, 0);
}

static void out_clear(void)
{
	while (N.head) {
		struct outmsg *o = N.head;
		N.head = o->next;
		free(o);
	}
	N.tail = NULL;
	N.nout = 0;
}

static void out_push(const uint8_t *p, size_t n)
{
	if (N.nout >= MAX_OUT) {
		log_warn("outgoing queue full: dropping a message (cellsd resends it)");
		return;
	}
	struct outmsg *o = malloc(sizeof *o + LWS_PRE + n);
	if (!o)
		return;
	o->next = NULL;
	o->len = n;
	memcpy(o->data + LWS_PRE, p, n);
	if (N.tail)
		N.tail->next = o;
	else
		N.head = o;
	N.tail = o;
	N.nout++;
	if (N.wsi)
		lws_callback_on_writable(N.wsi);
}

static void do_connect(lws_sorted_usec_list_t *sul);

static void schedule_retry(void)
{
	if (N.mode != M_SESSION)
		return;
	char conceal;
	uint32_t ms = lws_retry_get_delay_ms(N.ctx, &retry, &N.retry_count, &conceal);
	/* --retry-max-ms caps the backoff (cellsd passes it; its environment is not) */
	if (N.retry_max_ms > 0 && ms > (uint32_t)N.retry_max_ms)
		ms = (uint32_t)N.retry_max_ms;
	log_info("reconnecting in %u ms", ms);
	lws_sul_schedule(N.ctx, 0, &N.sul, do_connect, (lws_usec_t)ms * 1000);
}

static void lost(const char *why)
{
	snprintf(N.reason, sizeof N.reason, "%s", why && *why ? why : "connection closed");
	bool was = N.connected;
	N.connected = false;
	N.wsi = NULL;
	free(N.rx);
	N.rx = NULL;
	N.rx_len = 0;
	out_clear();
	if (N.mode == M_ENROLL) {
		enroll_answer(ECONNREFUSED, N.reason, NULL, 0);
		return;
	}
	log_warn("not connected: %s", N.reason);
	if (was || N.retry_count == 0)
		send_status(false, N.reason);
	schedule_retry();
}

/* Only our pinned CA: replace whatever store lws built with one holding just it. */
static int setup_ssl_ctx(SSL_CTX *ctx)
{
	cleanup_bio BIO *b = BIO_new_mem_buf(N.ca_pem, (int)N.ca_len);
	cleanup_x509 X509 *ca = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	X509_STORE *st = X509_STORE_new();
	if (!ca || !st || X509_STORE_add_cert(st, ca) != 1) {
		X509_STORE_free(st);
		log_error("cannot load the pinned CA");
		return 1;
	}
	SSL_CTX_set_cert_store(ctx, st);
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (N.mode == M_SESSION) {
		cleanup_bio BIO *cb = BIO_new_mem_buf(N.cert_pem, (int)N.cert_len);
		cleanup_x509 X509 *cert = cb ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
		if (!cert || SSL_CTX_use_certificate(ctx, cert) != 1 ||
		    SSL_CTX_use_PrivateKey(ctx, N.key) != 1 ||
		    SSL_CTX_check_private_key(ctx) != 1) {
			log_error("cannot use the device certificate and key");
			return 1;
		}
	}
	return 0;
}

/* Defence in depth beside lws' own check: the leaf must name the host we dialled. */
static int check_peer(X509_STORE_CTX *xs, int preverify_ok)
{
	if (!preverify_ok)
		return 1;
	if (X509_STORE_CTX_get_error_depth(xs) != 0)
		return 0;
	X509 *leaf = X509_STORE_CTX_get_current_cert(xs);
	if (leaf && (X509_check_host(leaf, N.host, 0, 0, NULL) == 1 ||
		     X509_check_ip_asc(leaf, N.host, 0) == 1))
		return 0;
	X509_STORE_CTX_set_error(xs, X509_V_ERR_HOSTNAME_MISMATCH);
	return 1;
}

static int on_rx(struct lws *wsi, const void *in, size_t len)
{
	if (!lws_frame_is_binary(wsi)) {
		lost("protocol error: text frame from the server");
		return -1;
	}
	if (N.rx_len + len > CELLS_MAX_ENVELOPE) {
		lost("protocol error: message from the server over the size limit");
		return -1;
	}
	uint8_t *nb = realloc(N.rx, N.rx_len + len + 1);
	if (!nb)
		return -1;
	N.rx = nb;
	memcpy(N.rx + N.rx_len, in, len);
	N.rx_len += len;
	if (!lws_is_final_fragment(wsi))
		return 0;
	/* check the framing here so garbage ends the connection early; cellsd decodes and
	 * verifies again: it never relies on this check */
	cells_err_t err = {0};
	Cells__V1__Envelope *env = NULL;
	if (cells_envelope_decode(N.rx, N.rx_len, &env, &err) < 0) {
		char why[300];
		snprintf(why, sizeof why, "protocol error: %s", err.msg);
		lost(why);
		return -1;
	}
	cells__v1__envelope__free_unpacked(env, NULL);
	if (N.mode == M_ENROLL) {
		enroll_answer(0, "", N.rx, N.rx_len);
		N.closing = true;
		lws_callback_on_writable(wsi);
	} else {
		ipc_send(NETIPC_RECV, NULL, N.rx, N.rx_len);
	}
	free(N.rx);
	N.rx = NULL;
	N.rx_len = 0;
	return 0;
}

static int cli_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		  size_t len)
{
	switch (reason) {
	case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_CLIENT_VERIFY_CERTS:
		return setup_ssl_ctx(user);
	case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
		return check_peer(user, (int)len);
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		if (wsi == N.wsi || !N.wsi)
			lost(in ? (const char *)in : "connection failed");
		return 0;
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		N.connected = true;
		N.retry_count = 0;
		N.reason[0] = 0;
		log_info("connected to %s:%d%s", N.host, N.port, N.path);
		if (N.mode == M_ENROLL)
			out_push(N.enroll_env, N.enroll_len);
		else
			send_status(true, "");
		lws_callback_on_writable(wsi);
		return 0;
	case LWS_CALLBACK_CLIENT_RECEIVE:
		return on_rx(wsi, in, len);
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		if (N.closing) {
			lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
			return -1;
		}
		if (N.head) {
			struct outmsg *o = N.head;
			int w = lws_write(wsi, o->data + LWS_PRE, o->len, LWS_WRITE_BINARY);
			N.head = o->next;
			if (!N.head)
				N.tail = NULL;
			N.nout--;
			free(o);
			if (w < 0)
				return -1;
			if (N.head)
				lws_callback_on_writable(wsi);
		}
		return 0;
	case LWS_CALLBACK_CLIENT_CLOSED:
		if (wsi == N.wsi)
			lost(N.closing ? "closed" : "connection closed by the server");
		return 0;
	case LWS_CALLBACK_WSI_DESTROY:
		if (wsi == N.wsi) {
			N.wsi = NULL;
			if (N.connected)
				lost("connection destroyed");
		}
		return 0;
	default:
		break;
	}
	return 0;
}

/* The download ended (the pipe is closed first, so cellsd sees the end of the bytes):
 * report it. cellsd checks the bytes itself; this is a hint and the reason. */
static void img_end(int status, const char *reason)
{
	if (!N.img_active)
		return;
	N.img_active = false;
	N.img_wsi = NULL;
	if (N.img_fd >= 0)
		close(N.img_fd);
	N.img_fd = -1;
	Cells__Net__V1__NetImageDone d = CELLS__NET__V1__NET_IMAGE_DONE__INIT;
	char clean[256];
	size_t i;
	for (i = 0; reason && reason[i] && i < sizeof clean - 1; i++)
		clean[i] = (reason[i] < 0x20 || reason[i] == 0x7f) ? ' ' : reason[i];
	clean[i] = 0;
	d.sha256 = N.img_sha;
	d.status = status;
	d.http_status = N.img_http;
	d.reason = clean;
	log_info("image %.16s: download ended (%s, %llu bytes)", N.img_sha, status ? clean : "ok",
		 (unsigned long long)N.img_got);
	ipc_send(NETIPC_IMAGE_DONE, &d.base, NULL, 0);
}

/* Write the body into the pipe (blocking: cellsd drains it from its event loop). */
static int img_write(const void *in, size_t len)
{
	bool over = N.img_offset + N.img_got + len > N.img_size;
	if (over) /* pass one byte past the signed size: cellsd judges, and discards */
		len = (size_t)(N.img_size - N.img_offset - N.img_got) + 1;
	const uint8_t *p = in;
	while (len) {
		ssize_t w = write(N.img_fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			img_end(EPIPE, "cellsd closed the download pipe");
			return -1;
		}
		p += w;
		len -= (size_t)w;
		N.img_got += (uint64_t)w;
	}
	if (over) {
		img_end(EMSGSIZE, "the server sent more bytes than the signed size");
		return -1;
	}
	return 0;
}

static int img_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		  size_t len)
{
	switch (reason) {
	case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
		return check_peer(user, (int)len);
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		if (wsi == N.img_wsi)
			img_end(ECONNREFUSED, in ? (const char *)in : "connection failed");
		return 0;
	case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
		if (wsi != N.img_wsi || !N.img_offset)
			return 0;
		unsigned char **p = (unsigned char **)in, *end = (*p) + len;
		char v[48];
		int n = snprintf(v, sizeof v, "bytes=%llu-", (unsigned long long)N.img_offset);
		if (lws_add_http_header_by_name(
			wsi, (const unsigned char *)"range:", (const unsigned char *)v, n, p, end))
			return -1;
		return 0;
	}
	case LWS_CALLBACK_ESTABLISHED_CLIENT_HTTP: {
		if (wsi != N.img_wsi)
			return -1;
		N.img_http = lws_http_client_http_response(wsi);
		bool ok =
		    N.img_offset ? N.img_http == 206 : (N.img_http == 200 || N.img_http == 206);
		if (ok && N.img_http == 206) {
			/* the range must start where we asked */
			char cr[96];
			unsigned long long a = 0;
			if (lws_hdr_copy(wsi, cr, sizeof cr, WSI_TOKEN_HTTP_CONTENT_RANGE) <= 0 ||
			    sscanf(cr, "bytes %llu-", &a) != 1 || a != N.img_offset)
				ok = false;
		}
		if (!ok) {
			char why[96];
			snprintf(why, sizeof why, "the server answered HTTP %u", N.img_http);
			img_end(EPROTO, why);
			return -1;
		}
		return 0;
	}
	case LWS_CALLBACK_RECEIVE_CLIENT_HTTP_READ:
		if (wsi != N.img_wsi)
			return -1;
		return img_write(in, len);
	case LWS_CALLBACK_RECEIVE_CLIENT_HTTP: {
		static char buf[LWS_PRE + 65536];
		char *px = buf + LWS_PRE;
		int lenx = (int)sizeof buf - LWS_PRE;
		if (lws_http_client_read(wsi, &px, &lenx) < 0)
			return -1;
		return 0;
	}
	case LWS_CALLBACK_COMPLETED_CLIENT_HTTP:
		if (wsi == N.img_wsi)
			img_end(0, "");
		return 0;
	case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
		if (wsi == N.img_wsi)
			img_end(ECONNRESET, "connection closed before the end of the image");
		return 0;
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols cli_protocols[] = {
    {CELLS_WS_SUBPROTOCOL, cli_cb, 0, 65536, 0, NULL, 0},
    {"cells-img", img_cb, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* The server's address (we resolve, IPv4 first, and dial the address; the TLS name
 * stays N.host), -1 when the name does not resolve. */
static int resolve(char addr[64])
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_INET}, *ai = NULL;
	if (getaddrinfo(N.host, NULL, &hints, &ai) != 0 || !ai) {
		hints.ai_family = AF_INET6;
		if (getaddrinfo(N.host, NULL, &hints, &ai) != 0 || !ai)
			return -1;
	}
	if (ai->ai_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, addr, 64);
	else
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, addr, 64);
	freeaddrinfo(ai);
	return 0;
}

/* A TLS client connection to the server at addr for path, verified as the session is. */
static void client_info(struct lws_client_connect_info *ci, const char *addr, const char *path)
{
	memset(ci, 0, sizeof *ci);
	ci->context = N.ctx;
	ci->vhost = N.cli_vh;
	ci->address = addr;
	ci->port = N.port;
	ci->path = path;
	ci->host = N.host;
	ci->origin = N.host;
	ci->ssl_connection = LCCSCF_USE_SSL; /* and nothing that weakens verification */
}

/* Start the download NETIPC_IMAGE_GET asked for, into fd (owned). */
static void img_start(const Cells__Net__V1__NetImageGet *g, int fd)
{
	if (N.img_active) {
		/* cellsd gave up on the transfer running (it sends one GET at a time): end it */
		struct lws *old = N.img_wsi;
		img_end(ECANCELED, "replaced by a new request");
		if (old)
			lws_set_timeout(old, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
	}
	if (N.mode != M_SESSION || !N.cli_vh) {
		char sha[65];
		snprintf(sha, sizeof sha, "%s", g->sha256);
		close(fd);
		Cells__Net__V1__NetImageDone d = CELLS__NET__V1__NET_IMAGE_DONE__INIT;
		d.sha256 = sha;
		d.status = ENOTCONN;
		d.reason = "not configured";
		ipc_send(NETIPC_IMAGE_DONE, &d.base, NULL, 0);
		return;
	}
	N.img_active = true;
	N.img_ok = false;
	N.img_fd = fd;
	N.img_http = 0;
	N.img_got = 0;
	N.img_offset = g->offset;
	N.img_size = g->size;
	snprintf(N.img_sha, sizeof N.img_sha, "%s", g->sha256);
	snprintf(N.img_path, sizeof N.img_path, "/v1/images/%s", N.img_sha);
	char addr[64];
	if (resolve(addr) < 0) {
		img_end(EHOSTUNREACH, "cannot resolve the server's name");
		return;
	}
	struct lws_client_connect_info ci;
	client_info(&ci, addr, N.img_path);
	ci.method = "GET";
	ci.alpn = "http/1.1";
	ci.local_protocol_name = "cells-img";
	ci.pwsi = &N.img_wsi;
	log_info("image %.16s: GET %s from offset %llu", N.img_sha, N.img_path,
		 (unsigned long long)N.img_offset);
	if (!lws_client_connect_via_info(&ci)) {
		N.img_wsi = NULL;
		img_end(ECONNREFUSED, "connect failed");
	}
}

static void do_connect(lws_sorted_usec_list_t *sul)
{
	char addr[64];
	if (N.wsi)
		return;
	N.closing = false;
	if (resolve(addr) < 0) {
		lost("cannot resolve the server's name");
		return;
	}
	struct lws_client_connect_info ci;
	client_info(&ci, addr, N.path);
	ci.protocol = CELLS_WS_SUBPROTOCOL;
	ci.local_protocol_name = CELLS_WS_SUBPROTOCOL;
	ci.retry_and_idle_policy = &retry;
	ci.pwsi = &N.wsi;
	if (!lws_client_connect_via_info(&ci)) {
		N.wsi = NULL;
		lost("connect failed");
	}
}

static int parse_url(const char *url)
{
	const char *p = url + 6; /* "wss://" checked by netipc_decode */
	const char *colon = strrchr(p, ':');
	const char *slash = strchr(p, '/');
	if (slash && (!colon || colon > slash))
		return -1;
	size_t hl = colon ? (size_t)(colon - p) : slash ? (size_t)(slash - p) : strlen(p);
	if (!hl || hl >= sizeof N.host)
		return -1;
	memcpy(N.host, p, hl);
	N.host[hl] = 0;
	N.port = 443;
	if (colon) {
		char *end;
		long port = strtol(colon + 1, &end, 10);
		if ((*end && *end != '/') || port <= 0 || port > 65535)
			return -1;
		N.port = (int)port;
	}
	return 0;
}

static int new_vhost(void)
{
	struct lws_context_creation_info info;
	char name[32];
	memset(&info, 0, sizeof info);
	snprintf(name, sizeof name, "mdm%u", ++N.vh_gen);
	info.vhost_name = name;
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = cli_protocols;
	info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.client_ssl_ca_mem = N.ca_pem;
	info.client_ssl_ca_mem_len = (unsigned)N.ca_len;
	info.retry_and_idle_policy = &retry;
	N.cli_vh = lws_create_vhost(N.ctx, &info);
	return N.cli_vh ? 0 : -1;
}

static int set_pem(uint8_t **dst, size_t *dl, const ProtobufCBinaryData *src)
{
	free(*dst);
	*dst = malloc(src->len + 1);
	if (!*dst)
		return -1;
	memcpy(*dst, src->data, src->len);
	(*dst)[src->len] = 0;
	*dl = src->len;
	return 0;
}

static void on_ipc_msg(struct netipc_msg *m, int *fd)
{
	switch (m->type) {
	case NETIPC_IMAGE_GET:
		if (*fd < 0) {
			log_warn("image-get without its pipe: ignored");
			return;
		}
		img_start(m->image_get, *fd);
		*fd = -1;
		return;
	case NETIPC_CONFIG:
		if (N.mode != M_IDLE) {
			log_warn("config refused: already %s",
				 N.mode == M_SESSION ? "configured" : "enrolling");
			return;
		}
		if (parse_url(m->config->url) < 0 ||
		    set_pem(&N.ca_pem, &N.ca_len, &m->config->ca_pem) < 0 ||
		    set_pem(&N.cert_pem, &N.cert_len, &m->config->cert_pem) < 0) {
			send_status(false, "bad configuration");
			return;
		}
		snprintf(N.path, sizeof N.path, "/v1");
		N.mode = M_SESSION;
		if (new_vhost() < 0) {
			send_status(false, "TLS setup failed (certificate or key)");
			N.mode = M_IDLE;
			return;
		}
		do_connect(NULL);
		return;
	case NETIPC_ENROLL:
		if (N.mode == M_SESSION || (N.mode == M_ENROLL && !N.enroll_answered)) {
			log_warn("enroll refused in this state");
			return;
		}
		if (parse_url(m->enroll->url) < 0 ||
		    set_pem(&N.ca_pem, &N.ca_len, &m->enroll->ca_pem) < 0 ||
		    set_pem(&N.enroll_env, &N.enroll_len, &m->enroll->envelope) < 0) {
			N.enroll_answered = false;
			enroll_answer(EINVAL, "bad enrollment request", NULL, 0);
			return;
		}
		snprintf(N.path, sizeof N.path, "/v1/enroll");
		N.mode = M_ENROLL;
		N.enroll_answered = false;
		if (N.cli_vh)
			lws_vhost_destroy(N.cli_vh);
		N.cli_vh = NULL;
		if (new_vhost() < 0) {
			enroll_answer(EPROTO, "TLS setup failed (CA)", NULL, 0);
			return;
		}
		do_connect(NULL);
		return;
	case NETIPC_SEND:
		if (N.mode == M_SESSION && N.connected)
			out_push(m->raw, m->raw_len);
		return;
	default:
		return;
	}
}

static int ipc_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		  size_t len)
{
	switch (reason) {
	case LWS_CALLBACK_RAW_RX_FILE: {
		static uint8_t buf[NETIPC_MAX_DGRAM + 1];
		for (;;) {
			struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
			union {
				struct cmsghdr h;
				char b[CMSG_SPACE(sizeof(int))];
			} u;
			struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
			mh.msg_control = u.b;
			mh.msg_controllen = sizeof u.b;
			ssize_t n =
			    recvmsg(N.ipc_fd, &mh, MSG_DONTWAIT | MSG_TRUNC | MSG_CMSG_CLOEXEC);
			if (n < 0 && errno == EINTR)
				continue;
			int pfd = -1;
			if (n > 0 && !(mh.msg_flags & MSG_CTRUNC))
				for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c;
				     c = CMSG_NXTHDR(&mh, c))
					if (c->cmsg_level == SOL_SOCKET &&
					    c->cmsg_type == SCM_RIGHTS &&
					    c->cmsg_len == CMSG_LEN(sizeof(int)))
						memcpy(&pfd, CMSG_DATA(c), sizeof(int));
			if (n < 0 && errno == EAGAIN)
				return 0;
			if (n <= 0) {
				log_info("cellsd closed the socket: exiting");
				exit(0);
			}
			cells_err_t err = {0};
			struct netipc_msg m;
			if ((size_t)n > NETIPC_MAX_DGRAM ||
			    netipc_decode(buf, (size_t)n, NETIPC_TO_NET, &m, &err) < 0) {
				log_error("bad message from cellsd (%s): exiting", err.msg);
				exit(1);
			}
			on_ipc_msg(&m, &pfd);
			netipc_msg_free(&m);
			if (pfd >= 0)
				close(pfd); /* an fd with any other message is not kept */
		}
	}
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		log_info("cellsd closed the socket: exiting");
		exit(0);
	default:
		break;
	}
	return 0;
}

static const struct lws_protocols ipc_protocols[] = {
    {"cells-ipc", ipc_cb, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void lws_log(int level, const char *line)
{
	char b[256];
	size_t n = strnlen(line, sizeof b - 1);
	memcpy(b, line, n);
	while (n && (b[n - 1] == '\n' || b[n - 1] == '\r'))
		n--;
	b[n] = 0;
	log_warn("lws: %s", b);
}

static int read_key(int fd, cells_err_t *err)
{
	uint8_t buf[16384];
	size_t n = 0;
	ssize_t r;
	lseek(fd, 0, SEEK_SET);
	while (n < sizeof buf && (r = read(fd, buf + n, sizeof buf - n)) > 0)
		n += (size_t)r;
	close(fd);
	cleanup_bio BIO *b = BIO_new_mem_buf(buf, (int)n);
	N.key = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
	OPENSSL_cleanse(buf, sizeof buf);
	return N.key ? 0 : cells_err_set(err, EINVAL, "key fd: no private key");
}

int main(int argc, char **argv)
{
	int key_fd = -1;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--version")) {
			printf("cellsd-net %s\n", CELLS_VERSION);
			return 0;
		}
		if (!strcmp(argv[i], "--ipc-fd") && i + 1 < argc)
			N.ipc_fd = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--key-fd") && i + 1 < argc)
			key_fd = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--retry-max-ms") && i + 1 < argc)
			N.retry_max_ms = atoi(argv[++i]);
		else {
			usage(stderr);
			return 2;
		}
	}
	if (N.ipc_fd < 0 || key_fd < 0) {
		usage(stderr);
		return 2;
	}
	cells_log_init("cellsd-net", LOG_INFO, false);
	signal(SIGPIPE, SIG_IGN);
	cells_err_t err = {0};
	int type = 0;
	socklen_t tl = sizeof type;
	if (getsockopt(N.ipc_fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_SEQPACKET) {
		log_error("--ipc-fd is not a SOCK_SEQPACKET socket");
		return 1;
	}
	if (getuid() == 0 || geteuid() == 0) {
		log_error("refusing to run as root: cellsd starts this as an unprivileged uid");
		return 1;
	}
	if (read_key(key_fd, &err) < 0) {
		log_error("%s", err.msg);
		return 1;
	}
	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
	struct lws_context_creation_info info;
	memset(&info, 0, sizeof info);
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	/* image bodies are read through this buffer: 64 KiB reads, not 4 KiB ones */
	info.pt_serv_buf_size = 64 * 1024;
	info.port = CONTEXT_PORT_NO_LISTEN;
	N.ctx = lws_create_context(&info);
	if (!N.ctx) {
		log_error("lws context");
		return 1;
	}
	info.vhost_name = "ipc";
	info.protocols = ipc_protocols;
	info.options = 0;
	N.ipc_vh = lws_create_vhost(N.ctx, &info);
	if (!N.ipc_vh) {
		log_error("lws vhost");
		return 1;
	}
	/* everything read from files is read now: the sandbox's view is empty */
	OPENSSL_init_ssl(OPENSSL_INIT_LOAD_CONFIG, NULL);
	if (net_sandbox_apply(&err) < 0) {
		log_error("sandbox: %s", err.msg);
		return 1;
	}
	lws_sock_file_fd_type fd = {.filefd = N.ipc_fd};
	if (!lws_adopt_descriptor_vhost(N.ipc_vh, LWS_ADOPT_RAW_FILE_DESC, fd, "cells-ipc", NULL)) {
		log_error("cannot adopt the ipc socket");
		return 1;
	}
	while (lws_service(N.ctx, 0) >= 0)
		;
	lws_context_destroy(N.ctx);
	return 0;
}
