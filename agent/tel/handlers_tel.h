/* handlers_tel.h - telephony requests (handlers_tel.c): control request handlers, rows of routes.c
 * (ctl_server.h). */
#ifndef CELLS_HANDLERS_TEL_H
#define CELLS_HANDLERS_TEL_H

#include "ctl_server.h"

int h_tel_status(struct ctl_call *c, cells_err_t *err);

#endif
