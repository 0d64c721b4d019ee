/* oom.h - low-memory order: oom_score_adj of a VP's processes.
 *
 * The kernel's OOM killer picks the process with the highest badness (its memory plus
 * oom_score_adj/1000 of the memory available). Cells gives background VPs' processes a
 * higher adj than the foreground VP's, so that under pressure background work dies
 * first, and protects the agent and every VP's init (OOM_ADJ_PROTECTED). A process
 * inherits its parent's adj, so the adj of a VP's processes is set again by a sweep
 * (on every switch, VP start and periodically; agent/devices/memory.c). */
#ifndef CELLS_OOM_H
#define CELLS_OOM_H

#include <stdbool.h>
#include <sys/types.h>

#include "err.h"

#define OOM_ADJ_PROTECTED (-1000)

int oom_set_adj(pid_t pid, int adj, cells_err_t *err);
int oom_get_adj(pid_t pid, int *adj, cells_err_t *err);
/* Set adj on every process in the pid namespace whose init is `init` (a host pid),
 * except the init itself, which gets init_adj (or 0 when lowering below 0 is not
 * permitted: no CAP_SYS_RESOURCE). Processes that exit meanwhile are
 * skipped. Returns the number of processes changed, or -1. */
int oom_set_vp(pid_t init, int adj, int init_adj, cells_err_t *err);

#endif
