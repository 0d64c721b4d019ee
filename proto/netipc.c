/* netipc.c - encode/decode of the cellsd <-> cellsd-net messages (see netipc.h). */
#include "netipc.h"
#include "cleanup.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

struct netipc_rule {
	unsigned type;
	const char *name;
	enum netipc_dir dir;
	size_t max; /* payload limit */
};

static const struct netipc_rule rules[] = {
    {NETIPC_CONFIG, "config", NETIPC_TO_NET, 2 * NETIPC_MAX_PEM + NETIPC_MAX_URL + 64},
    {NETIPC_SEND, "send", NETIPC_TO_NET, CELLS_MAX_ENVELOPE},
    {NETIPC_ENROLL, "enroll", NETIPC_TO_NET, NETIPC_MAX_PEM + NETIPC_MAX_URL + 64 * 1024},
    {NETIPC_STATUS, "status", NETIPC_TO_CELLSD, 1024},
    {NETIPC_RECV, "recv", NETIPC_TO_CELLSD, CELLS_MAX_ENVELOPE},
    {NETIPC_ENROLL_RESULT, "enroll-result", NETIPC_TO_CELLSD, 64 * 1024 + 1024},
    {NETIPC_IMAGE_GET, "image-get", NETIPC_TO_NET, 256},
    {NETIPC_IMAGE_DONE, "image-done", NETIPC_TO_CELLSD, 1024},
};

static const struct netipc_rule *rule_of(unsigned type)
{
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(rules); i++)
		if (rules[i].type == type)
			return &rules[i];
	return NULL;
}

const char *netipc_type_name(unsigned type)
{
	const struct netipc_rule *r = rule_of(type);
	return r ? r->name : NULL;
}

void netipc_msg_free(struct netipc_msg *m)
{
	if (m->config)
		cells__net__v1__net_config__free_unpacked(m->config, NULL);
	if (m->enroll)
		cells__net__v1__net_enroll__free_unpacked(m->enroll, NULL);
	if (m->status)
		cells__net__v1__net_status__free_unpacked(m->status, NULL);
	if (m->enroll_result)
		cells__net__v1__net_enroll_result__free_unpacked(m->enroll_result, NULL);
	if (m->image_get)
		cells__net__v1__net_image_get__free_unpacked(m->image_get, NULL);
	if (m->image_done)
		cells__net__v1__net_image_done__free_unpacked(m->image_done, NULL);
	free(m->buf);
	memset(m, 0, sizeof *m);
}

static int url_ok(const char *u, cells_err_t *err)
{
	size_t n = strnlen(u, NETIPC_MAX_URL + 1);
	if (n == 0 || n > NETIPC_MAX_URL || strncmp(u, "wss://", 6) != 0)
		return cells_err_set(err, EBADMSG, "ipc: bad url");
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)u[i] <= 0x20 || (unsigned char)u[i] >= 0x7f)
			return cells_err_set(err, EBADMSG, "ipc: bad url");
	return 0;
}

