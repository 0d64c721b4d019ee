/* routes.c - cellsd's control request table: one row {case, name, permitted states,
 * handler} per request type (after bubblewrap's/OpenSSH monitor's tables). The program
 * hands it to the control socket (ctl_server_set_routes); each module declares its
 * handlers in its own handlers header. */
#include "routes.h"
#include "handlers_audit.h"
#include "handlers_core.h"
#include "handlers_devices.h"
#include "handlers_images.h"
#include "handlers_mgmt.h"
#include "handlers_tel.h"
#include "handlers_vp.h"
#include "cleanup.h"

#define R(c) CELLS__CTL__V1__CTL_REQUEST__REQ_##c

const struct ctl_route ctl_routes[] = {
    {R(PING), "ping", CELLSD_ST_ANY, h_ping},
    {R(STATUS), "status", CELLSD_ST_ANY, h_status},
    {R(DEVICE_ID), "device id", CELLSD_ST_ANY, h_device_id},
    {R(TEL_STATUS), "tel status", CELLSD_ST_ANY, h_tel_status},
    {R(TRUST_PIN), "trust pin", CELLSD_ST_READY, h_trust_pin},
    {R(POLICY_APPLY), "policy apply", CELLSD_ST_READY, h_policy_apply},
    {R(POLICY_SHOW), "policy show", CELLSD_ST_ANY, h_policy_show},
    {R(POLICY_VERIFY), "policy verify", CELLSD_ST_ANY, h_policy_verify},
    {R(VP_PASSWORD), "vp password", CELLSD_ST_READY, h_vp_password},
    {R(VP_CONFIG), "vp config", CELLSD_ST_READY, h_vp_config},
    {R(VP_CREATE), "vp create", CELLSD_ST_READY, h_vp_create},
    {R(VP_LIST), "vp list", CELLSD_ST_ANY, h_vp_list},
    {R(VP_STATUS), "vp status", CELLSD_ST_ANY, h_vp_status},
    {R(VP_START), "vp start", CELLSD_ST_READY, h_vp_start},
    {R(VP_STOP), "vp stop", CELLSD_ST_READY, h_vp_stop},
    {R(VP_DESTROY), "vp destroy", CELLSD_ST_READY, h_vp_destroy},
    {R(VP_EXEC), "vp exec", CELLSD_ST_READY, h_vp_exec},
    {R(VP_RUN), "vp run", CELLSD_ST_READY, h_vp_run},
    {R(AUDIT_QUERY), "audit query", CELLSD_ST_ANY, h_audit_query},
    {R(AUDIT_VERIFY), "audit verify", CELLSD_ST_ANY, h_audit_verify},
    {R(AUDIT_EXPORT), "audit export", CELLSD_ST_READY, h_audit_export},
    {R(ENROLL), "enroll", CELLSD_ST_READY, h_enroll},
    {R(MGMT_STATUS), "mgmt status", CELLSD_ST_ANY, h_mgmt_status},
    {R(SWITCH_TO), "switch", CELLSD_ST_READY, h_switch_to},
    {R(INPUT), "input", CELLSD_ST_READY, h_input},
    {R(SCREENSHOT), "screenshot", CELLSD_ST_READY, h_screenshot},
    {R(DISPLAY_STATUS), "display status", CELLSD_ST_ANY, h_display_status},
    {R(VP_WIPE), "vp wipe", CELLSD_ST_READY, h_vp_wipe},
    {R(WIPE_STATUS), "wipe status", CELLSD_ST_ANY, h_wipe_status},
    {R(WIPE_PREPARE), "wipe prepare", CELLSD_ST_READY, h_wipe_prepare},
    {R(DEVICE_LIST), "device list", CELLSD_ST_ANY, h_device_list},
    /* locking only removes access: permitted also while the audit log fails closed */
    {R(VP_LOCK), "vp lock", CELLSD_ST_ANY, h_vp_lock},
    {R(VP_UNLOCK), "vp unlock", CELLSD_ST_READY, h_vp_unlock},
    {R(IMAGE_IMPORT), "image import", CELLSD_ST_READY, h_image_import},
    {R(IMAGE_LIST), "image list", CELLSD_ST_ANY, h_image_list},
    {R(IMAGE_STATUS), "image status", CELLSD_ST_ANY, h_image_status},
};

const size_t ctl_nroutes = CELLS_ARRAY_SIZE(ctl_routes);
