/* mdm_serve.c - `cells-mdm serve`: the libwebsockets TLS websocket server.
 *
 * One lws event loop. Path /v1 needs a client certificate issued by our CA (mutual
 * TLS); the device id is the certificate's CN and must match its Ed25519 key and an
 * enrolled device. Path /v1/enroll accepts a connection without a client certificate
 * and only an EnrollRequest. Subprotocol "cells.v1", one Envelope per binary message.
 * We write only from LWS_CALLBACK_SERVER_WRITEABLE. The queue lives in the database
 * (mdm_store.h). Entries added by the admin commands (other processes) wake the loop
 * at once: an inotify watch on the state dir sees the database's WAL change, and the
 * loop checks the queue for new entries (one cheap max(seq) query per burst of
 * writes); a 1 s timer does the same as a safety net and expires old entries.
 *
 * Writes are batched: the first write of a loop turn (a result's state, a delivery, a
 * device seen or gone) opens one transaction, committed when the turn ends (after
 * lws_service returns, before the loop sleeps again) or before anything that needs
 * its own transaction. Every message queued for a session during the turn is held
 * until that commit: an Ack never leaves before the write it confirms is in the
 * database, so a crash loses at most results not acknowledged yet, which the device
 * sends again and the queue entry's id recognises (docs/ARCHITECTURE.md). */
#include "cleanup.h"
#include "cleanup_ssl.h"
#include "log.h"
#include "mdm.h"
#include "mdm_admin.h"
#include "sim_modem.h"
#include "mdm_audit.h"
#include "mdm_db.h"
#include "mdm_store.h"
#include "pol_sig.h"
#include "testhook.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define POLL_US (1000 * 1000) /* safety net only: inotify wakes us (cb_watch) */
/* Pre-authentication bounds (docs/PROTOCOL.md §3): an /v1/enroll session is only
 * server-authenticated, so the one EnrollRequest it may send is at most this big; HTTP
 * request headers before any upgrade are bounded by lws' header buffer (HDR_MAX). lws
 * hands us a message in pieces of at most RX_CHUNK bytes. */
#define ENROLL_MAX_MESSAGE 8192
#define HDR_MAX 4096
#define RX_CHUNK 16384
#define WINDOW 16				    /* queue entries in flight per device */
#define MDM_RENEW_BEFORE_DEFAULT (30LL * 24 * 3600) /* serve --renew-before */
#define HASH_SIZE 16384
/* Keepalive (docs/PROTOCOL.md): a ping after 30 s without a frame from the device, hang
 * up after 90 s. Our own, checked once every KEEPALIVE_LOOK_S over the sessions, not lws'
 * per-connection validity timer: lws re-inserts that timer into one sorted list (O(n))
 * at every frame, which cost a third of a core in a 10,000-device fan-out. */
#define KEEPALIVE_PING_S 30
#define KEEPALIVE_HANGUP_S 90
#define KEEPALIVE_LOOK_S 5
#define TLS12_CIPHERS                                                                              \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-"      \
	"SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-"     \
	"SHA256"

struct outmsg {
	struct outmsg *next;
	size_t len;
	uint8_t data[]; /* LWS_PRE bytes, then the message */
};

struct sess {
	struct lws *wsi;
	struct sess *hnext;
	bool enroll, authed, hello, want_check, hashed, close_after_write;
	bool refusing;	 /* an over-limit message: input is dropped until we close */
	bool want_ping;	 /* idle for KEEPALIVE_PING_S: a ping is written (idle_check) */
	int64_t last_rx; /* monotonic seconds of the last frame received (ping or pong too) */
	int close_code;	 /* the close code sent after the last queued message (0: 1000) */
	int inflight;	 /* entries in sent[] */
	/* the entries delivered on this session and not answered yet: the window. The
	 * results of policies and trust updates among them need no look-up of the entry (a
	 * miss takes the database's word) */
	struct {
		char id[MDM_QID_LEN + 1];
		uint8_t kind;
	} sent[WINDOW];
	unsigned sent_at;
	char device[33];
	uint8_t pub[POL_PUBKEY_LEN]; /* the certificate's Ed25519 key (device id = its hash) */
	struct outmsg *head, *tail;
	size_t nout;
	struct outmsg *hhead, *htail; /* held until the turn's transaction commits */
	struct sess *bnext;	      /* on B.held */
	bool bheld;
	uint8_t *rx;
	size_t rx_len;
	struct mdm_image_dl *dl; /* a plain HTTP request: GET /v1/images/... (mdm_image.c) */
};

struct srv {
	struct mdm *m;
	struct mdm_store *st;
	struct mdm_audit_store *audit; /* uploaded audit records (mdm_audit.h) */
	struct lws_context *ctx;
	lws_sorted_usec_list_t sul;
	lws_sorted_usec_list_t sul_wake; /* more looks shortly after a WAL write */
	unsigned wake_step;
	int64_t since;
	struct sess *hash[HASH_SIZE];
	size_t sessions;
	uint8_t trust_root[CELLS_MAX_TRUST_ROOT];
	size_t trust_root_len;
	uint8_t *delegation;
	size_t delegation_len;
	int watch_fd;	      /* inotify on the state dir (-1: none, the timer polls) */
	int64_t renew_before; /* --renew-before: seconds before expiry the key is renewed */
	bool renew_off;
};

static struct srv S;
/* the keepalive's periods (seconds); CELLS_MDM_KEEPALIVE=PING,HANGUP for tests */
static int ka_ping = KEEPALIVE_PING_S, ka_hangup = KEEPALIVE_HANGUP_S, ka_look = KEEPALIVE_LOOK_S;
static volatile sig_atomic_t quit;

/* The loop turn's write batch: one transaction, and the sessions whose messages wait
 * for its commit. */
static struct {
	bool open;
	struct sess *held;
} B;

static void turn_end(void);

/* Open the turn's transaction before a write (no-op when open). If it cannot be opened
 * the writes go one by one, as before, and nothing is held. */
static void batch_open(void)
{
	cells_err_t err = {0};
	if (B.open)
		return;
	if (mdm_store_begin(S.st, &err) < 0) {
		log_warn("write batch: %s", err.msg);
		return;
	}
	B.open = true;
}

/* Commit the turn's writes, then release the messages held for them. A failed commit
 * (rolled back) sends none of them: the sessions that had some are closed, so their
 * devices reconnect, get their delivered entries again and re-send their results. */
static void batch_flush(void)
{
	cells_err_t err = {0};
	if (!B.open)
		return;
	B.open = false;
	bool ok = mdm_store_commit(S.st, &err) == 0;
	if (!ok)
		log_error("write batch: %s: closing the sessions that wait for it", err.msg);
	while (B.held) {
		struct sess *ss = B.held;
		B.held = ss->bnext;
		ss->bnext = NULL;
		ss->bheld = false;
		if (!ok) {
			while (ss->hhead) {
				struct outmsg *o = ss->hhead;
				ss->hhead = o->next;
				ss->nout--;
				free(o);
			}
			ss->close_after_write = true;
		} else if (ss->hhead) {
			if (ss->tail)
				ss->tail->next = ss->hhead;
			else
				ss->head = ss->hhead;
			ss->tail = ss->htail;
		}
		ss->hhead = ss->htail = NULL;
		lws_callback_on_writable(ss->wsi);
	}
}

static void batch_unhold(struct sess *ss)
{
	if (!ss->bheld)
		return;
	for (struct sess **pp = &B.held; *pp; pp = &(*pp)->bnext)
		if (*pp == ss) {
			*pp = ss->bnext;
			break;
		}
	ss->bheld = false;
	while (ss->hhead) {
		struct outmsg *o = ss->hhead;
		ss->hhead = o->next;
		ss->nout--;
		free(o);
	}
	ss->htail = NULL;
}

static unsigned hash_of(const char *id)
{
	unsigned h = 2166136261u;
	for (; *id; id++)
		h = (h ^ (unsigned char)*id) * 16777619u;
	return h % HASH_SIZE;
}

static struct sess *find_dev(const char *id)
{
	for (struct sess *s = S.hash[hash_of(id)]; s; s = s->hnext)
		if (!strcmp(s->device, id))
			return s;
	return NULL;
}

static void hash_del(struct sess *ss)
{
	if (!ss->hashed)
		return;
	for (struct sess **pp = &S.hash[hash_of(ss->device)]; *pp; pp = &(*pp)->hnext)
		if (*pp == ss) {
			*pp = ss->hnext;
			break;
		}
	ss->hashed = false;
	S.sessions--;
}

static void hash_add(struct sess *ss)
{
	unsigned h = hash_of(ss->device);
	ss->hnext = S.hash[h];
	S.hash[h] = ss;
	ss->hashed = true;
	S.sessions++;
}