bool netipc_sha_hex_ok(const char *s)
{
	size_t i;
	for (i = 0; s && i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return s && i == 64 && s[64] == 0;
}

static int line_ok(const char *s, size_t max, cells_err_t *err)
{
	size_t n = strnlen(s, max + 1);
	if (n > max)
		return cells_err_set(err, EMSGSIZE, "ipc: string over %zu bytes", max);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return cells_err_set(err, EBADMSG, "ipc: control character in a string");
	return 0;
}

int netipc_decode(const uint8_t *p, size_t n, enum netipc_dir dir, struct netipc_msg *out,
		  cells_err_t *err)
{
	memset(out, 0, sizeof *out);
	if (n < NETIPC_HDR)
		return cells_err_set(err, EPROTO, "ipc: short datagram (%zu bytes)", n);
	if (n > NETIPC_MAX_DGRAM)
		return cells_err_set(err, EMSGSIZE, "ipc: datagram over the limit");
	unsigned magic = (unsigned)p[0] << 8 | p[1];
	unsigned ver = p[2], type = p[3];
	uint32_t len = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
	if (magic != NETIPC_MAGIC || ver != NETIPC_VERSION)
		return cells_err_set(err, EPROTO, "ipc: bad magic or version");
	const struct netipc_rule *r = rule_of(type);
	if (!r)
		return cells_err_set(err, EPROTO, "ipc: unknown type %u", type);
	if (r->dir != dir)
		return cells_err_set(err, EPROTO, "ipc: %s is not accepted in this direction",
				     r->name);
	if ((size_t)len != n - NETIPC_HDR)
		return cells_err_set(err, EPROTO, "ipc: %s: length %u but %zu bytes", r->name,
				     (unsigned)len, n - NETIPC_HDR);
	if (len > r->max)
		return cells_err_set(err, EMSGSIZE, "ipc: %s: %u bytes over the limit of %zu",
				     r->name, (unsigned)len, r->max);
	out->type = type;
	out->buf = malloc(len ? len : 1);
	if (!out->buf)
		return cells_err_sys(err, ENOMEM, "ipc");
	memcpy(out->buf, p + NETIPC_HDR, len);
	const uint8_t *b = out->buf;
	int rc = 0;
	switch (type) {
	case NETIPC_SEND:
	case NETIPC_RECV:
		if (len == 0)
			rc = cells_err_set(err, EBADMSG, "ipc: %s: empty envelope", r->name);
		out->raw = b;
		out->raw_len = len;
		break;
	case NETIPC_CONFIG:
		out->config = cells__net__v1__net_config__unpack(NULL, len, b);
		if (!out->config)
			rc = cells_err_set(err, EBADMSG, "ipc: config: malformed");
		else if (url_ok(out->config->url, err) < 0 ||
			 out->config->ca_pem.len > NETIPC_MAX_PEM ||
			 out->config->cert_pem.len > NETIPC_MAX_PEM || !out->config->ca_pem.len ||
			 !out->config->cert_pem.len)
			rc = err && err->msg[0]
				 ? -1
				 : cells_err_set(err, EBADMSG, "ipc: config: bad pem");
		break;
	case NETIPC_ENROLL:
		out->enroll = cells__net__v1__net_enroll__unpack(NULL, len, b);
		if (!out->enroll)
			rc = cells_err_set(err, EBADMSG, "ipc: enroll: malformed");
		else if (url_ok(out->enroll->url, err) < 0)
			rc = -1;
		else if (out->enroll->ca_pem.len > NETIPC_MAX_PEM || !out->enroll->ca_pem.len ||
			 !out->enroll->envelope.len)
			rc = cells_err_set(err, EBADMSG, "ipc: enroll: bad fields");
		break;
	case NETIPC_STATUS:
		out->status = cells__net__v1__net_status__unpack(NULL, len, b);
		if (!out->status)
			rc = cells_err_set(err, EBADMSG, "ipc: status: malformed");
		else
			rc = line_ok(out->status->reason, 512, err);
		break;
	case NETIPC_ENROLL_RESULT:
		out->enroll_result = cells__net__v1__net_enroll_result__unpack(NULL, len, b);
		if (!out->enroll_result)
			rc = cells_err_set(err, EBADMSG, "ipc: enroll-result: malformed");
		else if (line_ok(out->enroll_result->reason, 512, err) < 0)
			rc = -1;
		else if (out->enroll_result->envelope.len > 64 * 1024)
			rc = cells_err_set(err, EMSGSIZE, "ipc: enroll-result: envelope too big");
		break;
	case NETIPC_IMAGE_GET:
		out->image_get = cells__net__v1__net_image_get__unpack(NULL, len, b);
		if (!out->image_get)
			rc = cells_err_set(err, EBADMSG, "ipc: image-get: malformed");
		else if (!netipc_sha_hex_ok(out->image_get->sha256) ||
			 out->image_get->offset >= out->image_get->size)
			rc = cells_err_set(err, EBADMSG, "ipc: image-get: bad fields");
		break;
	case NETIPC_IMAGE_DONE:
		out->image_done = cells__net__v1__net_image_done__unpack(NULL, len, b);
		if (!out->image_done)
			rc = cells_err_set(err, EBADMSG, "ipc: image-done: malformed");
		else if (!netipc_sha_hex_ok(out->image_done->sha256))
			rc = cells_err_set(err, EBADMSG, "ipc: image-done: bad sha256");
		else
			rc = line_ok(out->image_done->reason, 512, err);
		break;
	}
	if (rc < 0)
		netipc_msg_free(out);
	return rc;
}

int netipc_encode_raw(enum netipc_type type, const uint8_t *payload, size_t len, uint8_t **out,
		      size_t *out_len, cells_err_t *err)
{
	const struct netipc_rule *r = rule_of(type);
	if (!r)
		return cells_err_set(err, EINVAL, "ipc: unknown type %u", (unsigned)type);
	if (len > r->max)
		return cells_err_set(err, EMSGSIZE, "ipc: %s: %zu bytes over the limit", r->name,
				     len);
	uint8_t *b = malloc(NETIPC_HDR + len);
	if (!b)
		return cells_err_sys(err, ENOMEM, "ipc");
	b[0] = NETIPC_MAGIC >> 8;
	b[1] = NETIPC_MAGIC & 0xff;
	b[2] = NETIPC_VERSION;
	b[3] = (uint8_t)type;
	b[4] = (uint8_t)(len >> 24);
	b[5] = (uint8_t)(len >> 16);
	b[6] = (uint8_t)(len >> 8);
	b[7] = (uint8_t)len;
	if (len)
		memcpy(b + NETIPC_HDR, payload, len);
	*out = b;
	*out_len = NETIPC_HDR + len;
	return 0;
}

int netipc_encode_pb(enum netipc_type type, const ProtobufCMessage *m, uint8_t **out,
		     size_t *out_len, cells_err_t *err)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	cleanup_free uint8_t *p = malloc(n ? n : 1);
	if (!p)
		return cells_err_sys(err, ENOMEM, "ipc");
	protobuf_c_message_pack(m, p);
	return netipc_encode_raw(type, p, n, out, out_len, err);
}

