/* ksm.h - kernel samepage merging for VPs (the paper's memory sharing).
 *
 * PR_SET_MEMORY_MERGE (prctl 67, Linux >= 6.4) marks every anonymous mapping of the
 * calling process mergeable; children inherit it across fork and execve. ksmd itself
 * is global (sysfs dir, normally /sys/kernel/mm/ksm): run=1 scans, run=0 stops (merged
 * pages stay merged). The directory is a parameter so that tests use a copy. */
#ifndef CELLS_KSM_H
#define CELLS_KSM_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

#define KSM_SYSFS "/sys/kernel/mm/ksm"

/* Whether this kernel has PR_SET_MEMORY_MERGE (PR_GET_MEMORY_MERGE answers). */
bool ksm_prctl_supported(void);
/* Set / get the calling process's merge-any flag (inherited by its children). */
int ksm_merge_self(bool on, cells_err_t *err);
int ksm_merge_self_get(void);
/* ksmd control and counters in dir (KSM_SYSFS on a real system). */
int ksm_set_run(const char *dir, int run, cells_err_t *err);
int ksm_get(const char *dir, const char *name, uint64_t *out, cells_err_t *err);

#endif
