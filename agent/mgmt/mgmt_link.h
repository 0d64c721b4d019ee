/* mgmt_link.h - the link between cellsd and its network process cellsd-net, and the
 * durable outbox (internal to the management channel: only mgmt.c and mgmt_link.c
 * include it). The link starts cellsd-net (restarted with backoff, audited), routes each
 * IPC message it sends only in the channel state it belongs to, hands the server's
 * policies, commands and acks to mgmt.c (struct mgmt_ops), records their results in
 * the inbox/outbox and sends what the server has not acknowledged yet. */
#ifndef CELLS_MGMT_LINK_H
#define CELLS_MGMT_LINK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "cellsd.h"
#include "compliance.h"
#include "device_key.h"
#include "err.h"
#include "netipc.h"
#include "wire.h"

struct ctl_call;
struct mgmt;
struct mgmt_img;

/* Channel states an IPC message may be permitted in (bitmask). */
enum {
	MGMT_ST_IDLE = 1u << 0,	     /* net process up, not connected */
	MGMT_ST_ONLINE = 1u << 1,    /* connected to the MDM (mutual TLS) */
	MGMT_ST_ENROLLING = 1u << 2, /* an enrollment is waiting for its answer */
};
#define MGMT_ST_ANY (MGMT_ST_IDLE | MGMT_ST_ONLINE | MGMT_ST_ENROLLING)

/* What mgmt.c does with the messages the link routes to it (all borrowed). */
struct mgmt_ops {
	void (*hello)(struct mgmt *g, bool status); /* send DeviceHello / a status update */
	void (*policy)(struct mgmt *g, const Cells__V1__Envelope *env);
	void (*command)(struct mgmt *g, const Cells__V1__Envelope *env);
	void (*trust)(struct mgmt *g, const Cells__V1__Envelope *env); /* a TrustUpdate */
	void (*ack)(struct mgmt *g, const Cells__V1__Ack *a);
	int (*enroll_result)(struct mgmt *g, struct netipc_msg *m);
};

struct mgmt {
	struct cellsd *d;
	const struct mgmt_ops *ops;
	pid_t pid;
	int pidfd, ipc_fd;
	int64_t started_ms;
	unsigned restarts;
	uint64_t restart_timer;
	bool reconfigure, stopping;
	unsigned state;
	char last_error[256];
	/* enrollment */
	bool enrolled;
	char url[300];
	uint8_t *ca_pem, *cert_pem;
	size_t ca_len, cert_len;
	struct ctl_call *enroll_call;
	uint8_t *enroll_ca;
	size_t enroll_ca_len;
	char enroll_url[300];
	uint64_t enroll_timer;
	uint8_t *enroll_msg; /* a NetEnroll waiting for a fresh network process */
	size_t enroll_msg_len;
	uint8_t *rxbuf;
	uint64_t sent, received;
	struct mgmt_link *link; /* queue, rate limits (owned, mgmt_link.c) */
	/* enrollment: the token's trust-root digest and the new TLS key (pending until the
	 * enrollment completes) */
	uint8_t enroll_digest[ROOT_DIGEST_LEN];
	EVP_PKEY *enroll_tls;
	/* compliance: the last MDM policy was refused (persisted), what was last reported */
	bool policy_refused;
	struct compliance reported;
	uint64_t reported_version;
	bool reported_valid;
	uint64_t compliance_timer;
	uint64_t vps_timer;   /* a status after VPs started or stopped (their images), 0: none */
	struct mgmt_img *img; /* image downloads (owned, mgmt_images.c) */
};

/* Set up the link's part of g (before the state DB is migrated). */
int mgmt_link_init(struct mgmt *g, const struct mgmt_ops *ops, cells_err_t *err);
/* Start the network process. */
void mgmt_link_start(struct mgmt *g);
/* Stop the network process (no restart) and free the link's part of g. */
void mgmt_link_stop(struct mgmt *g);

/* cellsd options (no cellsd flag yet: see the report of issue 13): the network process's
 * uid/gid (default: the `cellsd-net` system user, else CELLS_NET_UID/GID = 65500), and
 * the cap of its reconnect backoff in ms (passed as --retry-max-ms; <=0: its default). */
void mgmt_set_net_ids(uid_t uid, gid_t gid);
void mgmt_set_net_retry_max_ms(int ms);

/* The link's counters for `cellctl mgmt status` (queued, dropped, stalls). */
void mgmt_link_status_json(struct mgmt *g, json_object *o);

/* An audit record by "cellsd" about the channel, with details {reason}. */
void audit_net(struct mgmt *g, const char *event, const char *outcome, const char *reason);
/* Send envelope bytes to the server when online (queued, never blocks; dropped when
 * offline: what must arrive is in the outbox, sent again at the next connect). */
void net_send_raw(struct mgmt *g, const uint8_t *p, size_t n);
/* Queue one IPC message of type for the network process (never blocks). */
void mgmt_link_send_pb(struct mgmt *g, enum netipc_type type, const ProtobufCMessage *pb);
/* SIGKILL the network process; the pidfd reports its exit (restart with backoff, or at
 * once when g->reconfigure). */
void kill_net(struct mgmt *g, const char *why);
/* Record the result of inbound message msg_id (outbox + inbox, and done_command in
 * mgmt_commands) in one transaction and send it. */
void finish_inbound(struct mgmt *g, const char *msg_id, const char *command_id,
		    Cells__V1__ResultStatus status, const char *reason, const char *done_command,
		    Cells__V1__Signed *receipt);

/* mgmt_images.c: Envelope.image (verified, recorded, acknowledged, downloaded); the
 * network process's NETIPC_IMAGE_DONE; start pending downloads (at each connect);
 * release everything (mgmt_stop). */
void mgmt_img_offer(struct mgmt *g, const Cells__V1__Envelope *env);
int mgmt_img_on_done(struct mgmt *g, struct netipc_msg *m);
void mgmt_img_kick(struct mgmt *g);
/* An import ended (images_on_imported): an offer of those bytes gets its result. */
void mgmt_img_imported(struct cellsd *d, const char *hex, const cells_err_t *err);
void mgmt_img_stop(struct mgmt *g);

#endif
