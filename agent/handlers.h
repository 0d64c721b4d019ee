/* handlers.h - control request handlers, one per request type (see ctl_server.h).
 * Each module declares its handlers here and adds rows to the table in ctl_server.c. */
#ifndef CELLS_HANDLERS_H
#define CELLS_HANDLERS_H

#include "ctl_server.h"

/* handlers_core.c */
int h_ping(struct ctl_call *c, cells_err_t *err);
int h_status(struct ctl_call *c, cells_err_t *err);
int h_device_id(struct ctl_call *c, cells_err_t *err);

/* handlers_tel.c */
int h_tel_status(struct ctl_call *c, cells_err_t *err);
/* handlers_policy.c */
int h_trust_pin(struct ctl_call *c, cells_err_t *err);
int h_policy_apply(struct ctl_call *c, cells_err_t *err);
int h_policy_show(struct ctl_call *c, cells_err_t *err);
int h_policy_verify(struct ctl_call *c, cells_err_t *err);
int h_vp_password(struct ctl_call *c, cells_err_t *err);
int h_vp_config(struct ctl_call *c, cells_err_t *err);
/* handlers_vp.c */
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
/* handlers_audit.c */
int h_audit_query(struct ctl_call *c, cells_err_t *err);
int h_audit_verify(struct ctl_call *c, cells_err_t *err);
int h_audit_export(struct ctl_call *c, cells_err_t *err);
/* handlers_mgmt.c */
int h_enroll(struct ctl_call *c, cells_err_t *err);
int h_mgmt_status(struct ctl_call *c, cells_err_t *err);
/* handlers_display.c */
int h_switch_to(struct ctl_call *c, cells_err_t *err);
int h_input(struct ctl_call *c, cells_err_t *err);
int h_screenshot(struct ctl_call *c, cells_err_t *err);
int h_display_status(struct ctl_call *c, cells_err_t *err);
/* handlers_wipe.c */
int h_vp_wipe(struct ctl_call *c, cells_err_t *err);
int h_wipe_status(struct ctl_call *c, cells_err_t *err);
int h_wipe_prepare(struct ctl_call *c, cells_err_t *err);
/* devns.c */
int h_device_list(struct ctl_call *c, cells_err_t *err);

#endif
