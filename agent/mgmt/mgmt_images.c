/* mgmt_images.c - delivery of signed images from the MDM (docs/PROTOCOL.md "Images").
 *
 * Envelope.image (a Signed manifest) is verified by the image store with the trust the
 * device holds (images_offer: signature for the images role before the payload is read,
 * rollback, expiry, size limit) and recorded; the envelope is acknowledged, and the file
 * is downloaded by cellsd-net: cellsd hands it the write end of a pipe with
 * NETIPC_IMAGE_GET (SHA-256, offset = the partial file's length, signed size), reads the
 * pipe from its event loop, bounds the bytes at the signed size, hashes them as it
 * appends them to STATE/images/partial/<sha>.part, and at the end of the pipe checks
 * size and SHA-256 itself (images_partial_finish). What cellsd-net reports
 * (NETIPC_IMAGE_DONE) is only the reason of a failure: completeness is never taken from
 * it. A transfer that ends short is resumed (Range) with backoff; one past the signed
 * size or with another hash is discarded (audited by the store). The outcome is a
 * CommandResult "image:NAME@VERSION" (DONE, or FAILED / REJECTED with the one-line
 * reason). Pending downloads (also after a restart of cellsd) start at each connect.
 * An offer of bytes that `cellctl image import` is writing is acknowledged and answered
 * when the import ends (mgmt_img_imported). */
#include "images.h"
#include "log.h"
#include "mgmt.h"
#include "mgmt_link.h"
#include "outbox.h"
#include "pol_image.h"
#include "pol_sig.h"
#include "cleanup.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define IMG_MAX_ATTEMPTS 8     /* transfers in a row without progress */
#define IMG_RETRY_MIN_MS 500   /* backoff after a short transfer */
#define IMG_RETRY_MAX_MS 10000 /* its cap */
#define IMG_READ_BUDGET (8u << 20)
#define IMG_STALL_MS 30000	 /* a transfer without a byte for this long is cut */
#define IMG_WRITEBACK (8u << 20) /* start writeback every 8 MiB: the final fsync is short */
#define IMG_OFFERS_MAX 32	 /* offers waiting for their result (more: the oldest goes) */

/* An offer acknowledged and not answered yet: its result carries the offer's message id
 * (the MDM matches it with its queue entry). One per image (a re-offer replaces it). */
struct img_offer {
	char hex[65], ref[IMAGES_NAME_MAX + 24];
	char corr[CELLS_MAX_ID_LEN + 1];
};

struct mgmt_img {
	bool active;				 /* a transfer is running (the pipe is open) */
	char hex[65], ref[IMAGES_NAME_MAX + 24]; /* the image downloaded (or last) */
	struct img_offer offers[IMG_OFFERS_MAX]; /* (none after a restart of cellsd) */
	size_t noffers;
	int rd, part;
	uint64_t have, size, at_start, flushed;
	EVP_MD_CTX *md;
	unsigned attempts;
	uint64_t retry_timer, stall_timer;
	uint64_t stall_mark; /* have at the last stall check */
	char reason[256];    /* the network process's last word (a hint) */
};

static uint8_t rbuf[1 << 20];

static struct mgmt_img *img_of(struct mgmt *g)
{
	if (!g->img)
		g->img = calloc(1, sizeof *g->img);
	if (g->img && !g->img->active && !g->img->md) {
		g->img->rd = -1;
		g->img->part = -1;
	}
	return g->img;
}

static void send_ack(struct mgmt *g, const char *msg_id)
{
	Cells__V1__Envelope env = CELLS__V1__ENVELOPE__INIT;
	Cells__V1__Ack a = CELLS__V1__ACK__INIT;
	char mid[40];
	char *ids[1] = {(char *)msg_id};
	outbox_msg_id(mid, "a");
	env.message_id = mid;
	env.body_case = CELLS__V1__ENVELOPE__BODY_ACK;
	env.ack = &a;
	a.message_ids = ids;
	a.n_message_ids = 1;
	cleanup_free uint8_t *b = NULL;
	size_t n;
	cells_err_t err;
	if (cells_envelope_encode(&env, &b, &n, &err) == 0)
		net_send_raw(g, b, n);
}

/* The offer of hex waiting for its result, or NULL. */
static struct img_offer *offer_find(struct mgmt_img *I, const char *hex)
{
	for (size_t k = 0; k < I->noffers; k++)
		if (!strcmp(I->offers[k].hex, hex))
			return &I->offers[k];
	return NULL;
}

