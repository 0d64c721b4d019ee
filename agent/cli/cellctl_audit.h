/* cellctl_audit.h - the auditor's cellctl commands (rows in cellctl.c's table). */
#ifndef CELLS_CELLCTL_AUDIT_H
#define CELLS_CELLCTL_AUDIT_H

#include <stdint.h>

#include "cellctl.h"

int cmd_audit_query(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv);
int cmd_audit_verify(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv);
int cmd_audit_export(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv);
#endif
