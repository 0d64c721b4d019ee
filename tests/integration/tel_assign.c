/* tel_assign - test helper: run tel_cmd_assign / tel_cmd_revoke (the handlers the MDM's
 * verified signed commands reach) on a state dir while cellsd is not running.
 *   tel_assign STATE_DIR assign VP NUMBER DIGIT GATEWAY
 *   tel_assign STATE_DIR revoke VP */
#include "audit.h"
#include "cellsd.h"
#include "sqldb.h"
#include "tel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	struct cellsd d = {.ctl_fd = -1, .state = CELLSD_ST_READY};
	snprintf(d.state_dir, sizeof d.state_dir, "%s", argv[1]);
	char p[PATH_MAX + 16];
	cells_err_t err = {0};
	snprintf(p, sizeof p, "%s/state.db", argv[1]);
	if (sqldb_open(p, SQLDB_DURABLE, 5000, &d.db, &err) < 0)
		goto fail;
	snprintf(p, sizeof p, "%s/audit.db", argv[1]);
	if (audit_open(p, &d.audit, &err) < 0)
		goto fail;
	Cells__V1__Command c = CELLS__V1__COMMAND__INIT;
	Cells__V1__AssignNumber a = CELLS__V1__ASSIGN_NUMBER__INIT;
	Cells__V1__RevokeNumber r = CELLS__V1__REVOKE_NUMBER__INIT;
	c.command_id = "test-tel-assign";
	int rc;
	if (!strcmp(argv[2], "assign") && argc == 7) {
		a.vp = argv[3];
		a.number = argv[4];
		a.digit = (uint32_t)atoi(argv[5]);
		a.gateway = argv[6];
		c.action_case = CELLS__V1__COMMAND__ACTION_ASSIGN_NUMBER;
		c.assign_number = &a;
		rc = tel_cmd_assign(&d, &c, &err);
	} else if (!strcmp(argv[2], "revoke")) {
		r.vp = argv[3];
		c.action_case = CELLS__V1__COMMAND__ACTION_REVOKE_NUMBER;
		c.revoke_number = &r;
		rc = tel_cmd_revoke(&d, &c, &err);
	} else
		return 2;
	if (rc < 0)
		goto fail;
	audit_close(d.audit);
	sqlite3_close_v2(d.db);
	return 0;
fail:
	fprintf(stderr, "tel_assign: %s\n", err.msg);
	audit_close(d.audit);
	if (d.db)
		sqlite3_close_v2(d.db);
	return 1;
}
