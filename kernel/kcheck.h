/* kcheck.h - what this kernel offers Cells (in the spirit of lxc-checkconfig):
 * namespaces, overlayfs, cgroup layout, seccomp, fscrypt. Used by `cellsd --check-kernel`. */
#ifndef CELLS_KCHECK_H
#define CELLS_KCHECK_H

#include <stdbool.h>
#include <stdio.h>

struct kcheck_item {
	const char *name;
	bool present;
	bool required;
	char detail[128];
};

/* Fill up to max items; returns the count. */
int kcheck_run(struct kcheck_item *items, int max);
/* Print a report; returns the number of missing required features. */
int kcheck_report(FILE *f, bool json);

#endif
