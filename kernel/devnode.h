/* devnode.h - create or remove a device node inside another process's mount namespace
 * (a running VP's /dev), through knsrun (knsrun.h: a forked child that enters the
 * namespace and chroots to the process's root, so that every path is resolved inside
 * the VP). */
#ifndef CELLS_DEVNODE_H
#define CELLS_DEVNODE_H

#include <stdbool.h>
#include <sys/types.h>

#include "err.h"

/* present: mknod path (type 'c'/'b', major:minor, permission bits perm), making missing
 * parent directories 0755 and replacing a different file at path; absent: unlink path
 * (ENOENT is success). path is absolute inside the namespace of pid. */
int devnode_set(pid_t pid, const char *path, char type, unsigned major, unsigned minor,
		unsigned perm, bool present, cells_err_t *err);

/* Bind-mount the host file src (e.g. a pty slave /dev/pts/N) onto path inside the mount
 * namespace of pid, creating an empty regular file at path first when needed (its
 * parent must exist). Used where a mknod'ed copy does not work: a devpts node opens only
 * from a devpts mount (the kernel returns EIO otherwise). open_tree(OPEN_TREE_CLONE) +
 * move_mount() from a forked child that entered the namespace. */
int devnode_bind_in_ns(pid_t pid, const char *src, const char *path, cells_err_t *err);

#endif
