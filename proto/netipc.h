/* netipc.h - the typed, size-bounded messages between cellsd and cellsd-net on their
 * SOCK_SEQPACKET socketpair (proto/netipc.proto, docs/PROTOCOL.md "IPC").
 *
 * One datagram = an 8-byte header {u16 magic 0xCE11, u8 version 1, u8 type, u32 length}
 * (big-endian) and `length` payload bytes. netipc_decode() checks the datagram against
 * the header, the type's direction and the type's size limit before anything is
 * unpacked; it never trusts the sender. */
#ifndef CELLS_NETIPC_H
#define CELLS_NETIPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "netipc.pb-c.h"
#include "wire.h"

#define NETIPC_MAGIC 0xCE11
#define NETIPC_VERSION 1
#define NETIPC_HDR 8
#define NETIPC_MAX_PAYLOAD (CELLS_MAX_ENVELOPE + 64 * 1024)
#define NETIPC_MAX_DGRAM (NETIPC_HDR + NETIPC_MAX_PAYLOAD)
#define NETIPC_MAX_URL 256
#define NETIPC_MAX_PEM (16 * 1024)

enum netipc_type {
	/* cellsd -> net */
	NETIPC_CONFIG = 1,    /* NetConfig */
	NETIPC_SEND = 2,      /* Envelope bytes to send to the MDM */
	NETIPC_ENROLL = 3,    /* NetEnroll */
	NETIPC_IMAGE_GET = 4, /* NetImageGet + the pipe's write end (SCM_RIGHTS) */
	/* net -> cellsd */
	NETIPC_STATUS = 16,	   /* NetStatus */
	NETIPC_RECV = 17,	   /* Envelope bytes received from the MDM */
	NETIPC_ENROLL_RESULT = 18, /* NetEnrollResult */
	NETIPC_IMAGE_DONE = 19,	   /* NetImageDone */
};

enum netipc_dir {
	NETIPC_TO_NET,	  /* messages cellsd sends */
	NETIPC_TO_CELLSD, /* messages cellsd-net sends */
};

/* A decoded message: exactly one of the pointers is set (or raw for SEND/RECV). All owned;
 * free with netipc_msg_free(). */
struct netipc_msg {
	enum netipc_type type;
	const uint8_t *raw; /* SEND / RECV: the envelope bytes (points into `buf`) */
	size_t raw_len;
	Cells__Net__V1__NetConfig *config;
	Cells__Net__V1__NetEnroll *enroll;
	Cells__Net__V1__NetStatus *status;
	Cells__Net__V1__NetEnrollResult *enroll_result;
	Cells__Net__V1__NetImageGet *image_get;
	Cells__Net__V1__NetImageDone *image_done;
	uint8_t *buf; /* owned copy of the payload */
};

/* The type's name ("send", ...) or NULL when unknown. */
const char *netipc_type_name(unsigned type);
/* Decode one datagram received in direction dir. Refuses (EPROTO/EMSGSIZE/EBADMSG) a bad
 * header, a type of the other direction or unknown, a length that differs from the
 * datagram, a payload over the type's limit, unpack failures, and strings/PEMs over their
 * limits. */
int netipc_decode(const uint8_t *p, size_t n, enum netipc_dir dir, struct netipc_msg *out,
		  cells_err_t *err);
void netipc_msg_free(struct netipc_msg *m);

/* Build one datagram (header + payload) into a new buffer (owned by the caller). */
int netipc_encode_raw(enum netipc_type type, const uint8_t *payload, size_t len, uint8_t **out,
		      size_t *out_len, cells_err_t *err);
int netipc_encode_pb(enum netipc_type type, const ProtobufCMessage *m, uint8_t **out,
		     size_t *out_len, cells_err_t *err);
/* Send one datagram on a SOCK_SEQPACKET socket (MSG_NOSIGNAL; EAGAIN is an error). */
int netipc_send(int fd, enum netipc_type type, const uint8_t *payload, size_t len,
		cells_err_t *err);
int netipc_send_pb(int fd, enum netipc_type type, const ProtobufCMessage *m, cells_err_t *err);
/* The same with one fd passed along (SCM_RIGHTS), without blocking (EAGAIN is an
 * error the caller retries). */
int netipc_send_pb_fd(int fd, enum netipc_type type, const ProtobufCMessage *m, int pass_fd,
		      cells_err_t *err);
/* 64 lowercase hex digits (an image's SHA-256 on the wire). */
bool netipc_sha_hex_ok(const char *s);

#endif
