/* outbox.h - the durable outbox of messages for the MDM (table mgmt_outbox of the state
 * DB, created by the management channel's migrations).
 *
 * A message stays in the outbox until the server acknowledges its message id (an Ack;
 * for an audit batch only a verified audit_ack, audit_mgmt.h). Producers (wipe receipts,
 * audit batches, command results) only put; the management channel registers the one
 * sender, which sends a new message at once when online, and resends the outbox in
 * order at every (re)connect (mgmt_link.c). The outbox depends on nothing above it, so
 * a producer never includes the channel. */
#ifndef CELLS_OUTBOX_H
#define CELLS_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cellsd.h"
#include "err.h"
#include "wire.h"

/* A fresh message id "PREFIX-<24 hex>". */
void outbox_msg_id(char out[40], const char *prefix);

/* The channel's sender: called with the encoded envelope of each message put. */
typedef void (*outbox_send_fn)(void *ctx, const uint8_t *p, size_t n);
void outbox_set_sender(outbox_send_fn fn, void *ctx);

/* Store env (a message id is given when it has none; inside the caller's transaction
 * when there is one) and hand it to the sender. */
int outbox_put(struct cellsd *d, const Cells__V1__Envelope *env, cells_err_t *err);
/* Store only: the id in id_out (may be NULL), the encoded bytes in *bytes (owned). */
int outbox_store(struct cellsd *d, const Cells__V1__Envelope *env, char id_out[40], uint8_t **bytes,
		 size_t *len, cells_err_t *err);
/* Remove the message (acknowledged, or answered by a correlated Error). */
int outbox_drop(struct cellsd *d, const char *message_id, cells_err_t *err);
/* The envelope of a queued message (decoded, owned), NULL when it is not queued. */
Cells__V1__Envelope *outbox_get(struct cellsd *d, const char *message_id);
/* 1 when the message is queued, 0 when not, -1 on a read error. */
int outbox_has(struct cellsd *d, const char *message_id);
int64_t outbox_count(struct cellsd *d);
/* Call fn for at most max messages queued after seq `after`, in order; returns how many
 * (0: none left), -1 on a read error. */
typedef void (*outbox_each_fn)(void *ctx, int64_t seq, const uint8_t *p, size_t n);
int outbox_each(struct cellsd *d, int64_t after, int max, outbox_each_fn fn, void *ctx);

#endif
