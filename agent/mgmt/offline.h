/* offline.h - offline limits per VP (issue 18.7; Apple's and Knox's "maximum time
 * offline"): a VP whose policy rule sets lock_after_offline_s / wipe_after_offline_s is
 * locked (vplock.h, reason "offline") when the device has not completed a session with
 * its MDM for that long, and wiped (wipe.h wipe_start, reason "offline": crash-safe,
 * with a signed receipt queued for the MDM) after wipe_after_offline_s.
 *
 * The time of the last successful MDM session is persisted in the state DB (module
 * "offline"); before any contact — and whenever the limit was set after the last
 * contact — a VP counts from the moment its limit was first seen in force (also
 * persisted, so a restart does not reset the count). A contact lifts an offline lock.
 * Times are the wall clock (the MDM's notion of "offline for a week"); a clock set back
 * postpones the limit, one set forward brings it nearer (KNOWN LIMIT).
 *
 * All functions run on cellsd's loop thread. */
#ifndef CELLS_OFFLINE_H
#define CELLS_OFFLINE_H

#include <json-c/json.h>

#include "cellsd.h"
#include "err.h"

/* Migrate the tables and start the 1-second check. After vplock_init and wipe_init. */
int offline_init(struct cellsd *d, cells_err_t *err);
void offline_fini(struct cellsd *d);
/* The management channel established a session with the MDM (mutual TLS, hello
 * answered): persist the time; lift the VPs' offline locks. */
void offline_contact(struct cellsd *d);

#endif
