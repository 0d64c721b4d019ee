/* kmask.h - the /proc and /sys paths a VP gets masked or read-only, in one table
 * (kmask.c): at least what runc, crun and Docker apply (their default maskedPaths and
 * readonlyPaths), plus what Cells adds. Applied by the VP's init between clone and
 * pivot_root, so kmask_apply runs only async-signal-safe code (raw syscalls, no
 * allocation). */
#ifndef CELLS_KMASK_H
#define CELLS_KMASK_H

#include <stddef.h>

enum kmask_kind {
	KMASK_HIDE,	/* a file: /dev/null bound over it; a directory: an empty read-only tmpfs */
	KMASK_READONLY, /* bound over itself read-only (nosuid, nodev, noexec) */
};

struct kmask_entry {
	const char *path; /* absolute, as seen inside the VP */
	enum kmask_kind kind;
};

extern const struct kmask_entry kmask_table[];
extern const size_t kmask_count;

/* Apply the table under the current directory (the VP's root before pivot_root, with
 * proc and sys mounted), devnull being the path of a null device node there. A path
 * that does not exist (this kernel lacks it) is skipped; any other failure stops: -1
 * with errno set, *step ("mask", "bind", "remount read-only") and *path (the entry)
 * naming it. 0 when everything applied. */
int kmask_apply(const char *devnull, const char **step, const char **path);

#endif
