/* handlers_core.h - cellsd's own requests: status and identity (handlers_core.c), policy, trust and
 * VP settings (handlers_policy.c): control request handlers, rows of routes.c (ctl_server.h). */
#ifndef CELLS_HANDLERS_CORE_H
#define CELLS_HANDLERS_CORE_H

#include "ctl_server.h"

int h_ping(struct ctl_call *c, cells_err_t *err);
int h_status(struct ctl_call *c, cells_err_t *err);
int h_device_id(struct ctl_call *c, cells_err_t *err);
int h_trust_pin(struct ctl_call *c, cells_err_t *err);
int h_policy_apply(struct ctl_call *c, cells_err_t *err);
int h_policy_show(struct ctl_call *c, cells_err_t *err);
int h_policy_verify(struct ctl_call *c, cells_err_t *err);
int h_vp_password(struct ctl_call *c, cells_err_t *err);
int h_vp_config(struct ctl_call *c, cells_err_t *err);

#endif