static void offer_put(struct mgmt_img *I, const char *hex, const char *ref, const char *corr)
{
	struct img_offer *o = offer_find(I, hex);
	size_t k = o ? (size_t)(o - I->offers) : I->noffers;
	if (k == IMG_OFFERS_MAX) { /* full: the oldest goes (a re-offer answers it) */
		memmove(&I->offers[0], &I->offers[1], (IMG_OFFERS_MAX - 1) * sizeof I->offers[0]);
		k = IMG_OFFERS_MAX - 1;
	} else if (k == I->noffers) {
		I->noffers++;
	}
	snprintf(I->offers[k].hex, sizeof I->offers[k].hex, "%s", hex);
	snprintf(I->offers[k].ref, sizeof I->offers[k].ref, "%s", ref);
	snprintf(I->offers[k].corr, sizeof I->offers[k].corr, "%s", corr);
}

/* The offer of hex waiting for its result, taken (its message id into corr): true, or
 * false (none: the result names the image only). */
static bool offer_take(struct mgmt_img *I, const char *hex, char corr[CELLS_MAX_ID_LEN + 1])
{
	struct img_offer *o = offer_find(I, hex);
	corr[0] = 0;
	if (!o)
		return false;
	memcpy(corr, o->corr, CELLS_MAX_ID_LEN + 1);
	*o = I->offers[--I->noffers];
	return true;
}

/* The result of image ref (hex): to its offer when one waits. */
static void result(struct mgmt *g, const char *hex, const char *ref, Cells__V1__ResultStatus st,
		   const char *reason)
{
	char cid[IMAGES_NAME_MAX + 32], corr[CELLS_MAX_ID_LEN + 1];
	snprintf(cid, sizeof cid, "image:%s", ref);
	bool offered = hex && g->img && offer_take(g->img, hex, corr);
	finish_inbound(g, offered ? corr : cid, cid, st, reason, NULL, NULL);
	log_info("mgmt: %s: %s%s%s", cid,
		 st == CELLS__V1__RESULT_STATUS__RESULT_DONE ? "done" : "failed",
		 reason && *reason ? ": " : "", reason ? reason : "");
}

/* End the transfer's fds (the partial file stays). */
static void transfer_close(struct mgmt *g)
{
	struct mgmt_img *I = g->img;
	if (I->rd >= 0) {
		loop_del_fd(g->d->loop, I->rd);
		close(I->rd);
	}
	if (I->part >= 0)
		close(I->part);
	I->rd = I->part = -1;
	if (I->stall_timer)
		loop_cancel_timer(g->d->loop, I->stall_timer);
	I->stall_timer = 0;
	EVP_MD_CTX_free(I->md);
	I->md = NULL;
	I->active = false;
}

static void kick(struct mgmt *g);

static void on_retry(struct loop *l, void *data)
{
	(void)l;
	struct mgmt *g = data;
	g->img->retry_timer = 0;
	kick(g);
}

static void give_up(struct mgmt *g, const char *reason)
{
	struct mgmt_img *I = g->img;
	images_partial_fail(g->d, I->hex, reason);
	result(g, I->hex, I->ref, CELLS__V1__RESULT_STATUS__RESULT_FAILED, reason);
	I->attempts = 0;
}

/* The pipe ended: judge the file by what cellsd itself received. */
static void transfer_end(struct mgmt *g)
{
	struct mgmt_img *I = g->img;
	uint8_t h[32];
	bool complete = I->have == I->size;
	bool progress = I->have > I->at_start;
	if (complete)
		EVP_DigestFinal_ex(I->md, h, NULL);
	transfer_close(g);
	if (complete) {
		cells_err_t err = {0};
		if (images_partial_finish(g->d, I->hex, h, &err) < 0) {
			result(g, I->hex, I->ref, CELLS__V1__RESULT_STATUS__RESULT_FAILED, err.msg);
		} else {
			result(g, I->hex, I->ref, CELLS__V1__RESULT_STATUS__RESULT_DONE, "");
			mgmt_report_status(g->d);
		}
		I->attempts = 0;
		kick(g); /* the next pending image */
		return;
	}
	if (progress)
		I->attempts = 0;
	images_partial_release(g->d, I->hex); /* an import may take over meanwhile */
	if (++I->attempts >= IMG_MAX_ATTEMPTS) {
		char why[400];
		snprintf(why, sizeof why, "download failed %u times: %s", I->attempts,
			 I->reason[0] ? I->reason : "the transfer ended early");
		give_up(g, why);
		kick(g);
		return;
	}
	uint64_t ms = (uint64_t)IMG_RETRY_MIN_MS << (I->attempts < 5 ? I->attempts : 5);
	if (ms > IMG_RETRY_MAX_MS)
		ms = IMG_RETRY_MAX_MS;
	log_info("mgmt: image:%s: %llu/%llu bytes (%s): resuming in %llu ms", I->ref,
		 (unsigned long long)I->have, (unsigned long long)I->size,
		 I->reason[0] ? I->reason : "transfer ended", (unsigned long long)ms);
	I->retry_timer = loop_add_timer(g->d->loop, ms, on_retry, g);
}

