/* handlers_mgmt.h - management requests (handlers_mgmt.c): control request handlers, rows of
 * routes.c (ctl_server.h). */
#ifndef CELLS_HANDLERS_MGMT_H
#define CELLS_HANDLERS_MGMT_H

#include "ctl_server.h"

int h_enroll(struct ctl_call *c, cells_err_t *err);
int h_mgmt_status(struct ctl_call *c, cells_err_t *err);

#endif