static int64_t now_s(void)
{
	return time(NULL);
}

static int64_t mono_s(void)
{
	return cells_mono_ns() / 1000000000;
}

/* Queue an envelope for writing on this session (sent from WRITEABLE). */
static int sess_send(struct sess *ss, Cells__V1__Envelope *env)
{
	cells_err_t err;
	cleanup_free uint8_t *b = NULL;
	size_t n;
	if (cells_envelope_encode(env, &b, &n, &err) < 0) {
		log_warn("encode: %s", err.msg);
		return -1;
	}
	struct outmsg *o = malloc(sizeof *o + LWS_PRE + n);
	if (!o)
		return -1;
	o->next = NULL;
	o->len = n;
	memcpy(o->data + LWS_PRE, b, n);
	ss->nout++;
	if (B.open) { /* after the turn's commit (batch_flush) */
		if (ss->htail)
			ss->htail->next = o;
		else
			ss->hhead = o;
		ss->htail = o;
		if (!ss->bheld) {
			ss->bheld = true;
			ss->bnext = B.held;
			B.held = ss;
		}
		return 0;
	}
	if (ss->tail)
		ss->tail->next = o;
	else
		ss->head = o;
	ss->tail = o;
	lws_callback_on_writable(ss->wsi);
	return 0;
}

static void new_id(char *out, size_t n, const char *prefix)
{
	static uint64_t ctr;
	snprintf(out, n, "%s-%llx-%llx", prefix, (unsigned long long)now_s(),
		 (unsigned long long)++ctr);
}

static void send_error(struct sess *ss, const char *corr, unsigned code, const char *reason)
{
	Cells__V1__Envelope env = CELLS__V1__ENVELOPE__INIT;
	Cells__V1__Error e = CELLS__V1__ERROR__INIT;
	char id[48];
	new_id(id, sizeof id, "e");
	env.message_id = id;
	env.correlation_id = (char *)(corr ? corr : "");
	e.code = code;
	e.reason = (char *)reason;
	env.body_case = CELLS__V1__ENVELOPE__BODY_ERROR;
	env.error = &e;
	sess_send(ss, &env);
}

/* The device of the verified peer certificate: its CN names the device (the CA set it
 * to the hash of the identity key the device proved at enrollment); the registry gives
 * that device's identity key (to pub_out when not NULL: what its receipts, checkpoints
 * and results are verified with, never the certificate's key) and the TLS key the
 * certificate must carry. A device enrolled before identity binding has no keys row: its
 * certificate key is its identity (CN = hash of it). */
static int peer_device(struct lws *wsi, char out[33], uint8_t *pub_out, cells_err_t *err)
{
	SSL *ssl = lws_get_ssl(lws_get_network_wsi(wsi));
	if (!ssl)
		return cells_err_set(err, EPERM, "not TLS");
	cleanup_x509 X509 *c = SSL_get1_peer_certificate(ssl);
	if (!c)
		return cells_err_set(err, EPERM, "no client certificate");
	if (SSL_get_verify_result(ssl) != X509_V_OK)
		return cells_err_set(err, EPERM, "client certificate not verified");
	EVP_PKEY *pk = X509_get0_pubkey(c);
	uint8_t raw[POL_PUBKEY_LEN], h[POL_KEYID_LEN], idk[POL_PUBKEY_LEN], tls[POL_PUBKEY_LEN];
	if (!pk || EVP_PKEY_id(pk) != EVP_PKEY_ED25519 || pol_key_raw_public(pk, raw, err) < 0)
		return cells_err_set(err, EPERM, "client certificate key is not Ed25519");
	char cn[128] = "";
	X509_NAME_get_text_by_NID(X509_get_subject_name(c), NID_commonName, cn, sizeof cn);
	if (strlen(cn) != 32)
		return cells_err_set(err, EPERM, "certificate CN is not a device id");
	int k = mdm_store_device_keys(S.st, cn, idk, tls, err);
	if (k < 0)
		return -1;
	if (k == 0) {
		memcpy(idk, raw, sizeof idk);
		memcpy(tls, raw, sizeof tls);
	}
	pol_key_id(idk, h);
	cells_hex(h, 16, out);
	if (strcmp(cn, out))
		return cells_err_set(err, EPERM, "certificate CN is not its device's identity");
	if (memcmp(raw, tls, sizeof raw))
		return cells_err_set(err, EPERM,
				     "certificate key is not the device's current TLS key");
	if (pub_out)
		memcpy(pub_out, idk, POL_PUBKEY_LEN);
	return 0;
}

/* Read trust_root.bin and delegation.bin again: `cells-mdm keys` may have changed them
 * since the server started. */
static int reload_trust(cells_err_t *err)
{
	char p[PATH_MAX];
	cleanup_free uint8_t *tr = NULL;
	uint8_t *del = NULL;
	size_t trn, dn;
	mdm_path(S.m, "trust_root.bin", p);
	if (cells_read_file(p, sizeof S.trust_root, &tr, &trn, err) < 0)
		return -1;
	mdm_path(S.m, "delegation.bin", p);
	if (cells_read_file(p, CELLS_MAX_SIGNED_BLOB, &del, &dn, err) < 0)
		return -1;
	memcpy(S.trust_root, tr, trn);
	S.trust_root_len = trn;
	free(S.delegation);
	S.delegation = del;
	S.delegation_len = dn;
	return 0;
}

/* A token of the form SECRET.ROOTDIGEST whose digest is not that of the current root
 * (made before a `keys rotate-root`): the device would refuse the answer. */
static int token_root_check(const char *token, cells_err_t *err)
{
	const char *dot = strrchr(token, '.');
	if (!dot || strlen(dot + 1) != 2 * MDM_ROOT_DIGEST_LEN)
		return 0; /* no digest: the device refuses such a token itself */
	uint8_t dg[MDM_ROOT_DIGEST_LEN];
	char hex[2 * MDM_ROOT_DIGEST_LEN + 1];
	if (mdm_root_digest(S.trust_root, S.trust_root_len, dg, err) < 0)
		return -1;
	cells_hex(dg, sizeof dg, hex);
	if (strcmp(hex, dot + 1))
		return cells_err_set(err, EACCES,
				     "the token names another trust root (rotated since it was "
				     "made): make a new token");
	return 0;
}

static void handle_enroll(struct sess *ss, const Cells__V1__Envelope *env)
{
	cells_err_t err = {0};
	if (env->body_case != CELLS__V1__ENVELOPE__BODY_ENROLL_REQUEST) {
		send_error(ss, env->message_id, 5, "only EnrollRequest is accepted on /v1/enroll");
		ss->close_after_write = true;
		return;
	}
	const Cells__V1__EnrollRequest *rq = env->enroll_request;
	char dev[33], serial[33];
	cleanup_free uint8_t *cert = NULL;
	cleanup_free uint8_t *ca = NULL;
	size_t cl, cal;
	unsigned code = 4;
	uint8_t idk[POL_PUBKEY_LEN], tls[POL_PUBKEY_LEN], h[POL_KEYID_LEN];
	char cn[33];
	if (strlen(rq->token) > 128) {
		code = 1;
		cells_err_set(&err, EINVAL, "token too long");
		goto fail;
	}
	/* the current keys, and the token's root digest checked before the token is used
	 * up: a token made for a rotated root is refused and stays unconsumed */
	if (reload_trust(&err) < 0) {
		code = 5;
		goto fail;
	}
	if (token_root_check(rq->token, &err) < 0) {
		code = 4;
		goto fail;
	}
	/* the token first: nothing is signed for an unauthenticated request */
	if (mdm_store_token_consume(S.st, rq->token, now_s(), &err) < 0) {
		code = err.code == ETIME ? 7 : 4;
		goto fail;
	}
	/* the identity key binds the CSR's TLS key; CN = device id = hash(identity key) */
	if (mdm_enroll_binding_verify(rq->identity_binding, rq->csr_der.data, rq->csr_der.len,
				      now_s(), idk, &err) < 0) {
		code = 4;
		goto fail;
	}
	pol_key_id(idk, h);
	cells_hex(h, 16, cn);
	if (mdm_ca_issue_for(S.m, rq->csr_der.data, rq->csr_der.len, cn, dev, tls, serial, &cert,
			     &cl, &ca, &cal, &err) < 0) {
		code = 1;
		goto fail;
	}
	if (mdm_store_device_enroll(S.st, dev, serial, now_s(), &err) < 0 ||
	    mdm_store_device_keys_set(S.st, dev, idk, tls, &err) < 0) {
		code = 5;
		goto fail;
	}
	Cells__V1__Envelope out = CELLS__V1__ENVELOPE__INIT;
	Cells__V1__EnrollResponse r = CELLS__V1__ENROLL_RESPONSE__INIT;
	char id[48];
	new_id(id, sizeof id, "n");
	out.message_id = id;
	out.correlation_id = env->message_id;
	r.device_id = dev;
	r.device_cert_der.data = cert;
	r.device_cert_der.len = cl;
	r.ca_cert_der.data = ca;
	r.ca_cert_der.len = cal;
	r.trust_root = cells__v1__trust_root__unpack(NULL, S.trust_root_len, S.trust_root);
	Cells__V1__Signed *del =
	    S.delegation ? cells__v1__signed__unpack(NULL, S.delegation_len, S.delegation) : NULL;
	r.delegations = &del;
	r.n_delegations = del ? 1 : 0;
	out.body_case = CELLS__V1__ENVELOPE__BODY_ENROLL_RESPONSE;
	out.enroll_response = &r;
	sess_send(ss, &out);
	if (r.trust_root)
		cells__v1__trust_root__free_unpacked(r.trust_root, NULL);
	if (del)
		cells__v1__signed__free_unpacked(del, NULL);
	log_info("enrolled device %s (certificate serial %s)", dev, serial);
	ss->close_after_write = true;
	return;
fail:
	log_warn("enrollment refused: %s", err.msg);
	send_error(ss, env->message_id, code, err.msg);
	ss->close_after_write = true;
}

