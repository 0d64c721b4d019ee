/* devns.h - device namespaces in cellsd: ties the device profile, access modes
 * (devmode.h), the power and WiFi proxies (power.h, wifi.h) and the memory policies
 * (memory.h) to the VP runtime (vpm listeners, vpm_dev_set), the foreground
 * (fg_add_listener) and the policy engine (an enforcer named "devices").
 *
 * Configuration comes from cellsd's options (devns_option before devns_init):
 *   --device-profile FILE   the device profile (profiles/NAME.json); none: no device classes
 *   --power-backend KIND    auto | sysfs | record (default auto: record unless the kernel
 *                           has wake locks, so a development host is never suspended)
 *   --wpa-ctrl PATH         the host wpa_supplicant control socket
 *                           (default /run/wpa_supplicant/wlan0)
 *   --ksm on|off            KSM for VPs (default off)
 *   --ksm-threshold N       stop ksmd below N merged pages/s (default 64)
 *   --bvp-oom-adj N         oom_score_adj of background VPs' processes (default 500)
 */
#ifndef CELLS_DEVNS_H
#define CELLS_DEVNS_H

#include "cellsd.h"

/* 0 when the option is one of devns's (value stored), -1 with a message otherwise. */
int devns_option(const char *name, const char *value, cells_err_t *err);
/* Set up d->devns (owned); registers with the VP runtime, foreground and policy engine
 * when those are built in. */
int devns_init(struct cellsd *d, cells_err_t *err);
void devns_free(struct cellsd *d);
/* The foreground VP changed (called by the foreground listener; vp NULL: none). */
void devns_foreground_changed(struct cellsd *d, const char *vp);

#endif
