/* tel.h - the telephony proxy of cellsd: one virtual modem per VP multiplexed onto the
 * one real modem (an AT-command serial tty, e.g. the Quectel EG25-G; in tests the pty of
 * the modem simulator, driven through the same serial code).
 *
 * - Each VP with an assigned number gets a pty; the VP side is its virtual modem
 *   (/dev/cells/modem in the VP; RUN_DIR/tel/NAME.pty on the host). See
 *   docs/TELEPHONY.md for the AT subset and what is answered locally.
 * - SIM initialisation (AT+CPIN?, AT+CIMI, AT+CCID) reaches the real modem once; the
 *   responses are recorded and replayed to every VP.
 * - Incoming calls are routed by the caller-ID digit the VoIP gateway appended; only
 *   that VP rings, and the digit is stripped from the caller ID it sees.
 * - Outgoing calls: only the foreground VP may dial; the proxy dials the gateway's access
 *   number and sends VP digit + target as DTMF so the callee sees the VP's number.
 * - Numbers and digits live in the state DB (module "tel") and are set by signed MDM
 *   commands (tel_cmd_assign / tel_cmd_revoke), applied live and audited. */
#ifndef CELLS_TEL_H
#define CELLS_TEL_H

#include <json-c/json.h>

#include "cells.pb-c.h"
#include "cellsd.h"
#include "err.h"

struct tel;

/* Start the proxy: migrate the "tel" tables, create the VP endpoints of the assigned
 * numbers, and (when modem_path is not NULL) open the real modem, retrying while it is
 * absent. Sets d->tel. */
int tel_start(struct cellsd *d, const char *modem_path, cells_err_t *err);
/* Close every pty and the modem; d->tel becomes NULL. Accepts d->tel == NULL. */
void tel_stop(struct cellsd *d);

/* Signed-command handlers (rows of agent/mgmt/mgmt_commands.c). The command was verified by
 * the caller. They validate, store, audit (fail closed) and apply live. */
int tel_cmd_assign(struct cellsd *d, const Cells__V1__Command *cmd, cells_err_t *err);
int tel_cmd_revoke(struct cellsd *d, const Cells__V1__Command *cmd, cells_err_t *err);
/* The same with the mgmt_command_fn signature (agent/mgmt/mgmt_commands.h): no receipt. An
 * empty gateway is accepted: the VP receives calls but cannot place any. */
int tel_cmd_assign_result(struct cellsd *d, const Cells__V1__Command *cmd,
			  Cells__V1__CommandResult *res, cells_err_t *err);
int tel_cmd_revoke_result(struct cellsd *d, const Cells__V1__Command *cmd,
			  Cells__V1__CommandResult *res, cells_err_t *err);

/* Fill obj with the proxy's status (modem, SIM, foreground, VPs, calls). */
int tel_status_json(struct cellsd *d, json_object *obj, cells_err_t *err);

#endif
