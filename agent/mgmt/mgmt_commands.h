/* mgmt_commands.h - the table of handlers for verified MDM commands: one row
 * {action_case, name, handler} per Command action in agent/mgmt/mgmt_commands.c. A handler
 * runs only after cellsd verified the command's signature, device and expiry and found
 * its command_id new. It returns 0 when done (it may attach a signed receipt to res) or
 * -1 with err when it failed; the result goes back to the server either way. What it
 * attaches to res (res->receipt) is owned by the caller afterwards.
 * replay (optional) answers a command id already done: it may attach what was stored
 * (e.g. the signed wipe receipt) and must not carry anything out again. */
#ifndef CELLS_MGMT_COMMANDS_H
#define CELLS_MGMT_COMMANDS_H

#include "cellsd.h"
#include "wire.h"

typedef int (*mgmt_command_fn)(struct cellsd *d, const Cells__V1__Command *cmd,
			       Cells__V1__CommandResult *res, cells_err_t *err);

struct mgmt_command_handler {
	Cells__V1__Command__ActionCase action;
	const char *name;
	mgmt_command_fn fn;
	mgmt_command_fn replay;
};

/* The row for an action, or NULL when this agent does not implement it. */
const struct mgmt_command_handler *mgmt_command_find(Cells__V1__Command__ActionCase action);

/* The server acknowledged an outbox message holding this result (e.g. a wipe receipt). */
void mgmt_command_result_acked(struct cellsd *d, const Cells__V1__CommandResult *r);

#endif
