/* mgmt.h - the management channel, cellsd's side: it runs the unprivileged network
 * process cellsd-net (restarted with backoff, audited), speaks the typed IPC of
 * proto/netipc.h with it, accepts each IPC message only in the state it belongs to,
 * verifies every signed policy and command itself (policy engine), runs commands
 * through the table in mgmt_commands.c, and keeps a durable outbox in the state DB:
 * results, acknowledgements and audit uploads wait there until the server acknowledges
 * them. Inbound messages are de-duplicated by message id and commands by command id,
 * so a redelivered message is acknowledged again, never applied twice. */
#ifndef CELLS_MGMT_H
#define CELLS_MGMT_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "cellsd.h"
#include "err.h"
#include "wire.h"

struct ctl_call;

/* Use PATH instead of cellsd-net (cellsd --net-helper: a test/debug option). */
void mgmt_set_net_helper(const char *path);
/* cellsd's channel options: --net-user NAME|UID:GID, --net-retry-max-ms N. */
int mgmt_option(const char *name, const char *value, cells_err_t *err);
int mgmt_init(struct cellsd *d, cells_err_t *err);
void mgmt_stop(struct cellsd *d);

/* True while a session with the MDM is open. */
bool mgmt_online(struct cellsd *d);

/* Compute compliance (compliance.h) and send a status update (DeviceHello as `status`)
 * when it or the policy version differs from what was last reported on the session. Cheap when
 * unchanged; also run every 10 s. Modules call it after a change that may affect compliance. */
void mgmt_report_status(struct cellsd *d);

/* Fill o with the channel's state (enrolled, url, connected, last error, outbox...). */
void mgmt_status_json(struct cellsd *d, json_object *o);

/* Start an enrollment for a pending control call; the call is finished when the
 * server answers (or on error/timeout). */
int mgmt_enroll_start(struct cellsd *d, struct ctl_call *c, const char *url, const char *token,
		      const uint8_t *ca_pem, size_t ca_len, cells_err_t *err);

#endif