static void ack(struct sess *ss, const char *msg_id)
{
	Cells__V1__Envelope out = CELLS__V1__ENVELOPE__INIT;
	Cells__V1__Ack a = CELLS__V1__ACK__INIT;
	char id[48];
	char *ids[1] = {(char *)msg_id};
	new_id(id, sizeof id, "a");
	out.message_id = id;
	out.correlation_id = (char *)msg_id;
	a.message_ids = ids;
	a.n_message_ids = 1;
	out.body_case = CELLS__V1__ENVELOPE__BODY_ACK;
	out.ack = &a;
	sess_send(ss, &out);
}

/* The signing key (delegated for the policy and command roles): it signs audit acks. */
/* The signing key, loaded again when signing.key changed (keys delegate/revoke). */
static EVP_PKEY *ack_key(void)
{
	static EVP_PKEY *k;
	static struct timespec mt;
	cells_err_t err = {0};
	char p[PATH_MAX];
	struct stat st;
	mdm_path(S.m, "signing.key", p);
	if (k && stat(p, &st) == 0 &&
	    (st.st_mtim.tv_sec != mt.tv_sec || st.st_mtim.tv_nsec != mt.tv_nsec)) {
		EVP_PKEY_free(k);
		k = NULL;
	}
	if (!k) {
		if (stat(p, &st) == 0)
			mt = st.st_mtim;
		if (!(k = mdm_load_key(S.m, "signing.key", &err)))
			log_warn("audit ack: %s", err.msg);
	}
	return k;
}

/* Ack a stored batch with a SIGNED_AUDIT_ACK: the device lets its records' cursor move
 * only on this (cellsd-net, which relays it, cannot make one). */
static void audit_ack(struct sess *ss, const Cells__V1__Envelope *env,
		      const struct mdm_audit_store_result *res)
{
	cells_err_t err = {0};
	const Cells__V1__AuditBatch *b = env->audit_batch;
	Cells__V1__AuditAck aa = CELLS__V1__AUDIT_ACK__INIT;
	aa.device_id = ss->device;
	aa.seq = res->last_seq;
	if (b->n_records)
		aa.head_hash = b->records[b->n_records - 1]->hash;
	aa.batch_message_id = env->message_id;
	aa.at = now_s();
	uint8_t buf[CELLS_MAX_AUDIT_ACK];
	size_t n = cells__v1__audit_ack__get_packed_size(&aa);
	EVP_PKEY *k = ack_key();
	Cells__V1__Signed sg = CELLS__V1__SIGNED__INIT;
	if (!k || n > sizeof buf) {
		send_error(ss, env->message_id, 5, "the server cannot sign audit acks");
		return;
	}
	cells__v1__audit_ack__pack(&aa, buf);
	if (pol_sign(&sg, CELLS__V1__SIGNED_KIND__SIGNED_AUDIT_ACK, buf, n, k, &err) < 0) {
		log_warn("audit ack: %s", err.msg);
		send_error(ss, env->message_id, 5, "the server cannot sign audit acks");
		return;
	}
	Cells__V1__Envelope out = CELLS__V1__ENVELOPE__INIT;
	Cells__V1__Ack a = CELLS__V1__ACK__INIT;
	char id[48];
	char *ids[1] = {env->message_id};
	new_id(id, sizeof id, "a");
	out.message_id = id;
	out.correlation_id = env->message_id;
	a.message_ids = ids;
	a.n_message_ids = 1;
	a.audit_ack = &sg;
	out.body_case = CELLS__V1__ENVELOPE__BODY_ACK;
	out.ack = &a;
	sess_send(ss, &out);
	pol_signed_clear(&sg);
}

/* An AuditBatch on an authenticated session: the device and its key come from the
 * client certificate; the payload naming another device is refused by the store. Stored
 * (all or nothing, continuity checked) and acknowledged, or refused with Error 9 and
 * logged; a refusal that is a continuity break also leaves an alert for `audit verify`. */
static void handle_audit(struct sess *ss, const Cells__V1__Envelope *env)
{
	cells_err_t err = {0};
	struct mdm_audit_store_result res;
	if (mdm_audit_store_batch(S.audit, ss->device, ss->pub, env->audit_batch, &res, &err) < 0) {
		log_warn("device %s: audit batch %s refused%s: %s", ss->device, env->message_id,
			 res.alert ? " (alert recorded)" : "", err.msg);
		send_error(ss, env->message_id, 9, err.msg);
		return;
	}
	log_info("device %s: audit batch %s stored: records %llu..%llu, %llu new, checkpoint %llu",
		 ss->device, env->message_id, (unsigned long long)res.first_seq,
		 (unsigned long long)res.last_seq, (unsigned long long)res.stored,
		 (unsigned long long)res.checkpoint_seq);
	/* test hook: die after storing, before the Ack (the device must re-send; the server
	 * must not store twice) */
	testhook_point("mdm-audit-before-ack");
	audit_ack(ss, env, &res);
}

/* A device's string, bounded, as JSON (the device is authenticated, not trusted). */
static json_object *dev_string(const char *v, size_t max)
{
	return json_object_new_string_len(v ? v : "", (int)strnlen(v ? v : "", max));
}

/* Compliance reasons, VPs and audit seqs of a DeviceHello; a head that went backwards is
 * logged and flagged for `cells-mdm devices`. */
static void device_report(struct sess *ss, const Cells__V1__DeviceHello *h)
{
	cells_err_t err = {0};
	json_object *arr = json_object_new_array(), *vps = json_object_new_array();
	for (size_t i = 0; i < h->n_compliance_reasons && i < 64; i++)
		json_object_array_add(arr, dev_string(h->compliance_reasons[i], 128));
	for (size_t i = 0; i < h->n_vps && i < 32; i++) {
		const Cells__V1__VpStatus *v = h->vps[i];
		json_object *o = json_object_new_object();
		json_object_object_add(o, "name", dev_string(v->name, 64));
		json_object_object_add(o, "running", json_object_new_boolean(v->running));
		json_object_object_add(o, "foreground", json_object_new_boolean(v->foreground));
		json_object_object_add(o, "locked", json_object_new_boolean(v->locked));
		json_object_object_add(o, "number", dev_string(v->number, 32));
		json_object_object_add(o, "image", dev_string(v->image, 160));
		json_object_array_add(vps, o);
	}
	char flag[200];
	if (mdm_store_device_report(
		S.st, ss->device, json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN),
		json_object_to_json_string_ext(vps, JSON_C_TO_STRING_PLAIN), h->audit_head_seq,
		h->audit_uploaded_seq, now_s(), flag, &err) < 0)
		log_warn("device %s: %s", ss->device, err.msg);
	else if (flag[0])
		log_warn("device %s: AUDIT ALERT: %s", ss->device, flag);
	json_object_put(arr);
	json_object_put(vps);
	if (h->compliance != CELLS__V1__COMPLIANCE__COMPLIANT)
		log_info("device %s: non-compliant (%zu reasons)", ss->device,
			 h->n_compliance_reasons);
}

/* The newest policy version queued, delivered or installed for device. */
static uint64_t latest_policy_version(const char *device)
{
	cells_err_t err = {0};
	uint64_t installed = 0, v = 0;
	cleanup_free uint8_t *blob = NULL;
	size_t n;
	if (mdm_store_latest_policy_blob(S.st, device, &installed, &blob, &n, &err) < 0) {
		log_warn("device %s: %s", device, err.msg);
		return installed;
	}
	if (blob) { /* our own entry: a Signed policy we signed */
		cleanup_signed Cells__V1__Signed *sg = NULL;
		if (cells_signed_decode(blob, n, &sg, NULL) == 0) {
			cleanup_policy_pb Cells__V1__Policy *p =
			    cells__v1__policy__unpack(NULL, sg->payload.len, sg->payload.data);
			if (p)
				v = p->version;
		}
	}
	return v > installed ? v : installed;
}

