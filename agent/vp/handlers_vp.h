/* handlers_vp.h - VP requests (handlers_vp.c) and wipe requests (handlers_wipe.c): control request
 * handlers, rows of routes.c (ctl_server.h). */
#ifndef CELLS_HANDLERS_VP_H
#define CELLS_HANDLERS_VP_H

#include "ctl_server.h"

int h_vp_create(struct ctl_call *c, cells_err_t *err);
int h_vp_list(struct ctl_call *c, cells_err_t *err);
int h_vp_status(struct ctl_call *c, cells_err_t *err);
int h_vp_start(struct ctl_call *c, cells_err_t *err);
int h_vp_stop(struct ctl_call *c, cells_err_t *err);
int h_vp_destroy(struct ctl_call *c, cells_err_t *err);
int h_vp_exec(struct ctl_call *c, cells_err_t *err);
int h_vp_run(struct ctl_call *c, cells_err_t *err);
int h_vp_lock(struct ctl_call *c, cells_err_t *err);
int h_vp_unlock(struct ctl_call *c, cells_err_t *err);
int h_vp_wipe(struct ctl_call *c, cells_err_t *err);
int h_wipe_status(struct ctl_call *c, cells_err_t *err);
int h_wipe_prepare(struct ctl_call *c, cells_err_t *err);

#endif
