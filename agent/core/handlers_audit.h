/* handlers_audit.h - audit log requests (handlers_audit.c): control request handlers, rows of
 * routes.c (ctl_server.h). */
#ifndef CELLS_HANDLERS_AUDIT_H
#define CELLS_HANDLERS_AUDIT_H

#include "ctl_server.h"

int h_audit_query(struct ctl_call *c, cells_err_t *err);
int h_audit_verify(struct ctl_call *c, cells_err_t *err);
int h_audit_export(struct ctl_call *c, cells_err_t *err);

#endif