/* A CommandResult on an authenticated session. Its correlation_id, when set, must name
 * one of this device's queue entries: a result for another device's entry (or for none)
 * is refused with Error{8}, logged, and changes nothing (no receipt row, no state). A
 * receipt is verified and stored before the entry counts as done (§14); a refused
 * receipt marks the entry failed ("receipt refused: ...") and is answered Error{4}; the
 * genuine receipt that follows is verified, stored, and makes the entry acknowledged. */
static void sent_add(struct sess *ss, const struct mdm_qentry *e)
{
	unsigned slot = ss->sent_at++ % WINDOW;
	for (unsigned i = 0; i < WINDOW; i++)
		if (!ss->sent[i].id[0]) {
			slot = i;
			break;
		}
	snprintf(ss->sent[slot].id, sizeof ss->sent[slot].id, "%s", e->id);
	ss->sent[slot].kind = (uint8_t)e->kind;
}

/* The kind of entry id when it was delivered on this session (then forgotten: its slot
 * of the window is free again), else -1. */
static int sent_take(struct sess *ss, const char *id)
{
	for (unsigned i = 0; id[0] && i < WINDOW; i++)
		if (!strcmp(ss->sent[i].id, id)) {
			ss->sent[i].id[0] = 0;
			if (ss->inflight > 0)
				ss->inflight--;
			return ss->sent[i].kind;
		}
	return -1;
}

static void sent_clear(struct sess *ss)
{
	for (unsigned i = 0; i < WINDOW; i++)
		ss->sent[i].id[0] = 0;
	ss->inflight = 0;
}

static void handle_result(struct sess *ss, const Cells__V1__Envelope *env)
{
	cells_err_t err = {0};
	const Cells__V1__CommandResult *r = env->result;
	const char *corr = env->correlation_id;
	/* the answer to a policy or trust update sent on this session (a fan-out's case):
	 * the entry is known to be this device's, no receipt to check, and its state is
	 * written without waiting (it travels with the next query; the Ack waits for the
	 * commit as every other) */
	/* any answer to an entry of the window frees its slot, whatever the database then
	 * says (an entry cancelled or replaced meanwhile is answered too) */
	int kind = sent_take(ss, corr);
	bool mine = !r->receipt && (kind == MDM_QK_POLICY || kind == MDM_QK_TRUST);
	if (corr[0] && !mine) {
		struct mdm_qentry e = {0};
		int k = mdm_store_queue_get(S.st, corr, ss->device, &e, &err);
		mdm_qentry_clear(&e);
		/* the result of an image offer names it: command_id "image:NAME@VERSION" */
		if (k == 1 && e.kind == MDM_QK_IMAGE &&
		    (!r->command_id || strcmp(r->command_id, e.dedup))) {
			char why[200];
			snprintf(why, sizeof why, "queue entry %.64s is %s, not %.64s", corr,
				 e.dedup, r->command_id ? r->command_id : "");
			log_warn("device %s: result %s refused: %s", ss->device, env->message_id,
				 why);
			send_error(ss, env->message_id, 8, why);
			return;
		}
		if (k < 0) { /* our storage failed: no answer, the device sends it again */
			log_warn("device %s: %s", ss->device, err.msg);
			return;
		}
		if (k == 0) {
			char why[160];
			snprintf(why, sizeof why, "no queue entry %.64s for device %s", corr,
				 ss->device);
			log_warn("device %s: result %s refused: %s", ss->device, env->message_id,
				 why);
			send_error(ss, env->message_id, 8, why);
			return;
		}
	}
	const char *reason = r->reason;
	char refused[CELLS_ERR_MSG_MAX + 32];
	int st = -1;
	cells_err_t rerr = {0};
	int rc = mine ? 0 : mdm_receipt_check(S.st, ss->device, ss->pub, corr, r, &rerr);
	if (rc == -1) { /* our storage failed: no ack, the device sends it again */
		log_warn("device %s: %s", ss->device, rerr.msg);
		return;
	}
	if (rc < 0) {
		log_warn("device %s: %s (%s) refused: %s", ss->device, corr[0] ? corr : "-",
			 r->command_id ? r->command_id : "", rerr.msg);
		st = MDM_Q_FAILED;
		snprintf(refused, sizeof refused, "%s%s",
			 strncmp(rerr.msg, "receipt refused", 15) ? "receipt refused: " : "",
			 rerr.msg);
		reason = refused;
	} else if (r->status == CELLS__V1__RESULT_STATUS__RESULT_DONE)
		st = MDM_Q_ACKNOWLEDGED;
	else if (r->status == CELLS__V1__RESULT_STATUS__RESULT_FAILED ||
		 r->status == CELLS__V1__RESULT_STATUS__RESULT_REJECTED)
		st = MDM_Q_FAILED;
	/* a look for more entries: unless this was one of ours and the window had room
	 * (then the last look found the queue empty, and a new entry wakes the session) */
	if (!mine || ss->inflight >= WINDOW)
		ss->want_check = true;
	if (st >= 0 && corr[0]) {
		int n =
		    mine ? (mdm_store_queue_set_state_later(S.st, corr, ss->device, st, reason,
							    now_s(), &err) < 0
				? -1
				: 1)
		    : st == MDM_Q_ACKNOWLEDGED && r->receipt
			? mdm_store_queue_receipt_verified(S.st, corr, ss->device, now_s(), &err)
			: mdm_store_queue_set_state(S.st, corr, ss->device, st, reason, now_s(),
						    &err);
		if (n < 0) { /* our storage failed: no answer, the device sends it again */
			log_warn("device %s: %s", ss->device, err.msg);
			return;
		}
		if (n > 0)
			log_info("device %s: %s %s%s%s", ss->device, corr, mdm_qstate_name(st),
				 reason[0] ? ": " : "", reason);
		else if (n == 0)
			log_info("device %s: %s already answered (state unchanged)", ss->device,
				 corr);
	}
	if (rc < 0) /* not acknowledged: the device keeps its receipt as unconfirmed */
		send_error(ss, env->message_id, 4, rerr.msg);
	else
		ack(ss, env->message_id); /* stored: the device may forget it */
}

static void handle_device(struct sess *ss, const Cells__V1__Envelope *env)
{
	cells_err_t err = {0};
	switch (env->body_case) {
	case CELLS__V1__ENVELOPE__BODY_HELLO:
	case CELLS__V1__ENVELOPE__BODY_STATUS: {
		const Cells__V1__DeviceHello *h =
		    env->body_case == CELLS__V1__ENVELOPE__BODY_HELLO ? env->hello : env->status;
		if (strcmp(h->device_id, ss->device)) {
			send_error(ss, env->message_id, 8,
				   "device id does not match the certificate");
			return;
		}
		if (mdm_store_device_seen(S.st, ss->device, true, now_s(), h->policy_version,
					  h->agent_version, h->compliance, &err) < 0)
			log_warn("device %s: %s", ss->device, err.msg);
		device_report(ss, h);
		if (env->body_case == CELLS__V1__ENVELOPE__BODY_HELLO) {
			/* a new session: what was delivered on an earlier one is sent again */
			if (mdm_store_queue_requeue(S.st, ss->device, &err) < 0)
				log_warn("device %s: %s", ss->device, err.msg);
			Cells__V1__Envelope out = CELLS__V1__ENVELOPE__INIT;
			Cells__V1__ServerHello sh = CELLS__V1__SERVER_HELLO__INIT;
			char id[48];
			new_id(id, sizeof id, "h");
			out.message_id = id;
			out.correlation_id = env->message_id;
			sh.server_time = now_s();
			sh.latest_policy_version = latest_policy_version(ss->device);
			out.body_case = CELLS__V1__ENVELOPE__BODY_SERVER_HELLO;
			out.server_hello = &sh;
			sess_send(ss, &out);
			ss->hello = true;
			sent_clear(ss);
			log_info("device %s: hello", ss->device);
			ss->want_check = true;
		}
		return;
	}
	case CELLS__V1__ENVELOPE__BODY_RESULT:
		handle_result(ss, env);
		return;
	case CELLS__V1__ENVELOPE__BODY_AUDIT_BATCH:
		handle_audit(ss, env);
		return;
	case CELLS__V1__ENVELOPE__BODY_ACK:
	case CELLS__V1__ENVELOPE__BODY_ERROR:
		return;
	default:
		send_error(ss, env->message_id, 2, "body not supported by this server");
		return;
	}
}

