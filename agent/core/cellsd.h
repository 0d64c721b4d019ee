/* cellsd.h - the agent daemon's shared state. cellsd is the only process that changes
 * the system; every module hangs off struct cellsd and runs on its one event loop. */
#ifndef CELLS_CELLSD_H
#define CELLS_CELLSD_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#include <sqlite3.h>

#include "err.h"
#include "loop.h"

/* Daemon states a control request may be permitted in (bitmask). */
enum {
	CELLSD_ST_READY = 1u << 0,	  /* normal operation */
	CELLSD_ST_AUDIT_CLOSED = 1u << 1, /* audit log cannot be written: fail closed */
};
#define CELLSD_ST_ANY (CELLSD_ST_READY | CELLSD_ST_AUDIT_CLOSED)

struct audit;
struct tel;
struct policy_engine;
struct vpm;
struct mgmt;
struct fg;
struct disp;
struct wipe;
struct devns;
struct audit_mgmt;
struct images;

struct cellsd {
	char state_dir[PATH_MAX];
	char run_dir[PATH_MAX];
	struct loop *loop;
	sqlite3 *db;	     /* state DB (owned) */
	struct audit *audit; /* audit log (owned) */
	int ctl_fd;	     /* listening control socket */
	gid_t ctl_gid;	     /* group also allowed on the control socket */
	bool ctl_gid_set;
	unsigned state;		     /* CELLSD_ST_* */
	struct policy_engine *pe;    /* policy engine (owned, policy_engine.h) */
	struct tel *tel;	     /* telephony proxy (owned, tel.h) */
	struct vpm *vpm;	     /* VP manager (vpm.h) */
	struct mgmt *mgmt;	     /* management channel (owned, mgmt.h) */
	struct fg *fg;		     /* foreground VP (fg.h) */
	struct disp *disp;	     /* display and input mux (display.h) */
	struct wipe *wipe;	     /* wipe and encrypted VP storage (wipe.h, owned) */
	struct devns *devns;	     /* device modes, power, wifi, memory (devns.h) */
	struct audit_mgmt *audit_up; /* audit uploads to the MDM (audit_mgmt.h, owned) */
	struct images *images;	     /* signed VP images (images.h, owned) */
};

#endif
