/* handlers.h - control request handlers, one per request type (see ctl_server.h).
 * Each module declares its handlers here and adds rows to the table in ctl_server.c. */
#ifndef CELLS_HANDLERS_H
#define CELLS_HANDLERS_H

#include "ctl_server.h"

/* handlers_core.c */
int h_ping(struct ctl_call *c, cells_err_t *err);
int h_status(struct ctl_call *c, cells_err_t *err);
int h_device_id(struct ctl_call *c, cells_err_t *err);

/* devns.c */
int h_device_list(struct ctl_call *c, cells_err_t *err);

#endif