/* Send entry e (marked delivered) on the session. */
static void send_entry(struct sess *ss, struct mdm_qentry *e)
{
	Cells__V1__Signed *sg = NULL;
	Cells__V1__TrustUpdate *tu = NULL;
	if (e->kind == MDM_QK_TRUST)
		tu = cells__v1__trust_update__unpack(NULL, e->blob_len, e->blob);
	else
		sg = cells__v1__signed__unpack(NULL, e->blob_len, e->blob);
	if (!sg && !tu) {
		mdm_store_queue_set_state(S.st, e->id, ss->device, MDM_Q_FAILED, "corrupt entry",
					  now_s(), NULL);
		return;
	}
	Cells__V1__Envelope out = CELLS__V1__ENVELOPE__INIT;
	out.message_id = e->id;
	if (e->kind == MDM_QK_TRUST) {
		out.body_case = CELLS__V1__ENVELOPE__BODY_TRUST_UPDATE;
		out.trust_update = tu;
	} else if (e->kind == MDM_QK_POLICY) {
		out.body_case = CELLS__V1__ENVELOPE__BODY_POLICY;
		out.policy = sg;
	} else if (e->kind == MDM_QK_IMAGE) {
		out.body_case = CELLS__V1__ENVELOPE__BODY_IMAGE;
		out.image = sg;
	} else {
		out.body_case = CELLS__V1__ENVELOPE__BODY_COMMAND;
		out.command = sg;
	}
	sess_send(ss, &out);
	sent_add(ss, e);
	ss->inflight++;
	if (sg)
		cells__v1__signed__free_unpacked(sg, NULL);
	if (tu)
		cells__v1__trust_update__free_unpacked(tu, NULL);
}

/* Send the next queue entries, as many as the window allows, taken in one query. 1 when
 * one was sent. Fewer than asked for: nothing else is queued (a new entry wakes us). */
static int send_next(struct sess *ss)
{
	cells_err_t err = {0};
	struct mdm_qentry e[WINDOW];
	size_t n = 0;
	if (!ss->hello)
		return 0;
	if (ss->inflight >= WINDOW) { /* a result with the window full asks again */
		ss->want_check = false;
		return 0;
	}
	size_t max = (size_t)(WINDOW - ss->inflight);
	if (mdm_store_queue_take(S.st, ss->device, now_s(), max, e, &n, &err) < 0)
		log_warn("device %s: %s", ss->device, err.msg);
	if (n < max)
		ss->want_check = false;
	for (size_t i = 0; i < n; i++) {
		send_entry(ss, &e[i]);
		mdm_qentry_clear(&e[i]);
	}
	return n > 0;
}

static void sess_free(struct sess *ss)
{
	batch_unhold(ss);
	while (ss->head) {
		struct outmsg *o = ss->head;
		ss->head = o->next;
		free(o);
	}
	ss->tail = NULL;
	free(ss->rx);
	ss->rx = NULL;
}

/* The Error code for an envelope the decoder refused (docs/PROTOCOL.md §8). */
static unsigned decode_error_code(const uint8_t *p, size_t n, const cells_err_t *err)
{
	if (err->code == EMSGSIZE)
		return 3;
	if (err->code == EPROTONOSUPPORT) /* another Envelope.version */
		return 2;
	/* our version, but the body is a field this server does not know (§7): code 2 */
	Cells__V1__Envelope *e = cells__v1__envelope__unpack(NULL, n, p);
	unsigned code =
	    e && e->body_case == CELLS__V1__ENVELOPE__BODY__NOT_SET && e->base.n_unknown_fields > 0
		? 2
		: 1;
	if (e)
		cells__v1__envelope__free_unpacked(e, NULL);
	return code;
}

/* An over-limit message: answer Error{3}, then close with 1009; nothing of the message
 * is kept. An unauthenticated session (/v1/enroll) is not read any further and closed
 * as soon as the error is written. A device's session drops the rest of the message
 * (at most 5 s) so that the device can finish its frame and read the answer before the
 * close frame; closing earlier would reset the TCP connection under the unread bytes. */
static void refuse_oversize(struct sess *ss, struct lws *wsi, size_t limit)
{
	char why[96];
	snprintf(why, sizeof why, "message over the limit of %zu bytes", limit);
	log_warn("%s: %s: refused, closing", ss->device[0] ? ss->device : "enroll", why);
	free(ss->rx);
	ss->rx = NULL;
	ss->rx_len = 0;
	ss->refusing = true;
	send_error(ss, NULL, 3, why);
	ss->close_code = LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE;
	if (!ss->authed || lws_is_final_fragment(wsi)) {
		if (!ss->authed)
			lws_rx_flow_control(wsi, 0);
		ss->close_after_write = true;
	} else {
		lws_set_timeout(wsi, PENDING_TIMEOUT_USER_REASON_BASE, 5);
	}
}

static int on_rx(struct sess *ss, struct lws *wsi, const void *in, size_t len)
{
	if (ss->refusing) { /* the rest of a refused message: dropped; then we close */
		if (lws_is_final_fragment(wsi) && !ss->close_after_write) {
			ss->close_after_write = true;
			lws_callback_on_writable(wsi);
		}
		return 0;
	}
	if (!lws_frame_is_binary(wsi)) {
		static const char why[] = "text frames are not accepted";
		log_warn("%s: text frame: closing (1003)", ss->device[0] ? ss->device : "enroll");
		lws_close_reason(wsi, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE, (unsigned char *)why,
				 sizeof why - 1);
		return -1;
	}
	/* the whole frame counts as soon as its header says how long it is: a pre-auth
	 * peer announcing 1 MiB is refused at its first bytes, not after buffering them */
	size_t limit = ss->enroll ? ENROLL_MAX_MESSAGE : CELLS_MAX_ENVELOPE;
	size_t rest = lws_remaining_packet_payload(wsi);
	if (ss->rx_len + len > limit || rest > limit - ss->rx_len - len) {
		refuse_oversize(ss, wsi, limit);
		return 0;
	}
	uint8_t *nb = realloc(ss->rx, ss->rx_len + len + 1);
	if (!nb)
		return -1;
	ss->rx = nb;
	memcpy(ss->rx + ss->rx_len, in, len);
	ss->rx_len += len;
	if (!lws_is_final_fragment(wsi) || rest)
		return 0;
	cells_err_t err = {0};
	Cells__V1__Envelope *env = NULL;
	int r = cells_envelope_decode(ss->rx, ss->rx_len, &env, &err);
	if (r < 0) {
		unsigned code = decode_error_code(ss->rx, ss->rx_len, &err);
		log_warn("%s: refused a message: %s (Error %u)",
			 ss->device[0] ? ss->device : "enroll", err.msg, code);
		send_error(ss, NULL, code, err.msg);
		if (ss->enroll) /* one message per enrollment session */
			ss->close_after_write = true;
	}
	free(ss->rx);
	ss->rx = NULL;
	ss->rx_len = 0;
	if (r < 0)
		return 0;
	if (ss->enroll)
		handle_enroll(ss, env);
	else
		handle_device(ss, env);
	cells__v1__envelope__free_unpacked(env, NULL);
	return 0;
}

