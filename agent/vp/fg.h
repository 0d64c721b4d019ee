/* fg.h - the foreground VP (FVP): exactly one running VP is in front at any time; all
 * VPs keep running. Foreground-bound devices (display, input) follow the FVP on every
 * switch through the listeners registered here.
 *
 * The set of running VPs is fed by the VP runtime's lifecycle (fg_vp_up on start,
 * fg_vp_down on stop). The first VP to start takes the foreground; when the FVP stops,
 * the longest-running other VP takes it; with no VP running there is no FVP.
 *
 * Who may take the foreground: a switch whose actor is the employee ("uid:N", from
 * `cellctl switch`) needs the VP's policy rule `foreground.may_be_foreground`; any other
 * actor is an internal request on the VP's behalf (telephony: "telephony", an app in the
 * VP: "vp:NAME") and needs `foreground.incoming_call_switches` (policy_vp_rule(); a
 * VP that no policy names may do both, a rule without a foreground part neither).
 * Every switch and every refusal is audited; a switch whose audit record cannot
 * be written is not carried out (fail closed).
 *
 * All functions run on cellsd's loop thread. Strings are borrowed. */
#ifndef CELLS_FG_H
#define CELLS_FG_H

#include <stdbool.h>
#include <stdint.h>

#include "cellsd.h"
#include "err.h"

struct fg;

typedef void (*fg_listener_fn)(struct cellsd *d, const char *old_vp, const char *new_vp,
			       void *data);
/* May vp take the foreground? self: the request is not the employee's own action. */
typedef bool (*fg_permit_fn)(struct cellsd *d, const char *vp, bool self, void *data);

/* Set up / free d->fg. */
int fg_init(struct cellsd *d, cells_err_t *err);
void fg_shutdown(struct cellsd *d);

/* The FVP's name (borrowed, valid until the next switch), NULL when no VP runs. */
const char *fg_current(struct cellsd *d);
/* Bring vp to the foreground (a no-op success when it already is). Audited as
 * "fg.switch"; refused (EPERM) per policy, (ESRCH) when vp does not run. */
int fg_switch(struct cellsd *d, const char *vp, const char *actor, cells_err_t *err);
/* Listeners run in registration order after every change of the FVP, with the old and
 * new FVP (either may be NULL). */
int fg_add_listener(struct cellsd *d, fg_listener_fn cb, void *data);
/* Incremented on every change of the FVP: events stamped with an older generation
 * belong to a previous FVP and are dropped. */
uint64_t fg_generation(struct cellsd *d);
/* Replace the rule deciding who may take the foreground (NULL: the policy's rule). */
void fg_set_permit(struct cellsd *d, fg_permit_fn fn, void *data);

/* VP lifecycle (called from the VP runtime's listener). */
int fg_vp_up(struct cellsd *d, const char *vp, cells_err_t *err);
void fg_vp_down(struct cellsd *d, const char *vp);
/* Is vp running as far as the foreground is concerned. */
bool fg_vp_is_up(struct cellsd *d, const char *vp);

#endif
