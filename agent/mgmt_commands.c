/* mgmt_commands.c - the command handler table (see mgmt_commands.h). Modules add one
 * row each: wipe (WIPE), telephony (ASSIGN_NUMBER, REVOKE_NUMBER), audit
 * (AUDIT_UPLOAD), VP lock (LOCK). An action without a row is answered FAILED ("not
 * supported by this agent"). */
#include "mgmt_commands.h"
#include "cleanup.h"

static const struct mgmt_command_handler handlers[] = {
    {CELLS__V1__COMMAND__ACTION__NOT_SET, "none", NULL},
};

const struct mgmt_command_handler *mgmt_command_find(Cells__V1__Command__ActionCase action)
{
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(handlers); i++)
		if (handlers[i].action == action && handlers[i].fn)
			return &handlers[i];
	return NULL;
}