static int cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	struct sess *ss = user;
	cells_err_t err = {0};
	char uri[64];
	switch (reason) {
	case LWS_CALLBACK_OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION:
		/* len is OpenSSL's preverify_ok: never overrule a failed chain check. A
		 * missing certificate is allowed here (enrollment); /v1 refuses it later. */
		return len ? 0 : 1;
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
		/* before the upgrade is answered: /v1 needs a verified client certificate of
		 * an enrolled device, /v1/enroll needs none, other paths are refused */
		char dev[33];
		if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0)
			return -1;
		if (!strcmp(uri, "/v1/enroll"))
			return 0;
		if (strcmp(uri, "/v1") != 0 || peer_device(wsi, dev, NULL, &err) < 0 ||
		    mdm_store_device_known(S.st, dev, &err) != 1) {
			log_warn("refused a websocket upgrade on %s: %s", uri,
				 err.msg[0] ? err.msg : "unknown path or device");
			return -1;
		}
		return 0;
	}
	case LWS_CALLBACK_ESTABLISHED:
		memset(ss, 0, sizeof *ss);
		ss->wsi = wsi;
		if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0)
			return -1;
		if (!strcmp(uri, "/v1/enroll")) {
			ss->enroll = true;
			lws_set_timeout(wsi, PENDING_TIMEOUT_USER_REASON_BASE, 30);
			return 0;
		}
		if (strcmp(uri, "/v1") != 0) {
			log_warn("refused: unknown path");
			return -1;
		}
		if (peer_device(wsi, ss->device, ss->pub, &err) < 0) {
			log_warn("refused session: %s", err.msg);
			return -1;
		}
		int k = mdm_store_device_known(S.st, ss->device, &err);
		if (k <= 0) {
			log_warn("refused session of %s: %s", ss->device,
				 k < 0 ? err.msg : "not enrolled");
			return -1;
		}
		struct sess *old = find_dev(ss->device);
		if (old) {
			/* the device reconnected: the newer session wins */
			hash_del(old);
			old->close_after_write = true;
			lws_callback_on_writable(old->wsi);
		}
		ss->authed = true;
		ss->last_rx = mono_s();
		hash_add(ss);
		return 0;
	case LWS_CALLBACK_RECEIVE_PONG:
		ss->last_rx = mono_s();
		ss->want_ping = false;
		return 0;
	case LWS_CALLBACK_RECEIVE:
		ss->last_rx = mono_s();
		ss->want_ping = false;
		batch_open();
		return on_rx(ss, wsi, in, len);
	case LWS_CALLBACK_SERVER_WRITEABLE:
		if (ss->head) {
			struct outmsg *o = ss->head;
			int w = lws_write(wsi, o->data + LWS_PRE, o->len, LWS_WRITE_BINARY);
			ss->head = o->next;
			if (!ss->head)
				ss->tail = NULL;
			ss->nout--;
			free(o);
			if (w < 0)
				return -1;
		} else if (ss->close_after_write) {
			lws_close_reason(wsi,
					 ss->close_code ? (enum lws_close_status)ss->close_code
							: LWS_CLOSE_STATUS_NORMAL,
					 NULL, 0);
			return -1;
		} else if (ss->want_check) {
			batch_open();
			send_next(ss);
		} else if (ss->want_ping) {
			/* with a payload: lws hands an empty pong to no callback */
			uint8_t pb[LWS_PRE + 4];
			memcpy(pb + LWS_PRE, "kalv", 4);
			ss->want_ping = false;
			if (lws_write(wsi, pb + LWS_PRE, 4, LWS_WRITE_PING) < 0)
				return -1;
		}
		if (ss->head || ss->close_after_write || ss->want_check)
			lws_callback_on_writable(wsi);
		return 0;
	case LWS_CALLBACK_HTTP: {
		/* a plain HTTPS request on the websocket listener: only image downloads, by
		 * an enrolled device's certificate (the check of the /v1 upgrade) */
		char dev[33];
		const char *d = peer_device(wsi, dev, NULL, &err) == 0 &&
					mdm_store_device_known(S.st, dev, &err) == 1
				    ? dev
				    : NULL;
		if (!d && !err.msg[0])
			cells_err_set(&err, EPERM, "device %s is not enrolled", dev);
		return mdm_image_http(wsi, S.st, in ? (const char *)in : "", d, err.msg, &ss->dl);
	}
	case LWS_CALLBACK_HTTP_BODY: /* a request body (POST ...): dropped, answered 405 */
		return 0;
	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		lws_callback_on_writable(wsi);
		return 0;
	case LWS_CALLBACK_HTTP_WRITEABLE:
		return mdm_image_http_writeable(wsi, &ss->dl);
	case LWS_CALLBACK_CLOSED_HTTP:
	case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
		if (ss)
			mdm_image_http_free(&ss->dl);
		break;
	case LWS_CALLBACK_CLOSED:
		if (ss->hashed) {
			hash_del(ss);
			bool was_open = B.open;
			batch_open();
			/* the device's row, then its queue rows: the order of a HELLO on
			 * another front end (no deadlock between the two) */
			if (mdm_store_device_seen(S.st, ss->device, false, now_s(), 0, NULL, 0,
						  &err) < 0 ||
			    mdm_store_queue_requeue(S.st, ss->device, &err) < 0)
				log_warn("device %s: %s", ss->device, err.msg);
			/* a close from lws's timers (a keepalive hang-up, a timeout) runs before
			 * the loop waits: not left open across the wait (see on_poll) */
			if (!was_open)
				turn_end();
		}
		sess_free(ss);
		return 0;
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

struct take_ctx {
	struct sess **v;
	size_t *got;
};

static void take_one(size_t i, struct mdm_qentry *e, void *arg)
{
	struct take_ctx *c = arg;
	send_entry(c->v[i], e);
	c->got[i]++;
}

/* New queue entries (of any process) - those past our cursor S.since, or (lo > 0) a
 * fan-out's seqs lo..hi: the sessions of their devices that have room in their window
 * get them now, taken for all of them at once (a fan-out: one query per few hundred
 * devices on PostgreSQL, not one per device); the others look when they can
 * (want_check). */
static void check_queue_in(int64_t lo, int64_t hi)
{
	cells_err_t err = {0};
	char **ids = NULL;
	size_t n = 0, k = 0;
	if ((lo ? mdm_store_queue_in(S.st, lo, hi, &ids, &n, &err)
		: mdm_store_queue_changed(S.st, &S.since, &ids, &n, &err)) < 0)
		log_warn("queue check: %s", err.msg);
	struct sess **v = n ? calloc(n, sizeof *v) : NULL;
	char **dev = n ? calloc(n, sizeof *dev) : NULL;
	size_t *max = n ? calloc(n, sizeof *max) : NULL;
	size_t *got = n ? calloc(n, sizeof *got) : NULL;
	bool each = v && dev && max && got;
	for (size_t i = 0; i < n; i++) {
		struct sess *ss = find_dev(ids[i]);
		if (!ss || !ss->hello)
			continue;
		if (each && ss->inflight < WINDOW && !ss->want_check) {
			v[k] = ss;
			dev[k] = ss->device;
			max[k++] = (size_t)(WINDOW - ss->inflight);
			continue;
		}
		ss->want_check = true;
		lws_callback_on_writable(ss->wsi);
	}
	if (k) {
		bool was_open = B.open;
		struct take_ctx c = {v, got};
		batch_open();
		int r = mdm_store_queue_take_each(S.st, dev, max, k, now_s(), take_one, &c, &err);
		if (r < 0)
			log_warn("queue take: %s", err.msg);
		for (size_t j = 0; j < k; j++) {
			/* a full window (or a failure): look again when there is room */
			v[j]->want_check = r < 0 || got[j] >= max[j];
			if (v[j]->want_check || got[j])
				lws_callback_on_writable(v[j]->wsi);
		}
		if (!was_open) /* not left open while the loop waits (see on_poll) */
			batch_flush();
	}
	free(v);
	free(dev);
	free(max);
	free(got);
	mdm_store_free_ids(ids, n);
}

static void check_queue(void)
{
	check_queue_in(0, 0);
}

/* Renew the signing key when it is within --renew-before of its expiry, and push it
 * (mdm_keyring.c; logged in keys.log). A configuration that would renew at every look
 * (a lifetime not longer than --renew-before) is reported once and left alone. */
static void renew_check(void)
{
	cells_err_t err = {0};
	bool renewed;
	if (S.renew_off)
		return;
	batch_flush(); /* the renewal has its own transaction */
	if (mdm_keys_renew_due(S.m, S.st, S.renew_before, now_s(), &renewed, &err) < 0) {
		log_error("keys: %s", err.msg);
		mdm_keys_log(S.m, "renew failed: %s", err.msg);
		if (err.code == EINVAL)
			S.renew_off = true;
		return;
	}
	if (renewed) {
		log_info("keys: the signing key was renewed and pushed (keys.log)");
		check_queue();
	}
}

/* Ping the device sessions idle for KEEPALIVE_PING_S, close those silent for
 * KEEPALIVE_HANGUP_S (a peer gone without a FIN). */
static void idle_check(void)
{
	int64_t now = mono_s();
	for (size_t h = 0; h < HASH_SIZE; h++)
		for (struct sess *ss = S.hash[h]; ss; ss = ss->hnext) {
			int64_t idle = now - ss->last_rx;
			if (idle >= ka_hangup) {
				log_info("device %s: silent for %lld s: closing", ss->device,
					 (long long)idle);
				lws_set_timeout(ss->wsi, PENDING_TIMEOUT_USER_OK,
						LWS_TO_KILL_ASYNC);
			} else if (idle >= ka_ping && !ss->want_ping) {
				ss->want_ping = true;
				lws_callback_on_writable(ss->wsi);
			}
		}
}