static int send_dgram(int fd, const uint8_t *b, size_t n, cells_err_t *err)
{
	ssize_t w;
	do
		w = send(fd, b, n, MSG_NOSIGNAL);
	while (w < 0 && errno == EINTR);
	if (w < 0)
		return cells_err_sys(err, errno, "ipc send");
	if ((size_t)w != n)
		return cells_err_set(err, EIO, "ipc send: short write");
	return 0;
}

int netipc_send(int fd, enum netipc_type type, const uint8_t *payload, size_t len, cells_err_t *err)
{
	cleanup_free uint8_t *b = NULL;
	size_t n;
	if (netipc_encode_raw(type, payload, len, &b, &n, err) < 0)
		return -1;
	return send_dgram(fd, b, n, err);
}

int netipc_send_pb(int fd, enum netipc_type type, const ProtobufCMessage *m, cells_err_t *err)
{
	cleanup_free uint8_t *b = NULL;
	size_t n;
	if (netipc_encode_pb(type, m, &b, &n, err) < 0)
		return -1;
	return send_dgram(fd, b, n, err);
}

int netipc_send_pb_fd(int fd, enum netipc_type type, const ProtobufCMessage *m, int pass_fd,
		      cells_err_t *err)
{
	cleanup_free uint8_t *b = NULL;
	size_t n;
	if (netipc_encode_pb(type, m, &b, &n, err) < 0)
		return -1;
	struct iovec iov = {.iov_base = b, .iov_len = n};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	memset(&u, 0, sizeof u);
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	mh.msg_control = u.buf;
	mh.msg_controllen = sizeof u.buf;
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
	ssize_t w;
	do
		w = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (w < 0 && errno == EINTR);
	if (w < 0)
		return cells_err_sys(err, errno, "ipc send");
	if ((size_t)w != n)
		return cells_err_set(err, EIO, "ipc send: short write");
	return 0;
}
