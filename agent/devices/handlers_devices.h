/* handlers_devices.h - display, input (handlers_display.c) and device requests (devns.c): control
 * request handlers, rows of routes.c (ctl_server.h). */
#ifndef CELLS_HANDLERS_DEVICES_H
#define CELLS_HANDLERS_DEVICES_H

#include "ctl_server.h"

int h_switch_to(struct ctl_call *c, cells_err_t *err);
int h_input(struct ctl_call *c, cells_err_t *err);
int h_screenshot(struct ctl_call *c, cells_err_t *err);
int h_display_status(struct ctl_call *c, cells_err_t *err);
int h_device_list(struct ctl_call *c, cells_err_t *err);

#endif