static void on_poll(lws_sorted_usec_list_t *sul)
{
	cells_err_t err = {0};
	static unsigned ticks;
	renew_check();
	if ((ticks + 1) % (unsigned)ka_look == 0)
		idle_check();
	if (ticks % MDM_FRONTEND_REFRESH_S == 0) {
		batch_open(); /* our lease: our devices count as online while it is fresh */
		if (mdm_store_frontend_refresh(S.st, now_s(), &err) < 0)
			log_warn("front end lease: %s", err.msg);
	}
	if (++ticks % 5 == 0)
		batch_open();
	if (ticks % 5 == 0 && mdm_store_queue_expire(S.st, now_s(), &err) < 0)
		log_warn("expire: %s", err.msg); /* every 5 s: a write, kept rare */
	check_queue();
	/* commit now: lws runs the ripe timers before it waits in poll(), so a transaction
	 * left open here stayed open for up to POLL_US - PostgreSQL holds notifications
	 * for a session in a transaction until it ends (the ~1 s outlier of a single
	 * push with several front ends), and sqlite's write lock blocked the CLI */
	turn_end();
	lws_sul_schedule(S.ctx, 0, &S.sul, on_poll, POLL_US);
}

static void on_wake(lws_sorted_usec_list_t *sul)
{
	static const unsigned next_us[] = {4 * 1000, 45 * 1000, 200 * 1000};
	check_queue();
	turn_end();
	if (S.wake_step < CELLS_ARRAY_SIZE(next_us))
		lws_sul_schedule(S.ctx, 0, &S.sul_wake, on_wake, next_us[S.wake_step++]);
}

/* The inotify descriptor, adopted into the loop on a vhost that listens nowhere (so
 * no websocket client can select this protocol): a write to mdm.db-wal by anyone
 * (an admin command committing a queue entry) makes us check the queue now. */
static int cb_watch(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		    size_t len)
{
	if (reason != LWS_CALLBACK_RAW_RX_FILE)
		return reason == LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION ||
			       reason == LWS_CALLBACK_ESTABLISHED
			   ? -1
			   : lws_callback_http_dummy(wsi, reason, user, in, len);
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool wal = false;
	ssize_t r;
	while ((r = read(S.watch_fd, buf, sizeof buf)) > 0)
		for (char *p = buf; p < buf + r;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			if ((ev->mask & IN_Q_OVERFLOW) ||
			    (ev->len && !strcmp(ev->name, "mdm.db-wal")))
				wal = true;
			p += sizeof *ev + ev->len;
		}
	if (wal) {
		/* the WAL is written before the commit is published in the WAL index
		 * (microseconds later): look now, and again 1, 5, 50 and 250 ms later for a
		 * commit not visible yet (a closing writer, e.g. an admin command exiting,
		 * has published it) */
		check_queue();
		S.wake_step = 0;
		lws_sul_schedule(S.ctx, 0, &S.sul_wake, on_wake, 1000);
	}
	return 0;
}

static void watch_start(struct mdm *m)
{
	static struct lws_protocols wp[] = {
	    {"cells-mdm-watch", cb_watch, 0, 0, 0, NULL, 0},
	    {NULL, NULL, 0, 0, 0, NULL, 0},
	};
	struct lws_context_creation_info vi;
	memset(&vi, 0, sizeof vi);
	vi.port = CONTEXT_PORT_NO_LISTEN;
	vi.protocols = wp;
	vi.vhost_name = "watch";
	S.watch_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	struct lws_vhost *vh = S.watch_fd >= 0 ? lws_create_vhost(S.ctx, &vi) : NULL;
	lws_sock_file_fd_type fd = {.filefd = S.watch_fd};
	if (!vh || inotify_add_watch(S.watch_fd, m->state_dir, IN_MODIFY | IN_CLOSE_WRITE) < 0 ||
	    !lws_adopt_descriptor_vhost(vh, LWS_ADOPT_RAW_FILE_DESC, fd, "cells-mdm-watch", NULL)) {
		log_warn("cannot watch %s for queue changes: polling every %d ms", m->state_dir,
			 POLL_US / 1000);
		if (S.watch_fd >= 0)
			close(S.watch_fd);
		S.watch_fd = -1;
	}
}

/* ---- several front ends on PostgreSQL: LISTEN/NOTIFY --------------------------------
 * A queue entry added by any process (an admin command, another front end, a key
 * renewal) notifies MDM_QUEUE_CHANNEL with its device id at commit (mdm_store.c). Every
 * front end LISTENs on its store connection, whose socket is in the loop: the one that
 * holds the device's session sends the entry now. Notifications that arrive while a
 * query runs are buffered by libpq, so they are also drained after every loop turn. */
static int pg_lost;

static void wake_device(const char *device, void *arg)
{
	(void)arg;
	int64_t lo, hi;
	if (!mdm_queue_all_parse(device, &lo, &hi)) { /* a fan-out: its entries' devices */
		check_queue_in(lo, hi);
		return;
	}
	struct sess *ss = find_dev(device);
	if (ss && ss->hello) {
		ss->want_check = true;
		lws_callback_on_writable(ss->wsi);
	}
}

static void pg_drain(void);

/* The end of a turn: commit its writes (then send what waited for them) and act on the
 * notifications libpq read meanwhile - before the loop waits, which a read buffered by
 * libpq would not end. */
static void turn_end(void)
{
	batch_flush();
	pg_drain();
}

static void pg_drain(void)
{
	cells_err_t err = {0};
	if (!mdb_pg(mdm_store_db(S.st)) || pg_lost)
		return;
	if (mdb_notifications(mdm_store_db(S.st), wake_device, NULL, &err) < 0) {
		/* the database is gone: stop, the devices reconnect to another front end */
		log_error("%s: stopping", err.msg);
		pg_lost = 1;
		quit = 1;
	}
}

static int cb_pg(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		 size_t len)
{
	if (reason != LWS_CALLBACK_RAW_RX_FILE)
		return reason == LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION ||
			       reason == LWS_CALLBACK_ESTABLISHED
			   ? -1
			   : lws_callback_http_dummy(wsi, reason, user, in, len);
	pg_drain();
	return 0;
}

static int pg_listen_start(cells_err_t *err)
{
	static struct lws_protocols pp[] = {
	    {"cells-mdm-pg", cb_pg, 0, 0, 0, NULL, 0},
	    {NULL, NULL, 0, 0, 0, NULL, 0},
	};
	struct mdb *db = mdm_store_db(S.st);
	if (!mdb_pg(db))
		return 0;
	struct lws_context_creation_info vi;
	memset(&vi, 0, sizeof vi);
	vi.port = CONTEXT_PORT_NO_LISTEN;
	vi.protocols = pp;
	vi.vhost_name = "pg";
	if (mdb_listen(db, MDM_QUEUE_CHANNEL, err) < 0)
		return -1;
	struct lws_vhost *vh = lws_create_vhost(S.ctx, &vi);
	/* a dup: lws closes what it adopted, libpq closes its own */
	lws_sock_file_fd_type fd = {.filefd = dup(mdb_socket(db))};
	if (!vh || fd.filefd < 0 ||
	    !lws_adopt_descriptor_vhost(vh, LWS_ADOPT_RAW_FILE_DESC, fd, "cells-mdm-pg", NULL)) {
		if (fd.filefd >= 0)
			close(fd.filefd);
		return cells_err_set(err, EIO, "cannot poll the PostgreSQL connection");
	}
	return 0;
}

static void on_signal(int sig)
{
	quit = 1;
}

/* no lws validity timer (hangup 0): idle_check does the keepalive */
static const lws_retry_bo_t no_validity = {.secs_since_valid_hangup = 0};

static int parse_listen(const char *s, char host[256], int *port)
{
	const char *c = strrchr(s, ':');
	if (!c || c == s || (size_t)(c - s) >= 256)
		return -1;
	memcpy(host, s, (size_t)(c - s));
	host[c - s] = 0;
	char *end;
	long p = strtol(c + 1, &end, 10);
	if (*end || p <= 0 || p > 65535)
		return -1;
	*port = (int)p;
	/* an address for lws' iface: resolve a name to its IPv4 address */
	struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai = NULL;
	if (getaddrinfo(host, NULL, &hints, &ai) != 0 || !ai)
		return -1;
	inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, host, 256);
	freeaddrinfo(ai);
	return 0;
}

