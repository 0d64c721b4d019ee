/* mgmt_commands.c - the command handler table (see mgmt_commands.h). Modules add one
 * row each: wipe (WIPE), telephony (ASSIGN_NUMBER, REVOKE_NUMBER), audit
 * (AUDIT_UPLOAD), VP lock (LOCK). An action without a row is answered FAILED ("not
 * supported by this agent"). */
#include "mgmt_commands.h"
#include "audit_mgmt.h"
#include "cleanup.h"
#include "log.h"
#include "tel.h"
#include "vplock.h"
#include "wipe.h"

static const struct mgmt_command_handler handlers[] = {
    {CELLS__V1__COMMAND__ACTION__NOT_SET, "none", NULL, NULL},
    {CELLS__V1__COMMAND__ACTION_ASSIGN_NUMBER, "assign number", tel_cmd_assign_result, NULL},
    {CELLS__V1__COMMAND__ACTION_REVOKE_NUMBER, "revoke number", tel_cmd_revoke_result, NULL},
    {CELLS__V1__COMMAND__ACTION_WIPE, "wipe", wipe_cmd_result, wipe_cmd_replay},
    {CELLS__V1__COMMAND__ACTION_AUDIT_UPLOAD, "audit upload", audit_mgmt_cmd_upload, NULL},
    {CELLS__V1__COMMAND__ACTION_LOCK, "lock", vplock_cmd_result, NULL},
};

const struct mgmt_command_handler *mgmt_command_find(Cells__V1__Command__ActionCase action)
{
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(handlers); i++)
		if (handlers[i].action == action && handlers[i].fn)
			return &handlers[i];
	return NULL;
}

void mgmt_command_result_acked(struct cellsd *d, const Cells__V1__CommandResult *r)
{
	cells_err_t err;
	if (r->receipt && r->command_id && wipe_receipt_acked(d, r->command_id, &err) < 0)
		log_warn("mgmt: receipt of %s acknowledged, not recorded: %s", r->command_id,
			 err.msg);
}
