/* knsrun.h - run a function inside another process's mount namespace: the one way
 * cellsd acts inside a running VP's file system without starting a program there (device
 * nodes in its /dev, binds of host files, detaching mounts in other namespaces).
 *
 * knsrun() forks a child (no exec, nothing inherited that it would keep: the child only
 * runs fn and _exits), which enters the mount namespace mntfd with setns() and, when
 * rootfd >= 0, chroots to it so that every path fn uses is resolved inside the VP. fn
 * returns 0 on success or fails through knsrun_fail(), whose errno and one-line reason
 * reach the caller's err. The caller's process is never moved into the namespace. */
#ifndef CELLS_KNSRUN_H
#define CELLS_KNSRUN_H

#include <sys/types.h>

#include "err.h"

struct knsrun_ctx {
	int wfd; /* the report pipe */
};
typedef int (*knsrun_fn)(struct knsrun_ctx *c, void *arg);

/* Run fn(arg) in a child inside mntfd (and rootfd >= 0 as its root); 0 when fn returned 0,
 * -1 with err filled from knsrun_fail (or the child's status) otherwise. */
int knsrun(int mntfd, int rootfd, knsrun_fn fn, void *arg, cells_err_t *err);

/* In fn: report "what path" with errno code and end the child. */
__attribute__((noreturn)) void knsrun_fail(struct knsrun_ctx *c, int code, const char *what,
					   const char *path);

/* Open /proc/PID/ns/mnt and /proc/PID/root (O_PATH) for knsrun. */
int knsrun_open(pid_t pid, int *mntfd, int *rootfd, cells_err_t *err);

#endif