int mdm_cmd_serve(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	cells_err_t err = {0};
	char host[256] = "127.0.0.1", simdir[PATH_MAX];
	int port = 0;
	/* --modem-pty: the carrier/modem simulator in a thread of the server (sim_modem.h) */
	struct sim_modem_opts so = {.gateway = "+15550000"};
	bool renew_set = false;
	/* --admin-listen HOST:PORT / --admin-port PORT (127.0.0.1): mdm_admin_http.c */
	char ahost[256] = "127.0.0.1";
	int aport = 0;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--listen") && i + 1 < argc) {
			if (parse_listen(argv[++i], host, &port) < 0) {
				fprintf(stderr, "cells-mdm: serve: --listen takes HOST:PORT\n");
				return 2;
			}
		} else if ((!strcmp(argv[i], "--admin-listen") ||
			    !strcmp(argv[i], "--admin-port")) &&
			   i + 1 < argc) {
			char hp[300];
			snprintf(hp, sizeof hp, "%s%s", argv[i][8] == 'p' ? "127.0.0.1:" : "",
				 argv[i + 1]);
			if (parse_listen(hp, ahost, &aport) < 0) {
				fprintf(stderr, "cells-mdm: serve: %s takes %s\n", argv[i],
					argv[i][8] == 'p' ? "PORT" : "HOST:PORT");
				return 2;
			}
			i++;
		} else if (!strcmp(argv[i], "--db") && i + 1 < argc) {
			if (mdm_set_db(m, argv[++i]) < 0)
				return 2;
		} else if (!strcmp(argv[i], "--modem-pty") && i + 1 < argc) {
			so.pty_link = argv[++i];
		} else if (!strcmp(argv[i], "--gateway") && i + 1 < argc) {
			so.gateway = argv[++i];
#ifdef CELLS_TEST_HOOKS
		} else if (!strcmp(argv[i], "--test-crash-at") && i + 1 < argc) {
			if (testhook_option("test-crash-at", argv[++i], &err) < 0) {
				fprintf(stderr, "cells-mdm: serve: %s\n", err.msg);
				return 2;
			}
#endif
		} else if (!strcmp(argv[i], "--renew-before") && i + 1 < argc) {
			char *end;
			long long v = strtoll(argv[++i], &end, 10);
			if (end == argv[i] || *end || v < 0 || v > 10LL * 365 * 86400) {
				fprintf(stderr, "cells-mdm: serve: --renew-before takes seconds\n");
				return 2;
			}
			S.renew_before = v;
			renew_set = true;
		} else {
			return mdm_usage(cmd);
		}
	}
	if (!port)
		return mdm_usage(cmd);
	if (!renew_set)
		S.renew_before = MDM_RENEW_BEFORE_DEFAULT;
	S.m = m;
	char p[PATH_MAX], cert[PATH_MAX], key[PATH_MAX], ca[PATH_MAX];
	mdm_path(m, "trust_root.bin", p);
	cleanup_free uint8_t *tr = NULL;
	size_t trn;
	if (cells_read_file(p, sizeof S.trust_root, &tr, &trn, &err) < 0) {
		fprintf(stderr, "cells-mdm: serve: %s\n", err.msg);
		return 1;
	}
	memcpy(S.trust_root, tr, trn);
	S.trust_root_len = trn;
	mdm_path(m, "delegation.bin", p);
	if (cells_read_file(p, CELLS_MAX_SIGNED_BLOB, &S.delegation, &S.delegation_len, &err) < 0) {
		fprintf(stderr, "cells-mdm: serve: %s\n", err.msg);
		return 1;
	}
	mdm_path(m, "audit.db", p);
	/* sqlite: the only front end, what was online or in flight was ours. PostgreSQL:
	 * other front ends hold their devices; a device's HELLO requeues its own entries */
	if (mdm_store_open(mdm_db_where(m), &S.st, &err) < 0 ||
	    mdm_audit_store_open(m->db[0] ? m->db : p, &S.audit, &err) < 0 ||
	    (!m->db[0] && (mdm_store_devices_reset_online(S.st, &err) < 0 ||
			   mdm_store_queue_requeue_all(S.st, &err) < 0))) {
		fprintf(stderr, "cells-mdm: serve: %s\n", err.msg);
		return 1;
	}
	const char *ka = getenv("CELLS_MDM_KEEPALIVE");
	if (ka && sscanf(ka, "%d,%d", &ka_ping, &ka_hangup) == 2 && ka_ping > 0 &&
	    ka_hangup > ka_ping) {
		ka_look = ka_ping < 2 * KEEPALIVE_LOOK_S ? 1 : KEEPALIVE_LOOK_S;
	} else {
		ka_ping = KEEPALIVE_PING_S;
		ka_hangup = KEEPALIVE_HANGUP_S;
	}
	/* this front end's lease (mdm_store.h): its id is unique per process */
	uint8_t rnd[8];
	char hex[17], feid[MDM_FRONTEND_ID_LEN + 1];
	if (RAND_bytes(rnd, sizeof rnd) != 1) {
		fprintf(stderr, "cells-mdm: serve: no randomness\n");
		return 1;
	}
	cells_hex(rnd, sizeof rnd, hex);
	snprintf(feid, sizeof feid, "fe-%d-%s", (int)getpid(), hex);
	if (mdm_store_frontend_start(S.st, feid, now_s(), &err) < 0) {
		fprintf(stderr, "cells-mdm: serve: %s\n", err.msg);
		mdm_store_close(S.st);
		mdm_audit_store_close(S.audit);
		return 1;
	}
	mdm_path(m, "server.pem", cert);
	mdm_path(m, "server.key", key);
	mdm_path(m, "ca.pem", ca);
	/* many devices: raise the fd limit to its hard maximum */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	lws_set_log_level(LLL_ERR, NULL);
	static struct lws_protocols protocols[] = {
	    {CELLS_WS_SUBPROTOCOL, cb, sizeof(struct sess), RX_CHUNK, 0, NULL, 0},
	    {NULL, NULL, 0, 0, 0, NULL, 0},
	};
	struct lws_context_creation_info info;
	memset(&info, 0, sizeof info);
	info.port = port;
	info.iface = host;
	info.protocols = protocols;
	info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
		       LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT |
		       LWS_SERVER_OPTION_PEER_CERT_NOT_REQUIRED | LWS_SERVER_OPTION_DISABLE_IPV6;
	info.ssl_cert_filepath = cert;
	info.ssl_private_key_filepath = key;
	info.ssl_ca_filepath = ca;
	info.ssl_cipher_list = TLS12_CIPHERS;
	info.ssl_options_set = SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1 |
			       SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION;
	info.retry_and_idle_policy = &no_validity;
	info.timeout_secs = 20;
	info.max_http_header_data = HDR_MAX; /* pre-upgrade bytes a connection may hold */
	info.fd_limit_per_thread = (unsigned)(rl.rlim_cur > 100 ? rl.rlim_cur : 1024);
	S.ctx = lws_create_context(&info);
	if (!S.ctx) {
		fprintf(stderr,
			"cells-mdm: serve: cannot listen on %s:%d (TLS or socket setup "
			"failed)\n",
			host, port);
		mdm_store_close(S.st);
		mdm_audit_store_close(S.audit);
		return 1;
	}
	struct mdm_admin_srv_opts ao = {ahost, aport, m, S.st, S.audit};
	if (aport && mdm_admin_listen(S.ctx, &ao, &err) < 0) {
		fprintf(stderr, "cells-mdm: serve: %s\n", err.msg);
		lws_context_destroy(S.ctx);
		mdm_store_close(S.st);
		mdm_audit_store_close(S.audit);
		return 1;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	struct sim_modem *sim = NULL;
	if (so.pty_link) {
		mdm_path(m, "sim", simdir);
		so.dir = simdir;
		if (sim_modem_start(&so, &sim, &err) < 0) {
			fprintf(stderr, "cells-mdm: serve: modem simulator: %s\n", err.msg);
			lws_context_destroy(S.ctx);
			mdm_store_close(S.st);
			mdm_audit_store_close(S.audit);
			return 1;
		}
		printf("modem simulator: pty %s, gateway %s, control %s/modem.sock\n", so.pty_link,
		       so.gateway, simdir);
	}
	if (m->db[0] ? pg_listen_start(&err) < 0 : (watch_start(m), 0)) {
		fprintf(stderr, "cells-mdm: serve: %s\n", err.msg);
		if (sim)
			sim_modem_stop(sim);
		lws_context_destroy(S.ctx);
		mdm_store_close(S.st);
		mdm_audit_store_close(S.audit);
		return 1;
	}
	lws_sul_schedule(S.ctx, 0, &S.sul, on_poll, POLL_US);
	log_info("serving wss://%s:%d (subprotocol %s)", host, port, CELLS_WS_SUBPROTOCOL);
	printf("cells-mdm serving wss://%s:%d\n", host, port);
	fflush(stdout);
	while (!quit) {
		int r = lws_service(S.ctx, 0);
		batch_flush(); /* the turn's writes, then the messages that wait for them */
		pg_drain();    /* notifications libpq read during the turn's queries */
		if (r < 0)
			break;
	}
	if (sim)
		sim_modem_stop(sim);
	lws_context_destroy(S.ctx);
	mdm_admin_stop();
	batch_flush(); /* the closed sessions' requeues */
	if (mdm_store_frontend_stop(S.st, &err) < 0)
		log_warn("front end stop: %s", err.msg);
	mdm_store_close(S.st);
	mdm_audit_store_close(S.audit);
	free(S.delegation);
	log_info("stopped");
	return pg_lost ? 1 : 0;
}