/* A server (or network process) that holds the transfer open without sending: cut it
 * and resume later, like a connection loss. */
static void on_stall(struct loop *l, void *data)
{
	struct mgmt *g = data;
	struct mgmt_img *I = g->img;
	I->stall_timer = 0;
	if (!I->active)
		return;
	if (I->have == I->stall_mark) {
		snprintf(I->reason, sizeof I->reason, "no byte for %d s", IMG_STALL_MS / 1000);
		transfer_end(g);
		return;
	}
	I->stall_mark = I->have;
	I->stall_timer = loop_add_timer(l, IMG_STALL_MS, on_stall, g);
}

static void on_pipe(struct loop *l, int fd, uint32_t events, void *data)
{
	(void)l;
	(void)events;
	struct mgmt *g = data;
	struct mgmt_img *I = g->img;
	size_t budget = IMG_READ_BUDGET;
	while (budget) {
		ssize_t k = read(fd, rbuf, sizeof rbuf);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && errno == EAGAIN)
			return;
		if (k <= 0) {
			transfer_end(g);
			return;
		}
		if ((uint64_t)k > I->size - I->have) {
			/* past the signed size: the bytes are not what was signed */
			transfer_close(g);
			give_up(g, "the server sent more bytes than the signed size");
			kick(g);
			return;
		}
		if (cells_write_all(I->part, rbuf, (size_t)k) < 0) {
			char why[300];
			snprintf(why, sizeof why, "write the partial image: %s", strerror(errno));
			transfer_close(g);
			give_up(g, why);
			kick(g); /* the next pending image */
			return;
		}
		EVP_DigestUpdate(I->md, rbuf, (size_t)k);
		I->have += (uint64_t)k;
		if (I->have - I->flushed >= IMG_WRITEBACK) {
			sync_file_range(I->part, (off64_t)I->flushed,
					(off64_t)(I->have - I->flushed), SYNC_FILE_RANGE_WRITE);
			I->flushed = I->have;
		}
		images_partial_progress(g->d, I->hex, I->have);
		budget = (size_t)k < budget ? budget - (size_t)k : 0;
	}
}

/* Hash what the partial file holds already (a resumed download). */
static int hash_prefix(int fd, uint64_t n, EVP_MD_CTX *md)
{
	uint64_t off = 0;
	while (off < n) {
		size_t want = n - off < sizeof rbuf ? (size_t)(n - off) : sizeof rbuf;
		ssize_t k = pread(fd, rbuf, want, (off_t)off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		EVP_DigestUpdate(md, rbuf, (size_t)k);
		off += (uint64_t)k;
	}
	return 0;
}

/* Start the next pending download when online and idle. */
static void kick(struct mgmt *g)
{
	struct mgmt_img *I = img_of(g);
	if (!I || I->active || I->retry_timer || !(g->state & MGMT_ST_ONLINE) || g->ipc_fd < 0)
		return;
	char hex[65], ref[IMAGES_NAME_MAX + 24];
	if (images_next_pending(g->d, hex, ref) < 0)
		return;
	if (strcmp(hex, I->hex))
		I->attempts = 0;
	memcpy(I->hex, hex, sizeof hex);
	memcpy(I->ref, ref, sizeof ref);
	I->reason[0] = 0;
	cells_err_t err = {0};
	int pfd[2] = {-1, -1};
	I->part = images_partial_open(g->d, hex, &I->have, &I->size, &err);
	if (I->part < 0) {
		log_warn("mgmt: image:%s: %s", ref, err.msg);
		give_up(g, err.msg);
		return;
	}
	I->at_start = I->flushed = I->have;
	I->md = EVP_MD_CTX_new();
	if (!I->md || !EVP_DigestInit_ex(I->md, EVP_sha256(), NULL) ||
	    hash_prefix(I->part, I->have, I->md) < 0) {
		transfer_close(g);
		give_up(g, "cannot read the partial image");
		return;
	}
	if (I->have > I->size) {
		transfer_close(g);
		give_up(g, "the partial image is longer than the signed size");
		return;
	}
	if (I->have == I->size) { /* complete already (a crash before the rename) */
		I->active = true;
		transfer_end(g);
		return;
	}
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		transfer_close(g);
		log_warn("mgmt: image:%s: pipe: %s", ref, strerror(errno));
		I->retry_timer = loop_add_timer(g->d->loop, IMG_RETRY_MAX_MS, on_retry, g);
		return;
	}
	fcntl(pfd[0], F_SETPIPE_SZ, 1 << 20);
	cells_set_nonblock(pfd[0]);
	Cells__Net__V1__NetImageGet m = CELLS__NET__V1__NET_IMAGE_GET__INIT;
	m.sha256 = hex;
	m.offset = I->have;
	m.size = I->size;
	int r = netipc_send_pb_fd(g->ipc_fd, NETIPC_IMAGE_GET, &m.base, pfd[1], &err);
	close(pfd[1]);
	I->rd = pfd[0];
	I->active = true;
	if (r < 0 || loop_add_fd(g->d->loop, I->rd, EPOLLIN, on_pipe, g, &err) < 0) {
		log_warn("mgmt: image:%s: %s", ref, err.msg);
		snprintf(I->reason, sizeof I->reason, "%s", err.msg);
		if (r == 0)
			loop_del_fd(g->d->loop, I->rd); /* harmless when not added */
		transfer_end(g);
		return;
	}
	I->stall_mark = I->have;
	I->stall_timer = loop_add_timer(g->d->loop, IMG_STALL_MS, on_stall, g);
	log_info("mgmt: image:%s: downloading from byte %llu of %llu", ref,
		 (unsigned long long)I->have, (unsigned long long)I->size);
}

