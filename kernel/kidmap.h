/* kidmap.h - a VP's user namespace: its id range on the host (VP uid/gid 0..65535 are
 * host ids BASE..BASE+65535), the uid_map/gid_map the parent writes, idmapped mounts
 * (the shared read-only base image and the agent's /dev/cells tree seen through the VP's
 * range without changing a byte on disk), shifting a directory tree's ownership into a
 * range (a VP's overlay upper/work dirs), and probes for `cellsd --check-kernel`. */
#ifndef CELLS_KIDMAP_H
#define CELLS_KIDMAP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

#define KIDMAP_RANGE 65536u /* ids per VP */

/* Write "0 BASE 65536" into /proc/PID/uid_map and gid_map. The caller is real root in
 * the parent user namespace of pid's (so /proc/PID/setgroups may stay "allow"). */
int kidmap_write_maps(pid_t pid, uint32_t base, cells_err_t *err);

/* A detached clone of the tree at path (open_tree OPEN_TREE_CLONE, recursive when asked)
 * idmapped through the user namespace userns_fd (borrowed), with the MOUNT_ATTR_* bits in
 * attr set too (e.g. MOUNT_ATTR_RDONLY). *out is owned by the caller (O_CLOEXEC). */
int kidmap_idmapped_tree(const char *path, int userns_fd, uint64_t attr, bool recursive, int *out,
			 cells_err_t *err);

/* Move every file of the tree at dir (dir included, symlinks not followed, other file
 * systems not entered) whose uid or gid is below KIDMAP_RANGE into the range at base:
 * id -> base + id. Ids already in a range are left alone; a directory's overlayfs
 * opaque mark is copied from trusted.overlay.opaque to user.overlay.opaque (the tree is
 * an overlay upper dir of an older cellsd). Returns the number of files changed or -1. */
long kidmap_shift_tree(const char *dir, uint32_t base, cells_err_t *err);

/* The host uid and gid that root inside pid's user namespace is (read from its maps);
 * 0/0 when pid runs in the initial user namespace. -1 when they cannot be read or root
 * is not mapped. */
int kidmap_root_of(pid_t pid, uid_t *uid, gid_t *gid, cells_err_t *err);

/* Probes (real system calls, no constants): a child in a new user namespace with a map
 * written by this process; an idmapped clone of "/" through it. */
bool kidmap_probe_userns(void);
bool kidmap_probe_idmap(void);

#endif