void mgmt_img_kick(struct mgmt *g)
{
	kick(g);
}

void mgmt_img_imported(struct cellsd *d, const char *hex, const cells_err_t *err)
{
	struct mgmt *g = d->mgmt; /* NULL once mgmt stopped */
	struct mgmt_img *I = g ? g->img : NULL;
	if (!I)
		return;
	/* an offer that came while the import wrote these bytes was acknowledged and left
	 * waiting (one writer per image: no download): it is answered now */
	const struct img_offer *o = offer_find(I, hex);
	if (o) {
		char ref[sizeof o->ref];
		memcpy(ref, o->ref, sizeof ref);
		result(g, hex, ref,
		       err ? CELLS__V1__RESULT_STATUS__RESULT_FAILED
			   : CELLS__V1__RESULT_STATUS__RESULT_DONE,
		       err ? err->msg : "imported on the device");
		if (!err)
			mgmt_report_status(d);
	}
	kick(g); /* still pending (an import cut short): downloaded now */
}

void mgmt_img_offer(struct mgmt *g, const Cells__V1__Envelope *env)
{
	cells_err_t err = {0};
	cleanup_free uint8_t *blob = NULL;
	size_t n;
	struct pol_image_manifest m;
	bool complete = false;
	int r = pol_signed_pack(env->image, &blob, &n, &err);
	if (r == 0)
		r = images_offer(g->d, blob, n, "mdm", &m, &complete, &err);
	if (r < 0) {
		/* refused (audited by the store): its unverified name is not read */
		finish_inbound(g, env->message_id, "image:?",
			       CELLS__V1__RESULT_STATUS__RESULT_REJECTED, err.msg, NULL, NULL);
		return;
	}
	char ref[IMAGES_NAME_MAX + 24];
	snprintf(ref, sizeof ref, "%s@%llu", m.name, (unsigned long long)m.version);
	struct mgmt_img *I = img_of(g);
	char hex[65];
	pol_image_hex(m.sha256, hex);
	if (I) /* the result answers this envelope */
		offer_put(I, hex, ref, env->message_id);
	if (complete) {
		result(g, I ? hex : NULL, ref, CELLS__V1__RESULT_STATUS__RESULT_DONE,
		       r == 1 ? "already on the device" : "");
		return;
	}
	send_ack(g, env->message_id);
	if (I)
		kick(g);
}

int mgmt_img_on_done(struct mgmt *g, struct netipc_msg *msg)
{
	struct mgmt_img *I = img_of(g);
	const Cells__Net__V1__NetImageDone *d = msg->image_done;
	if (!I || strcmp(d->sha256, I->hex))
		return 0; /* not the transfer running: a stale report */
	if (d->status)
		snprintf(I->reason, sizeof I->reason, "%s", d->reason);
	/* nothing else is taken from it: the end of the pipe decides */
	return 0;
}

void mgmt_img_stop(struct mgmt *g)
{
	if (!g->img)
		return;
	if (g->img->retry_timer)
		loop_cancel_timer(g->d->loop, g->img->retry_timer);
	transfer_close(g);
	free(g->img);
	g->img = NULL;
}
